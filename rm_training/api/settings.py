"""Settings of the scoring API: environment variables HELPSTEER_* (the `serve` command sets them
from its flags), read once through the cached `get_settings()`."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HELPSTEER_", extra="ignore")

    model: str = Field("", description="Run directory to serve (a Hugging Face checkpoint written by `helpsteer train`).")
    host: str = Field("127.0.0.1", description="Interface to bind; loopback unless told otherwise.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port).")
    api_key: str = Field("", description="One key or several, comma-separated; empty = no authentication (loopback use, e.g. OpenRLHF PPO).")
    max_items: int = Field(256, ge=1, description="Most items in one request (413 beyond).")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body in bytes (413 beyond).")
    max_batch_size: int = Field(64, ge=1, description="Most sequences in one forward pass (dynamic micro-batching; 1 turns batching off).")
    max_wait_ms: float = Field(5.0, ge=0, description="How long the batcher waits for more requests before running a batch, in ms.")
    max_batch_tokens: int = Field(0, ge=0, description="Padded-token budget of one forward pass (rows x longest row), so long texts get smaller batches; 0 = 1024 on CPU, 65536 on GPU.")
    max_length: int = Field(0, ge=0, description="Truncation length in tokens; 0 = the run's training length.")
    device: str = Field("auto", description="torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N; with several GPU replicas the first one.")
    dtype: str = Field("auto", description="Weights' precision: auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16 or float16.")
    replicas: int = Field(1, ge=1, description="Model replicas the batcher feeds: on GPUs one per device, from --device on; on the CPU threads that share one copy of the weights.")
    threads: int = Field(0, ge=0, description="torch intra-op threads (0 = torch's default).")
    # connection timeouts, in seconds: a client that holds a connection without sending is cut off
    timeout_keep_alive: float = Field(5.0, gt=0, description="Seconds an idle connection stays open, before its first request and between requests (uvicorn's default).")
    timeout_header: float = Field(10.0, gt=0, description="Seconds from a request's first byte to the end of its headers (408 and close beyond: slow clients cannot hold connections).")
    timeout_body: float = Field(30.0, gt=0, description="Seconds to receive the whole body once the headers are in (408 and close beyond); 30 s lets a 4 MB body (the default limit) arrive at 1.2 Mbit/s.")

    def placements(self) -> list:
        """(torch.device, torch.dtype) of each replica: GPUs cuda:K .. cuda:K+N-1 from --device
        cuda:K on, or N times the CPU. More GPU replicas than visible GPUs is an error."""
        from helpsteer.errors import UsageError

        from ..devices import placement

        dev, dt = placement(self.device or "auto", self.dtype)
        if dev.type != "cuda":
            import os

            cores = os.cpu_count() or 1
            if self.replicas > cores:  # (each CPU replica is an inference thread with at least one core)
                raise UsageError(f"--replicas {self.replicas}: on the CPU at most one replica per core ({cores} here)")
            return [(dev, dt)] * self.replicas
        import torch

        first, count = dev.index or 0, torch.cuda.device_count()
        if first + self.replicas > count:
            raise UsageError(f"--replicas {self.replicas} from cuda:{first}: only {count} CUDA device(s) are visible")
        return [(torch.device("cuda", first + k), dt) for k in range(self.replicas)]

    def keys(self) -> list[str]:
        return [k.strip() for k in self.api_key.split(",") if k.strip()]

    @classmethod
    def from_options(cls, **options) -> Settings:
        """Settings from the `serve` flags, checked before any work: a value out of range is one
        UsageError line naming the flag (`--port 99999: must be <= 65535`), never a pydantic
        traceback; a HELPSTEER_API_KEY that holds no key (only blanks and commas) refuses to
        start rather than silently serving without authentication."""
        from pydantic import ValidationError

        from helpsteer.errors import UsageError

        try:
            settings = cls(**options)
        except ValidationError as e:
            err = e.errors()[0]
            flag = "--" + str(err["loc"][0]).replace("_", "-")
            ctx = err.get("ctx") or {}
            rule = next((f"{op} {ctx[k]:g}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if k in ctx), err["msg"].lower())
            seen = err.get("input")
            raise UsageError(f"{flag} {seen:g}: must be {rule}" if isinstance(seen, (int, float)) else f"{flag} {seen!s}: must be {rule}") from None
        settings.placements()  # --device, --dtype and --replicas, checked before the model loads
        if settings.api_key and not settings.keys():
            raise UsageError(f"HELPSTEER_API_KEY={settings.api_key!r} holds no key (only blanks and commas): set one or more keys, comma-separated, or unset it to serve without authentication")
        return settings


@lru_cache
def get_settings() -> Settings:
    return Settings()
