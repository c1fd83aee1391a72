"""The reward scoring HTTP API (`helpsteer serve`): FastAPI app, pydantic schemas, settings,
dynamic micro-batching and a small client. See README "Scoring API"."""

from .client import RewardClient

__all__ = ["RewardClient"]
