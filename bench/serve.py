"""Scoring API benchmark: 64 concurrent clients for 30 s against `helpsteer serve` with a small-
preset checkpoint, once with dynamic micro-batching (the default) and once with batch size 1, in
the same run: requests/s, sequences/s, p50/p99 latency, errors (must be 0), and the ratio.

Run:  .venv/bin/python bench/serve.py [--clients 64] [--duration 30] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from ingest import WORK, _write_section  # noqa: E402
from serve_process import Server  # noqa: E402

HS = str(ROOT / ".venv" / "bin" / "helpsteer")


def small_run(work: Path) -> Path:
    """A small-preset BT checkpoint (a few steps: serving speed does not depend on its quality)."""
    run = work / "ws" / "runs" / "serve-small"
    if (run / "model.safetensors").exists():
        return run
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error")
    syn = work / "syn"
    if not syn.exists():
        subprocess.run([HS, "synth", "--out", str(syn), "--prompts", "600", "--seed", "11"], check=True, capture_output=True, env=env)
    ws = work / "ws"
    if not (ws / "datasets" / "pref").exists():
        subprocess.run([HS, "ingest", str(syn / "helpsteer2" / "preference" / "preference.jsonl.gz"), "--workspace", str(ws), "--name", "pref"],
                       check=True, capture_output=True, env=env)
    subprocess.run([HS, "train", "--workspace", str(ws), "--name", "pref", "--objective", "bt", "--backbone", "small", "--max_steps", "5",
                    "--max_length", "256", "--save_strategy", "no", "--out", "serve-small"], check=True, capture_output=True, env=env)
    return run


def workload(work: Path, n: int = 2000) -> list[dict]:
    """Requests of one item each (a PPO/best-of-N caller), real synthetic prompts and responses."""
    syn = work / "syn" / "truth" / "responses.jsonl"
    rows = [json.loads(x) for _, x in zip(range(n), syn.open())]
    return [{"items": [{"messages": r["context"], "response": r["response"]}]} for r in rows]


async def load(url: str, bodies: list[dict], clients: int, duration: float) -> dict:
    """A closed loop of `clients` callers over aiohttp (a light client: on 2 cores the load
    generator shares the machine with the server, and httpx's own overhead capped the rate)."""
    import aiohttp
    import orjson

    lat, errors, done = [], 0, 0
    payloads = [orjson.dumps(b) for b in bodies]
    stop = time.perf_counter() + duration
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=conn, timeout=aiohttp.ClientTimeout(total=60),
                                     headers={"Content-Type": "application/json"}) as http:
        async def one(k: int):
            nonlocal errors, done
            i = k
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    async with http.post("/v1/score", data=payloads[i % len(payloads)]) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                lat.append(time.perf_counter() - t)
                done += ok
                errors += not ok
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    a = np.array(lat)
    return {"requests": done, "errors": errors, "rps": done / wall, "p50_ms": float(np.percentile(a, 50) * 1000),
            "p99_ms": float(np.percentile(a, 99) * 1000), "wall_s": wall}


def measure(run: Path, bodies: list[dict], clients: int, duration: float, batch: int, work: Path) -> dict:
    with Server(run, "--max-batch-size", str(batch), "--max-wait-ms", "5", log=work / f"serve-{batch}.log") as srv:
        asyncio.run(load(srv.url, bodies[:200], clients, 3))  # warm-up
        res = asyncio.run(load(srv.url, bodies, clients, duration))
        metrics = httpx.get(srv.url + "/metrics").text
    def val(name):
        return float(next(x.split()[-1] for x in metrics.splitlines() if x.startswith(name)))
    res["mean_batch"] = val("helpsteer_batch_size_sum") / max(val("helpsteer_batch_size_count"), 1)
    return res


def model_ceiling(run: Path, bodies: list[dict]) -> float:
    """Sequences/s of the model alone, batched (as the server batches) over batch size 1: the most
    dynamic batching can give on this machine, whatever the HTTP layer does."""
    from rm_training.scoring import Item, Scorer

    sc = Scorer(run)
    ids, _ = sc.encode([Item(b["items"][0]["messages"], b["items"][0]["response"]) for b in bodies[:256]])
    sc.logits(ids[:32])  # warm-up
    rates = {}
    for bs in (1, 64):
        sc.batch_size = bs
        t = time.perf_counter()
        sc.logits(ids)
        rates[bs] = len(ids) / (time.perf_counter() - t)
    return rates[64] / rates[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    work = WORK / "serve"
    work.mkdir(parents=True, exist_ok=True)
    run = small_run(work)
    bodies = workload(work)
    ceiling = model_ceiling(run, bodies)
    dyn = measure(run, bodies, args.clients, args.duration, 64, work)
    one = measure(run, bodies, args.clients, args.duration, 1, work)
    ratio = dyn["rps"] / one["rps"]
    print(json.dumps({"dynamic": dyn, "batch1": one, "ratio": ratio}, indent=1))
    cmd = f".venv/bin/python bench/serve.py --clients {args.clients} --duration {args.duration:g}"
    rows = "\n".join(f"| {name} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} | {r['mean_batch']:.1f} |"
                     for name, r in (("dynamic micro-batching (max 64, 5 ms)", dyn), ("batch size 1", one)))
    section = f"""## Scoring API

Command: `{cmd}` ({platform.machine()}, {os.cpu_count()} cores; server and load generator on the same machine).
A small-preset BT checkpoint (`--backbone small`, max length 256) served by `helpsteer serve` (a real
uvicorn process); {args.clients} concurrent clients (aiohttp, asyncio) each posting one-item `/v1/score`
requests (synthetic HelpSteer2 conversations) for {args.duration:g} s after a 3 s warm-up.

| server | requests/s | p50 ms | p99 ms | errors | mean sequences per forward |
|---|---|---|---|---|---|
{rows}

Throughput ratio, dynamic batching / batch size 1: **{ratio:.2f}x** (goal: at least 4x: {"met" if ratio >= 4 else "NOT met"});
errors: {dyn['errors'] + one['errors']} (goal 0). For scale: the model alone (no HTTP), scoring the same
texts in the server's length-bucketed batches vs one at a time, gains {ceiling:.2f}x on this CPU: on 2
cores the forward pass is compute-bound (the Mamba2 reference scan's cost grows with batch x length),
so batching has little fixed cost to amortise; on a GPU the same batcher has far more to gain.
"""
    _write_section(Path(args.out), "## Scoring API", section)


if __name__ == "__main__":
    main()
