"""Where and in what precision a model runs, for every command (`--device`, `--dtype`), and
data-parallel scoring under torchrun: each rank scores its share of the texts and every rank gets
all results back in input order (`eval` and `score` under `torchrun --nproc_per_node N`)."""

from __future__ import annotations

import os
import re

import numpy as np

from helpsteer.errors import UsageError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
# --dtype spellings -> torch dtype names (auto: bf16 on a GPU that multiplies it natively, else fp32)
DTYPE_NAMES = {"auto": "auto", "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16"}
# Largest difference of a reward scored in bf16 from the same reward in fp32, in units of the
# rewards' standard deviation over the scored set (measured on tiny Llama and NemotronH runs in
# tests/test_devices.py: at most 0.02); pairwise orders agree except for near-ties.
BF16_REWARD_TOLERANCE = 0.05


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(spec: str | None = "auto", flag: str = "--device"):
    """A torch.device from --device: auto = CUDA when present (under torchrun the rank's own GPU,
    LOCAL_RANK), else the CPU. Asking for CUDA where there is none is an error, never a silent CPU run."""
    import torch

    spec = (spec or "auto").strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", spec):
        raise UsageError(f"{flag} {spec}: must be {DEVICE_CHOICES}")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(f"{flag} {spec}: no CUDA device is visible here (torch.cuda.is_available() is False); use --device cpu")
    count = torch.cuda.device_count()
    index = int(spec.split(":")[1]) if ":" in spec else (local if world()[1] > 1 else 0)
    if index >= count:
        raise UsageError(f"{flag} {spec}: only {count} CUDA device(s) are visible (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def dtype_name(spec: str | None, flag: str = "--dtype") -> str:
    """The torch dtype name a --dtype spelling means ("auto" kept), or a UsageError naming the flag."""
    name = DTYPE_NAMES.get((spec or "auto").strip().lower())
    if name is None:
        raise UsageError(f"{flag} {spec}: must be auto, float32, bfloat16 or float16")
    return name


def resolve_dtype(spec: str | None, device, flag: str = "--dtype"):
    """The torch dtype weights are loaded and run in: auto = bfloat16 on a CUDA GPU that has it,
    float32 elsewhere (on CPUs without bf16 kernels bf16 is emulated and slower)."""
    import torch

    name = dtype_name(spec, flag)
    if name == "auto":
        name = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    return getattr(torch, name)


def placement(device: str | None = "auto", dtype: str | None = "auto"):
    """(torch.device, torch.dtype) from the two flags, both checked before any work."""
    dev = resolve_device(device)
    return dev, resolve_dtype(dtype, dev)


class Shards:
    """Data-parallel scoring under torchrun. Outside it (WORLD_SIZE 1) everything is local.

    `mine(n)`: the indices of n items this rank scores (every world-th item, so long and short texts
    spread evenly); `gather(n, idx, rows)`: every rank's (indices, rows) put back in input order, on
    every rank. The gather goes over gloo (CPU tensors of pickled rows), so it needs no NCCL even
    when the models run on GPUs."""

    def __init__(self):
        self.rank, self.size = world()
        self._owned = False
        if self.size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
                if missing:
                    raise UsageError(f"WORLD_SIZE={self.size} but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: run under torchrun "
                                     "(`torchrun --nproc_per_node N -m helpsteer.cli ...`), or unset WORLD_SIZE for one process")
                dist.init_process_group("gloo")
                self._owned = True
            self.group = dist.new_group(backend="gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, n: int) -> np.ndarray:
        return np.arange(self.rank, n, self.size)

    def gather(self, n: int, idx: np.ndarray, rows: list | np.ndarray) -> list:
        if self.size == 1:
            out = [None] * n
            for i, r in zip(idx, rows):
                out[i] = r
            return out
        import torch.distributed as dist

        parts = [None] * self.size
        dist.all_gather_object(parts, (np.asarray(idx).tolist(), list(rows)), group=self.group)
        out = [None] * n
        for part_idx, part_rows in parts:
            for i, r in zip(part_idx, part_rows):
                out[i] = r
        return out

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def close(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)
            if self._owned:
                dist.destroy_process_group()
