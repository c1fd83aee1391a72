"""--device / --dtype on every command, bf16 scores against fp32, data-parallel eval and score under
torchrun (2 processes on CPU, gloo), and serving with several replicas behind one batcher."""

from __future__ import annotations

import asyncio
import json
import os
import threading

import numpy as np
import polars as pl
import pytest
from conftest import run_cli, torchrun


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A workspace with a preference dataset (train/validation splits) and two small trained runs:
    the NemotronH preset and a tiny Llama checkpoint fine-tuned (--backbone DIR)."""
    from checkpoints import build

    from helpsteer.synth import SynthConfig, write_synthetic

    root = tmp_path_factory.mktemp("devices")
    write_synthetic(SynthConfig(seed=11, n_prompts=60), root / "syn")
    ws = root / "ws"
    pref = root / "syn" / "helpsteer2" / "preference" / "preference.jsonl.gz"
    assert run_cli("ingest", pref, "--workspace", ws, "--name", "pref") == 0
    assert run_cli("split", "--workspace", ws, "--name", "pref") == 0
    common = ["--workspace", ws, "--name", "pref", "--objective", "bt", "--max_steps", "6", "--max_length", "64", "--save_strategy", "no",
              "--dtype", "float32"]
    assert run_cli("train", *common, "--backbone", "tiny", "--out", "nemotron") == 0
    assert run_cli("train", *common, "--backbone", build("llama", root / "llama"), "--learning_rate", "1e-3", "--out", "llama") == 0
    return {"ws": ws, "pref": pref, "nemotron": ws / "runs" / "nemotron", "llama": ws / "runs" / "llama"}


def _texts(ws, sc, n=64):
    from helpsteer import store
    from rm_training.scoring import Item

    resp = store.load_table(ws, "pref", "responses", ["context", "response"]).head(n)
    return [sc.text(Item(c, r)) for c, r in zip(resp["context"].to_list(), resp["response"].to_list())]


@pytest.mark.parametrize("kind", ["nemotron", "llama"])
def test_bf16_rewards_agree_with_fp32_within_the_documented_tolerance(runs, kind):
    """Weights in bf16 with the head kept in fp32: every reward within BF16_REWARD_TOLERANCE
    standard deviations of its fp32 value."""
    import torch

    from rm_training.devices import BF16_REWARD_TOLERANCE
    from rm_training.scoring import Scorer

    fp32 = Scorer(runs[kind], device="cpu", dtype=torch.float32)
    bf16 = Scorer(runs[kind], device="cpu", dtype=torch.bfloat16)
    assert next(bf16.model.model.parameters()).dtype == torch.bfloat16
    assert bf16.model.score.weight.dtype == torch.float32  # the head stays fp32
    texts = _texts(runs["ws"], fp32)
    r32 = fp32.rewards(fp32.score_texts(texts)[0])
    r16 = bf16.rewards(bf16.score_texts(texts)[0])
    assert r32.std() > 1e-3  # a trained model, not a constant
    err = np.abs(r16 - r32).max() / r32.std()
    print(f"{kind}: max |bf16 - fp32| = {err:.4f} reward standard deviations")
    assert 0 < err <= BF16_REWARD_TOLERANCE


def test_device_and_dtype_are_checked_before_any_work(runs, tmp_path, capsys):
    cases = [
        (["eval", "--model", runs["llama"], "--data", runs["pref"], "--device", "cuda"],
         "--device cuda: no CUDA device is visible here (torch.cuda.is_available() is False); use --device cpu"),
        (["eval", "--model", runs["llama"], "--data", runs["pref"], "--device", "tpu"], "--device tpu: must be auto, cpu, cuda or cuda:N"),
        (["score", "--model", runs["llama"], "--data", runs["pref"], "--out", tmp_path / "s.parquet", "--dtype", "int8"],
         "--dtype int8: must be auto, float32, bfloat16 or float16"),
        (["serve", "--model", runs["llama"], "--replicas", "0"], "--replicas 0: must be >= 1"),
        (["serve", "--model", runs["llama"], "--replicas", "99999999999"], f"--replicas 99999999999: on the CPU at most one replica per core ({os.cpu_count()} here)"),
        (["serve", "--model", runs["llama"], "--device", "cuda:1"],
         "--device cuda:1: no CUDA device is visible here (torch.cuda.is_available() is False); use --device cpu"),
        (["train", "--workspace", runs["ws"], "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--out", tmp_path / "r", "--dtype", "float16"],
         "--dtype float16: fp16 mixed precision needs a CUDA GPU (its loss scaling); use --dtype bfloat16 or float32 on the CPU"),
        (["train", "--workspace", runs["ws"], "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--out", tmp_path / "r", "--dtype", "float32",
          "--bf16", "true"], "--dtype float32 with --bf16 true: they contradict each other; give one of them"),
        (["attack", "--model", runs["llama"], "--workspace", runs["ws"], "--name", "pref", "--device", "gpu"], "--device gpu: must be auto, cpu, cuda or cuda:N"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert run_cli(*args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err == f"error: {message}", args
    assert not (tmp_path / "s.parquet").exists() and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_eval_and_score_under_torchrun_equal_one_process(runs, tmp_path):
    """Two ranks each score half of the texts; the gathered results equal a one-process run:
    the same metrics, the same rewards in the same order, one file written."""
    run = runs["llama"]
    assert run_cli("eval", "--model", run, "--workspace", runs["ws"], "--name", "pref", "--out", tmp_path / "one.json", "--device", "cpu") == 0
    assert run_cli("score", "--model", run, "--data", runs["pref"], "--out", tmp_path / "one.parquet", "--device", "cpu") == 0
    out, _ = torchrun(["eval", "--model", run, "--workspace", runs["ws"], "--name", "pref", "--out", tmp_path / "two.json"])
    assert out.count("eval: ") == 1  # rank 0 alone prints the table
    torchrun(["score", "--model", run, "--data", runs["pref"], "--out", tmp_path / "two.parquet"])
    one, two = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("one", "two"))
    assert two["processes"] == 2 and one["processes"] == 1
    for k in ("n_pairs", "n_responses", "n_truncated", "accuracy"):
        assert one[k] == two[k], k
    assert one["calibration"]["brier"] == pytest.approx(two["calibration"]["brier"], abs=1e-9)
    a, b = pl.read_parquet(tmp_path / "one.parquet"), pl.read_parquet(tmp_path / "two.parquet")
    assert a.height == b.height > 50
    assert a["pair_id"].to_list() == b["pair_id"].to_list()
    np.testing.assert_allclose(a["reward_a"].to_numpy(), b["reward_a"].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(a["reward_b"].to_numpy(), b["reward_b"].to_numpy(), atol=1e-6)


def test_batcher_keeps_every_replica_busy():
    """Two replicas on one queue: concurrent requests are spread over both inference threads, and
    each caller gets its own rows back."""
    from rm_training.api.batcher import MicroBatcher

    seen: list[str] = []
    gate = threading.Barrier(2, timeout=10)  # each replica blocks until the other one runs too

    def replica(ids):
        seen.append(threading.current_thread().name)
        gate.wait()
        return np.array([[float(x[0])] for x in ids])

    async def main():
        b = MicroBatcher([replica, replica], max_batch_size=1, max_wait_ms=0)
        await b.start()
        got = await asyncio.gather(*(b.submit([[k]]) for k in range(4)))
        await b.stop()
        return got

    got = asyncio.run(main())
    assert [g[0, 0] for g in got] == [0.0, 1.0, 2.0, 3.0]
    assert {n.rsplit("_", 1)[0] for n in seen} == {"rm-infer-0", "rm-infer-1"}


@pytest.mark.slow
def test_serve_with_two_replicas_scores_like_the_scorer(runs):
    """A real server with --replicas 2 on the CPU: a burst of concurrent requests all answered
    with the rewards the Scorer gives."""
    import httpx
    from serve_process import Server

    from rm_training.scoring import Item, Scorer

    sc = Scorer(runs["llama"], device="cpu")
    prompts = [f"question {k}: how do I sort a list?" for k in range(16)]
    want = sc.rewards(sc.logits(sc.encode([Item([{"role": "user", "content": p}], "use sorted()") for p in prompts])[0]))
    with Server(runs["llama"], "--replicas", "2", "--device", "cpu") as srv:
        async def burst():
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
                rs = await asyncio.gather(*(c.post("/v1/score", json={"items": [{"prompt": p, "response": "use sorted()"}]}) for p in prompts))
                return [r.json()["scores"][0]["reward"] for r in rs]

        got = asyncio.run(burst())
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_world_size_without_a_launcher_is_one_line(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    assert run_cli("score", "--model", runs["llama"], "--data", runs["pref"], "--out", tmp_path / "s.parquet", "--device", "cpu") == 2
    assert capsys.readouterr().err.strip() == ("error: WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT are not set: run under torchrun "
                                              "(`torchrun --nproc_per_node N -m helpsteer.cli ...`), or unset WORLD_SIZE for one process")
    assert not (tmp_path / "s.parquet").exists()


def test_bf16_default_follows_the_chosen_device(monkeypatch):
    """On a machine with a bf16 GPU, `--device cpu` asks the CPU (oneDNN), not the GPU."""
    import torch

    from rm_training.config import native_bf16

    cpu_answer = native_bf16("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert native_bf16(None) is True and native_bf16("cuda") is True
    assert native_bf16("cpu") == cpu_answer
