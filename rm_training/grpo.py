"""A reward model as a TRL GRPOTrainer reward function: `reward_function(RUN or URL)` returns
`f(prompts, completions, **kwargs) -> list[float]`, scoring each completion in its conversation
locally (a run directory, through Scorer) or over HTTP (`helpsteer serve`'s /v1/score).

    from trl import GRPOTrainer
    from rm_training import reward_function
    trainer = GRPOTrainer(model=..., reward_funcs=[reward_function("WS/runs/pref-bt")], ...)"""

from __future__ import annotations

from pathlib import Path

from helpsteer.errors import UsageError


def _conversation(prompt, completion) -> tuple[list[dict], str]:
    """(context, response) from one GRPO sample: conversational (lists of {role, content}; the
    completion's last message is the response, any earlier ones, e.g. tool turns, join the
    context) or plain (a prompt string, scored as one user turn, and a completion string)."""
    if isinstance(completion, list):
        if not completion or not isinstance(completion[-1], dict) or "content" not in completion[-1]:
            raise ValueError("a conversational completion must be a non-empty list of {role, content} messages")
        context = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
        return [{"role": m["role"], "content": m["content"]} for m in context + completion[:-1]], completion[-1]["content"]
    if isinstance(prompt, list):
        return [{"role": m["role"], "content": m["content"]} for m in prompt], str(completion)
    return [{"role": "user", "content": str(prompt)}], str(completion)


def reward_function(run_or_url: str | Path, api_key: str | None = None, device: str = "auto", dtype: str = "auto", batch_size: int = 32,
                    timeout: float = 120.0):
    """A GRPO reward function over a run directory or a server URL (http:// or https://). Rewards
    are the run's raw rewards, as `helpsteer score` and /v1/score give them (GRPO standardises them
    within each group itself). The function is named `helpsteer_<run>` in GRPO's logs."""
    target = str(run_or_url)
    if target.startswith(("http://", "https://")):
        from .api.client import RewardClient

        client = RewardClient(target, api_key=api_key, timeout=timeout)
        name = client.models()[0]["id"]

        def rewards(conversations):
            return client.rewards([{"messages": c, "response": r} for c, r in conversations])
    else:
        from .devices import placement
        from .runs import is_run
        from .scoring import Item, Scorer

        if not is_run(target):
            raise UsageError(f"{target}: not a run directory (no config.json) nor an http(s):// URL of `helpsteer serve`")
        dev, dt = placement(device, dtype)
        sc = Scorer(target, device=dev, dtype=dt, batch_size=batch_size)
        name = sc.name

        def rewards(conversations):
            return sc.item_rewards([Item(c, r) for c, r in conversations]).tolist()

    def reward(prompts, completions, **kwargs) -> list[float]:
        return [float(x) for x in rewards([_conversation(p, c) for p, c in zip(prompts, completions)])]

    reward.__name__ = f"helpsteer_{name}".replace("-", "_")
    return reward
