"""Scoring API benchmark: 64 concurrent clients for 30 s against `helpsteer serve` with a small-
preset checkpoint, once with dynamic micro-batching (the default) and once with batch size 1, in
the same run: requests/s, sequences/s, p50/p99 latency, errors (must be 0), and the ratio.

Run:  .venv/bin/python bench/serve.py [--clients 64] [--duration 30] [--out bench/RESULTS.md]

`--memory` measures instead the server's memory (RSS) under 16 concurrent clients posting short
texts, then (a fresh server) 1 MB texts: the goal is a peak within 1.5x of the short-text peak.
Run:  .venv/bin/python bench/serve.py --memory [--clients 16] [--duration 20]"""

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


def measure(run: Path, bodies: list[dict], clients: int, duration: float, batch: int, work: Path, replicas: int = 1) -> dict:
    with Server(run, "--max-batch-size", str(batch), "--max-wait-ms", "5", "--replicas", str(replicas), log=work / f"serve-{batch}-{replicas}.log") as srv:
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


def long_workload(work: Path, n: int = 16, size: int = 1 << 20) -> list[dict]:
    """One-item requests whose response is ~`size` bytes of real synthetic responses run together
    (a distinct text per request), in their real conversations."""
    rows = [json.loads(x) for _, x in zip(range(4000), (work / "syn" / "truth" / "responses.jsonl").open())]
    out = []
    for k in range(n):
        parts, total, i = [], 0, k
        while total < size:
            r = rows[i % len(rows)]["response"]
            parts.append(r)
            total += len(r.encode()) + 1
            i += n
        out.append({"items": [{"messages": rows[k]["context"], "response": "\n".join(parts)[:size]}]})
    return out


def rss_under_load(run: Path, bodies: list[dict], clients: int, duration: float, work: Path, name: str) -> dict:
    """A fresh server; its RSS (psutil, sampled every 20 ms) idle, at its peak during the load
    (and the kernel's VmHWM high-water mark), and 2 s after the load ends."""
    import threading

    import psutil

    with Server(run, log=work / f"serve-memory-{name}.log") as srv:
        proc = psutil.Process(srv.proc.pid)
        asyncio.run(load(srv.url, bodies[:4], 2, 1))  # warm-up: first forward passes, allocator pools
        idle = proc.memory_info().rss
        peak, stop = [idle], threading.Event()

        def sample():
            while not stop.is_set():
                peak.append(proc.memory_info().rss)
                time.sleep(0.02)

        t = threading.Thread(target=sample)
        t.start()
        res = asyncio.run(load(srv.url, bodies, clients, duration))
        stop.set()
        t.join()
        time.sleep(2)
        after = proc.memory_info().rss
        hwm = next(int(x.split()[1]) * 1024 for x in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
    body = float(np.mean([len(json.dumps(b)) for b in bodies]))
    return {**res, "body_bytes": body, "idle_mb": idle / 2**20, "peak_mb": max(peak) / 2**20, "hwm_mb": hwm / 2**20, "after_mb": after / 2**20}


def memory(args, run: Path, work: Path) -> None:
    short = rss_under_load(run, workload(work), args.clients, args.duration, work, "short")
    long = rss_under_load(run, long_workload(work), args.clients, args.duration, work, "1mb")
    ratio = long["peak_mb"] / short["peak_mb"]
    print(json.dumps({"short": short, "1mb": long, "ratio": ratio}, indent=1))
    cmd = f".venv/bin/python bench/serve.py --memory --clients {args.clients} --duration {args.duration:g}"
    rows = "\n".join(f"| {name} | {r['body_bytes'] / 1024:,.1f} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} | {r['idle_mb']:.0f} | "
                     f"{r['peak_mb']:.0f} | {r['hwm_mb']:.0f} | {r['after_mb']:.0f} |"
                     for name, r in (("short texts (synthetic HelpSteer2)", short), ("1 MB texts", long)))
    section = f"""## Serving memory

Command: `{cmd}` ({platform.machine()}, {os.cpu_count()} cores). The small-preset BT checkpoint of
the Scoring API section (max length 256), a fresh `helpsteer serve` process with default settings
per row, {args.clients} concurrent clients posting one-item `/v1/score` requests for {args.duration:g} s;
the server's RSS sampled every 20 ms (psutil), VmHWM from /proc, and RSS again 2 s after the load.

| texts | mean body kB | requests | errors | p50 ms | idle RSS MB | peak RSS MB | VmHWM MB | RSS after MB |
|---|---|---|---|---|---|---|---|---|
{rows}

Peak RSS with 1 MB texts / with short texts: **{ratio:.2f}x** (goal: at most 1.5x: {"met" if ratio <= 1.5 else "NOT met"}).
Only a bounded tail of each text is tokenized (`rm_training.scoring.tokenize_tail`). Before that
(commit 65f9719, the whole text tokenized), the same command measured a peak of 2925 MB with 1 MB
texts against 580 MB with short ones (5.04x), and 2273 MB still held 2 s after the load.
"""
    _write_section(Path(args.out), "## Serving memory", section)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=None, help="concurrent clients (64; 16 with --memory)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of load per server (30; 20 with --memory)")
    ap.add_argument("--memory", action="store_true", help="measure RSS with short vs 1 MB texts instead of throughput")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    work = WORK / "serve"
    work.mkdir(parents=True, exist_ok=True)
    run = small_run(work)
    if args.memory:
        args.clients, args.duration = args.clients or 16, args.duration or 20
        return memory(args, run, work)
    args.clients, args.duration = args.clients or 64, args.duration or 30
    bodies = workload(work)
    ceiling = model_ceiling(run, bodies)
    dyn = measure(run, bodies, args.clients, args.duration, 64, work)
    one = measure(run, bodies, args.clients, args.duration, 1, work)
    two = measure(run, bodies, args.clients, args.duration, 64, work, replicas=2)
    ratio = dyn["rps"] / one["rps"]
    print(json.dumps({"dynamic": dyn, "batch1": one, "replicas2": two, "ratio": ratio, "model_ceiling": ceiling}, indent=1))
    cmd = f".venv/bin/python bench/serve.py --clients {args.clients} --duration {args.duration:g}"
    rows = "\n".join(f"| {name} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} | {r['mean_batch']:.1f} |"
                     for name, r in (("dynamic micro-batching (max 64, 5 ms)", dyn), ("batch size 1", one),
                                     ("dynamic, `--replicas 2` (two inference threads of 1 core each)", two)))
    section = f"""## Scoring API

Command: `{cmd}` ({platform.machine()}, {os.cpu_count()} cores; server and load generator on the same machine).
A small-preset BT checkpoint (`--backbone small`, max length 256) served by `helpsteer serve` (a real
uvicorn process); {args.clients} concurrent clients (aiohttp, asyncio) each posting one-item `/v1/score`
requests (synthetic HelpSteer2 conversations) for {args.duration:g} s after a 3 s warm-up.

| server | requests/s | p50 ms | p99 ms | errors | mean sequences per forward |
|---|---|---|---|---|---|
{rows}

Throughput ratio, dynamic batching / batch size 1: **{ratio:.2f}x** (goal: at least 4x: {"met" if ratio >= 4 else "NOT met"});
errors: {dyn['errors'] + one['errors'] + two['errors']} (goal 0).

Where the gap to 4x lies: the model alone (no HTTP, no batcher), scoring the same texts in the
server's length-bucketed batches vs one at a time, gains **{ceiling:.2f}x** on this CPU. That is the
CPU's part: on 2 cores the forward pass is compute-bound (the Mamba2 reference scan's cost grows with
batch x length), so batching has little fixed cost to amortise, and no batcher can gain more than
that here. The server reaches {ratio / ceiling:.0%} of that ceiling ({ratio:.2f}x of {ceiling:.2f}x); the rest is HTTP
parsing, JSON and tokenization sharing the same 2 cores with the load generator. Two CPU replicas
give {two['rps'] / dyn['rps']:.2f}x the one-replica rate: on 2 cores they only split the same compute. On a GPU the
batcher has far more to gain (see the GPU check section).
"""
    _write_section(Path(args.out), "## Scoring API", section)


if __name__ == "__main__":
    main()
