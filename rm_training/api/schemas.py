"""Request and response bodies of the scoring API. `/v1/*` bodies forbid unknown fields (422);
`/get_reward` accepts OpenRLHF's whole payload and ignores what it does not use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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


class GetRewardResponseFull(GetRewardResponse):
    """OpenRLHF reads `rewards` (the raw reward), `scores` (here in [0, 1], see scoring.Scorer.unit_scores)
    and logs every `extra_logs` entry."""

    extra_logs: dict[str, list[float]] = Field(default_factory=dict)


class _OpenInput(BaseModel):
    """vLLM / SGLang pooling requests: `input` is one text or a list of texts, already rendered with
    the reward model's chat template; the engines' other options are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    input: str | list[str]

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("an empty list; give a text or a list of texts")
        if not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, str) for t in v))):
            raise ValueError(f"must be a text or a list of texts (already rendered with the model's chat template), got {type(v).__name__}"
                             + (" items" if isinstance(v, list) else ""))
        return v

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class ClassifyRequest(_OpenInput):
    """vLLM's /classify (verl's reward loop sends `use_activation: false`; older clients `activation`)."""

    activation: bool | None = None
    use_activation: bool | None = None


class ClassifyData(BaseModel):
    index: int
    label: str
    probs: list[float] = Field(..., description="The model's outputs with the reward last (verl reads probs[-1]); "
                                                "a sigmoid of each when activation is asked for.")
    num_classes: int


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0


class ClassifyResponse(BaseModel):
    id: str
    object: str = "list"
    created: int
    model: str
    data: list[ClassifyData]
    usage: Usage


class EmbeddingsRequest(_OpenInput):
    pass


class EmbeddingData(BaseModel):
    object: str = "embedding"
    index: int
    embedding: list[float] = Field(..., description="The model's outputs with the reward last (verl reads embedding[-1]).")


class EmbeddingsResponse(BaseModel):
    object: str = "list"
    model: str
    data: list[EmbeddingData]
    usage: Usage


class VerifyRequest(BaseModel):
    """NeMo Gym's resource-server verify call: the OpenAI Responses request the policy answered
    and its Response; any other task fields (question, expected_answer ...) are echoed back."""

    model_config = ConfigDict(extra="allow")
    responses_create_params: dict[str, Any]
    response: dict[str, Any]
