"""Request and response bodies of the scoring API. `/v1/*` bodies forbid unknown fields (422);
`/get_reward` accepts OpenRLHF's whole payload and ignores what it does not use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(Strict):
    role: str = Field(..., min_length=1, description="system, user or assistant")
    content: str


class Conversation(Strict):
    prompt: str | None = Field(None, description="The user turn (a one-turn conversation).")
    messages: list[Message] | None = Field(None, description="The conversation before the response; wins over prompt.")

    @model_validator(mode="after")
    def _one_of(self):
        if self.prompt is None and self.messages is None:
            raise ValueError("give prompt or messages (the conversation before the response)")
        return self

    def context(self) -> list[dict]:
        if self.messages is not None:
            return [{"role": m.role, "content": m.content} for m in self.messages]
        return [{"role": "user", "content": self.prompt}]


class ScoreItem(Conversation):
    response: str
    principle: str | None = Field(None, description="Principle models only: the principle to judge (default: the model's).")


class ScoreRequest(Strict):
    items: list[ScoreItem] = Field(..., min_length=1)


class Score(BaseModel):
    reward: float
    attributes: dict[str, float] | None = None
    uncertainty: float | None = None
    probability: float | None = Field(None, description="Principle models: P(the principle is satisfied).")
    truncated: bool


class ScoreResponse(BaseModel):
    model: str
    scores: list[Score]


class CompareItem(Conversation):
    response_a: str
    response_b: str


class CompareRequest(Strict):
    items: list[CompareItem] = Field(..., min_length=1)


class Comparison(BaseModel):
    p_a_better: float = Field(..., description="P(response A better): BT sigmoid of the reward difference, Thurstonian for mean-var models.")
    reward_a: float
    reward_b: float
    truncated: bool


class CompareResponse(BaseModel):
    model: str
    results: list[Comparison]


class PrincipleItem(Conversation):
    response: str
    principles: list[str] = Field(..., min_length=1)


class PrinciplesRequest(Strict):
    items: list[PrincipleItem] = Field(..., min_length=1)


class PrincipleScore(BaseModel):
    principle: str
    probability: float
    logit: float
    truncated: bool


class PrinciplesResult(BaseModel):
    principles: list[PrincipleScore]


class PrinciplesResponse(BaseModel):
    model: str
    results: list[PrinciplesResult]


class GetRewardRequest(BaseModel):
    """OpenRLHF's remote reward-model payload: `query` (prompt + response texts rendered by the
    policy's template), and `prompts`, `labels` or whatever else it sends (ignored unless used)."""

    model_config = ConfigDict(extra="allow")
    query: list[str]
    prompts: list[str] | None = None
    labels: list[Any] | None = None


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float]


class ModelInfo(BaseModel):
    id: str
    path: str
    objective: str
    attributes: list[str]
    weights: list[float]
    backbone: str
    architectures: list[str]
    max_length: int
    num_parameters: int


class ModelsResponse(BaseModel):
    object: str = "list"
    data: list[ModelInfo]


class Health(BaseModel):
    status: str
    model: str
