"""Distributed training through the standard engines (issue 20, point 2): torchrun with DDP and
DeepSpeed ZeRO-2/3 on CPU (gloo, DeepSpeed's CPU accelerator), the run a full Hugging Face
checkpoint that loads in plain transformers; FSDP, which accelerate runs on GPUs only, refused on
a CPU instead of quietly training DDP; and the option errors, before any work."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_cli, synthetic_workspace, torchrun

DS_ZERO2, DS_ZERO3 = ROOT / "configs" / "ds_zero2.json", ROOT / "configs" / "ds_zero3.json"
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed is not installed (pip install 'helpsteer-platform[deepspeed]'; `make install` does)")
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour; this machine has CUDA")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return synthetic_workspace(tmp_path_factory.mktemp("dist"), seed=4, n_prompts=40, datasets=("pref", "hs2"))


def _train(ws: Path, *extra) -> int:
    return run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--out", ws / "runs" / "r", *extra)


@pytest.fixture
def launcher_env(monkeypatch):
    """The variables torchrun sets, for checks that come after the launcher check (no process group
    is set up: every error here is raised before)."""
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)


@cpu_only
@pytest.mark.parametrize("args", [["--fsdp", "full_shard"], ["--fsdp", "full_shard", "--fsdp_config", '{"fsdp_version": 2}']])
def test_fsdp_on_cpu_is_refused_not_dropped(ws, capsys, args):
    assert _train(ws, *args) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --fsdp needs CUDA GPUs: accelerate runs FSDP only on accelerators (on a CPU it would train plain DDP); on CPUs shard with "
        "DeepSpeed instead: torchrun --nproc_per_node N -m helpsteer.cli train ... --deepspeed configs/ds_zero3.json")
    assert not (ws / "runs" / "r").exists()


@needs_deepspeed
def test_deepspeed_outside_a_launcher_is_refused(ws, capsys, monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert _train(ws, "--deepspeed", DS_ZERO3) == 2
    assert capsys.readouterr().err.strip() == ("error: --deepspeed runs under a launcher (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set): "
                                               "torchrun --nproc_per_node N -m helpsteer.cli train ... (N=1 for one process)")
    assert not (ws / "runs" / "r").exists()


def test_deepspeed_missing_package_names_the_extra(ws, capsys, launcher_env, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    assert _train(ws, "--deepspeed", DS_ZERO3) == 2
    assert capsys.readouterr().err.strip() == "error: --deepspeed needs the deepspeed package: pip install 'helpsteer-platform[deepspeed]'"


@needs_deepspeed
def test_deepspeed_config_errors(ws, tmp_path, capsys, launcher_env, monkeypatch):
    missing = tmp_path / "nope.json"
    assert _train(ws, "--deepspeed", missing) == 2
    assert capsys.readouterr().err.strip() == (f"error: --deepspeed {missing}: no such file; give a DeepSpeed JSON config "
                                               "(configs/ds_zero2.json, configs/ds_zero3.json)")
    bad = tmp_path / "bad.json"
    bad.write_text("{stage: 3")
    assert _train(ws, "--deepspeed", bad) == 2
    assert capsys.readouterr().err.startswith(f"error: --deepspeed {bad}: not a JSON config (")
    partial = tmp_path / "z3-partial.json"
    cfg = json.loads(DS_ZERO3.read_text())
    cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = False
    partial.write_text(json.dumps(cfg))
    assert _train(ws, "--deepspeed", partial) == 2
    assert capsys.readouterr().err.strip() == (f"error: --deepspeed {partial}: ZeRO-3 needs zero_optimization.stage3_gather_16bit_weights_on_model_save "
                                               "true, so the run is saved as one full checkpoint (configs/ds_zero3.json sets it)")
    assert _train(ws, "--deepspeed", DS_ZERO3, "--use_lora", "true") == 2
    assert "--use_lora with ZeRO-3 is not supported" in capsys.readouterr().err
    assert _train(ws, "--deepspeed", DS_ZERO3, "--fsdp", "full_shard") == 2
    assert capsys.readouterr().err.strip() == "error: --fsdp and --deepspeed exclude each other: each engine shards the model its own way; choose one"
    if not torch.cuda.is_available():
        monkeypatch.setenv("DS_ACCELERATOR", "cuda")
        assert _train(ws, "--deepspeed", DS_ZERO3) == 2
        assert capsys.readouterr().err.strip() == "error: DS_ACCELERATOR=cuda but torch sees no CUDA device here; unset it or set DS_ACCELERATOR=cpu"
    assert not (ws / "runs" / "r").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r and "train_loss" not in r]


def _weights(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run / "model.safetensors"))


@pytest.mark.slow
@needs_deepspeed
def test_deepspeed_zero3_matches_ddp_and_saves_a_plain_checkpoint(ws, tmp_path):
    """A tiny Llama fine-tuned by 2 processes on CPU, with DDP (launched with the rendezvous flags a
    multi-node run uses) and with DeepSpeed ZeRO-3 and ZeRO-2 at the same global batch and data
    order: the same loss curve, and ZeRO-3's gathered checkpoint loads in plain transformers with
    DDP's weights (fp32: within 1e-5, measured 1.2e-7)."""
    from checkpoints import build
    from transformers import AutoModelForSequenceClassification

    ck = build("llama", tmp_path / "llama")
    args = ["train", "--workspace", str(ws), "--name", "pref", "--objective", "bt", "--backbone", str(ck), "--max_steps", "8",
            "--max_length", "64", "--per_device_train_batch_size", "4", "--learning_rate", "0.002", "--logging_steps", "1",
            "--save_strategy", "no", "--train_sampling_strategy", "sequential", "--dataloader_drop_last", "true", "--bf16", "false"]
    # the multi-node command, on one node: rank and world size come from the c10d rendezvous
    rdzv = ["--nnodes", "1", "--node_rank", "0", "--nproc_per_node", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}"]
    log = torchrun([*args, "--out", "ddp"], rdzv)[1]
    assert "rank 0 of 2: DDP over gloo (cpu)" in log and "rank 1 of 2: DDP over gloo (cpu)" in log
    log = torchrun([*args, "--deepspeed", str(DS_ZERO3), "--out", "zero3"])[1]
    assert "rank 0 of 2: DeepSpeed ZeRO-3 (cpu)" in log and "rank 1 of 2: DeepSpeed ZeRO-3 (cpu)" in log
    log = torchrun([*args, "--deepspeed", str(DS_ZERO2), "--out", "zero2"])[1]
    assert "rank 1 of 2: DeepSpeed ZeRO-2 (cpu)" in log
    ddp, zero3, zero2 = ws / "runs" / "ddp", ws / "runs" / "zero3", ws / "runs" / "zero2"
    one = _losses(ddp)
    assert len(one) == 8 and one[-1] < one[0]
    for run in (zero3, zero2):  # measured: 7e-8 relative at most
        assert max(abs(a - b) / abs(a) for a, b in zip(one, _losses(run), strict=True)) < 1e-5, run.name
    # the ZeRO-3 run: whole tensors (not the empty shards a ZeRO-3 module holds), loadable without deepspeed
    model = AutoModelForSequenceClassification.from_pretrained(zero3)
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.objective == "bt"
    a, b = _weights(ddp), {k: v.detach().numpy() for k, v in model.state_dict().items()}
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    start = _weights_of_checkpoint(ck)
    assert max(float(np.abs(a[k] - start[k]).max()) for k in start if k in a and a[k].shape == start[k].shape) > 1e-3  # (it trained)
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5  # measured: 1.2e-7 (fp32)
    c = _weights(zero2)
    assert c.keys() == a.keys() and max(float(np.abs(a[k] - c[k]).max()) for k in a) < 1e-5


def _weights_of_checkpoint(ck: Path) -> dict[str, np.ndarray]:
    """The backbone checkpoint's weights under the sequence classifier's names (model.*)."""
    from safetensors.numpy import load_file

    return {k: v for k, v in load_file(str(ck / "model.safetensors")).items() if k.startswith("model.")}


@pytest.mark.slow
@needs_deepspeed
def test_zero3_regression_folds_the_target_scaling_into_the_saved_head(ws):
    """A regression run trains on z-scored targets and folds mean and std into the head after
    training; under ZeRO-3 the head is sharded, so the fold is made on gathered parameters and
    reaches the saved checkpoint: it equals a one-process run's (same global batch and order)."""
    args = ["train", "--workspace", str(ws), "--name", "hs2", "--objective", "regression", "--backbone", "tiny", "--max_steps", "6",
            "--max_length", "64", "--logging_steps", "1", "--save_strategy", "no", "--train_sampling_strategy", "sequential",
            "--dataloader_drop_last", "true", "--bf16", "false"]
    assert run_cli(*args, "--per_device_train_batch_size", "8", "--out", "reg-one") == 0
    torchrun([*args, "--per_device_train_batch_size", "4", "--deepspeed", str(DS_ZERO3), "--out", "reg-zero3"])
    one, zero3 = _weights(ws / "runs" / "reg-one"), _weights(ws / "runs" / "reg-zero3")
    assert np.all(one["score.bias"] > 1)  # on the rating scale (the z-scored head's bias starts at 0)
    assert max(float(np.abs(one[k] - zero3[k]).max()) for k in one) < 1e-5  # measured: 1.2e-6 (fp32)
    cfg = [json.loads((ws / "runs" / r / "config.json").read_text()) for r in ("reg-one", "reg-zero3")]
    assert abs(cfg[0]["reward_mean"] - cfg[1]["reward_mean"]) < 1e-4
