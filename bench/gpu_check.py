"""The GPU check (bench/gpu_check.sh runs it, in under 5 minutes on one GPU): bf16 Bradley-Terry
training steps on the small preset with the Mamba CUDA kernels and without them, evaluation on the
GPU, and a burst of requests to `helpsteer serve --device cuda` with dynamic batching vs batch size 1.
Prints tokens/s, MFU against the GPU's bf16 peak (measured, and the datasheet's where known) and
requests/s with p99, as one JSON object, and writes it to --out.

Run:  bash bench/gpu_check.sh            (on a machine with a CUDA GPU)
      python bench/gpu_check.py --cpu-dry-run   (the same steps, tiny, on the CPU: checks the script)"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

# dense bf16 tensor-core peaks, TFLOP/s (NVIDIA datasheets; SXM parts)
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0, "B200": 2250.0}
# the CLI with the Mamba kernel packages hidden: transformers then takes its torch path
NO_KERNELS = ("import sys; sys.modules['mamba_ssm'] = None; sys.modules['causal_conv1d'] = None; "
              "from helpsteer.cli import main; sys.exit(main(sys.argv[1:]))")


def hs(*args, kernels: bool = True, env=None) -> float:
    """Run a `helpsteer` command; its wall time in seconds."""
    cmd = [sys.executable, "-m", "helpsteer.cli"] if kernels else [sys.executable, "-c", NO_KERNELS]
    t = time.perf_counter()
    p = subprocess.run([*cmd, *map(str, args)], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY="error", **(env or {})))
    if p.returncode:
        raise SystemExit(f"helpsteer {' '.join(map(str, args))} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t


def bf16_peak(device: str) -> float:
    """Measured TFLOP/s of large bf16 matmuls on this device (the practical peak)."""
    import torch

    n = 8192 if device == "cuda" else 1024
    dt = torch.bfloat16
    a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    k, t = 0, time.perf_counter()
    while time.perf_counter() - t < 2.0:
        a @ b
        k += 1
    sync()
    return 2 * n**3 * k / (time.perf_counter() - t) / 1e12


def train(ws: Path, out: str, args, kernels: bool) -> dict:
    """A bf16 BT run; tokens/s from its metrics.jsonl (real tokens, padding excluded) and MFU as
    6 x parameters x tokens/s (forward + backward matmul FLOPs) over the peak."""
    from rm_training.scoring import load_run

    hs("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", args.preset, "--max_length", args.max_length,
       "--max_steps", args.steps, "--per_device_train_batch_size", args.batch, "--logging_steps", max(args.steps // 4, 1),
       "--save_strategy", "no", "--dtype", "bfloat16", "--device", args.device, "--out", out, kernels=kernels)
    run = ws / "runs" / out
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    tps = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
    model, _ = load_run(run)
    params = sum(p.numel() for p in model.parameters())
    return {"run": str(run), "tokens_per_s": tps[-1], "parameters": params, "train_tflops": 6 * params * tps[-1] / 1e12}


async def _closed_loop(url: str, bodies: list[dict], clients: int, seconds: float) -> dict:
    import aiohttp
    import numpy as np

    lat, ok = [], 0
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=120)) as http:
        async def one(k):
            nonlocal ok
            i = k
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with http.post("/v1/score", json=bodies[i % len(bodies)]) as r:
                    await r.read()
                    ok += r.status == 200
                lat.append(time.perf_counter() - t)
                i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return {"requests_per_s": ok / wall, "p99_ms": float(np.percentile(lat, 99) * 1000), "errors": len(lat) - ok}


def serve(run: Path, syn: Path, args) -> dict:
    from serve_process import Server

    rows = [json.loads(x) for _, x in zip(range(1000), (syn / "truth" / "responses.jsonl").open())]
    bodies = [{"items": [{"messages": r["context"], "response": r["response"]}]} for r in rows]
    out = {}
    for name, batch in (("batched", 64), ("batch1", 1)):
        with Server(run, "--device", args.device, "--max-batch-size", str(batch), "--max-wait-ms", "5") as srv:
            asyncio.run(_closed_loop(srv.url, bodies[:100], args.clients, 3))  # warm-up
            out[name] = asyncio.run(_closed_loop(srv.url, bodies, args.clients, args.serve_seconds))
    out["ratio"] = out["batched"]["requests_per_s"] / out["batch1"]["requests_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu-dry-run", action="store_true", help="tiny settings on the CPU, to check the script itself")
    ap.add_argument("--work", default=str(ROOT / "bench" / "_work" / "gpu_check"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "_work" / "gpu_check.json"))
    args = ap.parse_args()
    import torch

    if args.cpu_dry_run:
        args.device, args.preset, args.steps, args.batch, args.max_length, args.clients, args.serve_seconds = "cpu", "tiny", 4, 4, 64, 8, 3
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device visible (torch.cuda.is_available() is False); --cpu-dry-run checks the script on a CPU")
        args.device, args.preset, args.steps, args.batch, args.max_length, args.clients, args.serve_seconds = "cuda", "small", 60, 16, 512, 64, 20
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    syn, ws = work / "syn", work / "ws"
    if not syn.exists():
        hs("synth", "--out", syn, "--prompts", 600 if not args.cpu_dry_run else 60, "--seed", 5)
    if not (ws / "datasets" / "pref").exists():
        hs("ingest", syn / "helpsteer2" / "preference" / "preference.jsonl.gz", "--workspace", ws, "--name", "pref")
        hs("split", "--workspace", ws, "--name", "pref")
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    kernels = all(importlib.util.find_spec(m) is not None for m in ("mamba_ssm", "causal_conv1d"))
    res = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "mamba_kernels_installed": kernels,
           "bf16_peak_tflops_measured": bf16_peak(args.device)}
    sheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)
    res["bf16_peak_tflops_datasheet"] = sheet
    res["train_torch_path"] = train(ws, "gpu-check-torch", args, kernels=False)
    if kernels:
        res["train_kernels"] = train(ws, "gpu-check-kernels", args, kernels=True)
    for key in ("train_torch_path", "train_kernels"):
        if key in res:
            r = res[key]
            r["mfu_measured_peak"] = r["train_tflops"] / res["bf16_peak_tflops_measured"]
            r["mfu_datasheet_peak"] = r["train_tflops"] / sheet if sheet else None
    run = Path(res.get("train_kernels", res["train_torch_path"])["run"])
    res["eval_seconds"] = hs("eval", "--model", run, "--workspace", ws, "--name", "pref", "--device", args.device, "--out", work / "eval.json")
    res["eval"] = {k: json.loads((work / "eval.json").read_text()).get(k) for k in ("n_pairs", "accuracy", "device", "dtype")}
    res["serve"] = serve(run, syn, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
