"""Model FLOP utilisation of `helpsteer train` on the small preset at sequence length 512 (HH-RLHF
texts, which are long), against the measured fp32 matmul peak of the machine, in one run.

Run:  .venv/bin/python bench/mfu.py [--steps 30] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import WORK, _write_section  # noqa: E402
from train import matmul_peak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HS = str(ROOT / ".venv" / "bin" / "helpsteer")
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test" / "harmless-base" / "test.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    work = WORK / "mfu"
    ws = work / "ws"
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error")
    if not (ws / "datasets" / "hh").exists():
        subprocess.run([HS, "ingest", str(HH), "--workspace", str(ws), "--name", "hh"], check=True, capture_output=True, env=env)
        # the file is HH-RLHF's test split: re-split by prompt so there is a train split
        subprocess.run([HS, "split", "--workspace", str(ws), "--name", "hh", "--eval-fraction", "0.2", "--seed", "0"], check=True, capture_output=True, env=env)
    run = ws / "runs" / "mfu"
    subprocess.run([HS, "train", "--workspace", str(ws), "--name", "hh", "--objective", "bt", "--backbone", "small", "--max_length", "512",
                    "--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch_size), "--logging_steps", "5",
                    "--save_strategy", "no", "--out", str(run)], check=True, capture_output=True, env=env)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    tps = [x["tokens_per_s"] for x in lines if "tokens_per_s" in x][1:]  # the first window includes start-up
    tps = float(np.median(tps))
    from rm_training.backbones import build_config, flops_per_token

    vocab = json.loads((run / "config.json").read_text())["vocab_size"]
    fpt = flops_per_token(build_config("small", vocab), 512)
    peak = matmul_peak()
    mfu = tps * fpt / 1e9 / peak
    section = f"""## MFU at sequence length 512

Command: `.venv/bin/python bench/mfu.py --steps {args.steps} --batch-size {args.batch_size}` ({os.cpu_count()} cores). `helpsteer train --objective bt
--backbone small --max_length 512` on HH-RLHF harmless (long conversations, length-grouped batches),
median tokens/s of the logged windows after the first: {tps:,.0f} tokens/s x {fpt / 1e6:.1f} MFLOP/token
(forward + backward, 6N + attention at 512) = {tps * fpt / 1e9:.1f} GFLOP/s against the measured fp32 matmul
peak {peak:.0f} GFLOP/s: **MFU {mfu * 100:.1f}%** (goal >= 35%: {"met" if mfu >= 0.35 else "NOT met"}).
"""
    _write_section(Path(args.out), "## MFU at sequence length 512", section)
    print(section)


if __name__ == "__main__":
    main()
