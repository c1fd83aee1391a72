"""Model FLOP utilisation of `helpsteer train` on the small preset at sequence length 512, against
the measured matmul peak of the machine in the same precision (bf16 autocast, the default where the
CPU has native bf16, and fp32), in one run.

HH-RLHF conversations average about 150 tokens, so on their own they measure short sequences. Each
record here is packed: the transcripts of the 4 records before it become earlier turns of its
conversation (HH-RLHF's own format, ingested as such), and `--max_length 512` keeps the last 512
tokens, so nearly every trained sequence is 512 tokens long. A profiled bf16 training step then
shows where the time goes that the matmuls do not use.

Run:  .venv/bin/python bench/mfu.py [--steps 30] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import publish  # noqa: E402
from ingest import WORK  # noqa: E402
from train import matmul_peak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HS = str(ROOT / ".venv" / "bin" / "helpsteer")
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test" / "harmless-base" / "test.jsonl.gz"


def pack(path: Path, previous: int) -> str:
    """HH-RLHF records (JSONL) whose chosen/rejected transcripts are preceded by the chosen
    transcripts of the `previous` records before them, as earlier turns."""
    rows = [json.loads(x) for x in gzip.open(path, "rt", encoding="utf-8") if x.strip()]
    out = []
    for i, r in enumerate(rows):
        prefix = "".join(rows[j]["chosen"] for j in range(max(0, i - previous), i))
        out.append(json.dumps({"chosen": prefix + r["chosen"], "rejected": prefix + r["rejected"]}))
    return "\n".join(out) + "\n"


_CATEGORIES = {
    "matmuls (mm, bmm, SDPA attention)": ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::_scaled_dot_product"),
    "depthwise causal convolution (forward, backward)": ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::_convolution"),
    "copies and dtype casts": ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous"),
}


def profile_step(vocab: int, pairs: int) -> tuple[dict[str, float], float]:
    """Self CPU seconds per category of one bf16-autocast training step (forward, BT loss, backward,
    AdamW) of the small preset on 2 x `pairs` sequences of 512 tokens, after two warm-up steps; and
    the step's wall time."""
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    from rm_training.backbones import build_config
    from rm_training.modeling import NemotronHForSequenceClassification

    torch.manual_seed(0)
    model = NemotronHForSequenceClassification(build_config("small", vocab, num_labels=1)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(3, vocab, (2 * pairs, 512))
    mask = torch.ones_like(ids)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            r = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
        (-torch.nn.functional.logsigmoid(r[:pairs] - r[pairs:]).mean()).backward()
        opt.step()
        opt.zero_grad()

    for _ in range(2):
        step()
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    wall = time.perf_counter() - t
    shares = dict.fromkeys([*_CATEGORIES, "everything else (elementwise: the Mamba2 scan, norms, activations, optimizer)"], 0.0)
    for e in prof.key_averages():
        cat = next((c for c, names in _CATEGORIES.items() if e.key.startswith(names)), None)
        shares[cat or list(shares)[-1]] += e.self_cpu_time_total / 1e6
    return shares, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    ap.add_argument("--no-profile", action="store_true", help="skip the profiled bf16 step")
    args = ap.parse_args()
    work = WORK / "mfu"
    ws = work / "ws"
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error")
    if not (ws / "datasets" / "hh512").exists():
        packed = work / "hh-packed.jsonl"
        packed.parent.mkdir(parents=True, exist_ok=True)
        packed.write_text(pack(HH, previous=4))
        subprocess.run([HS, "ingest", str(packed), "--workspace", str(ws), "--name", "hh512"], check=True, capture_output=True, env=env)
        subprocess.run([HS, "split", "--workspace", str(ws), "--name", "hh512", "--eval-fraction", "0.2", "--seed", "0"], check=True, capture_output=True, env=env)
    from rm_training.backbones import build_config, flops_per_token
    from rm_training.config import native_bf16

    rows, peaks, fpt = [], {}, 0.0
    for precision in (["bfloat16"] if native_bf16() else []) + ["float32"]:
        run = ws / "runs" / f"mfu-{precision}"
        subprocess.run([HS, "train", "--workspace", str(ws), "--name", "hh512", "--objective", "bt", "--backbone", "small", "--max_length", "512",
                        "--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch_size), "--logging_steps", "5",
                        "--bf16", str(precision == "bfloat16").lower(), "--save_strategy", "no", "--out", str(run)], check=True, capture_output=True, env=env)
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        info = json.loads((run / "run_config.json").read_text())["run"]
        trunc = f"{info['truncated']:,} of {2 * info['n_examples']:,} texts reach the 512-token limit"
        tps = float(np.median([x["tokens_per_s"] for x in lines if "tokens_per_s" in x][1:]))  # the first window includes start-up
        vocab = json.loads((run / "config.json").read_text())["vocab_size"]
        fpt = flops_per_token(build_config("small", vocab), 512)
        peak = peaks[precision] = matmul_peak(precision)
        mfu = tps * fpt / 1e9 / peak
        rows.append(f"| {precision}{' (the default here)' if precision == 'bfloat16' or not native_bf16() else ' (`--bf16 false`)'} | {tps:,.0f} | {tps * fpt / 1e9:.1f} | "
                    f"{peak:.0f} | **{mfu * 100:.1f}%** ({'met' if mfu >= 0.35 else 'NOT met'}) |")
    table = "\n".join(rows)
    profile = ""
    if "bfloat16" in peaks and not args.no_profile:
        shares, wall = profile_step(vocab, args.batch_size)
        total = sum(shares.values())
        step_flop = 2 * args.batch_size * 512 * fpt
        budget = step_flop / (0.35 * peaks["bfloat16"] * 1e9)
        matmul = shares[next(iter(_CATEGORIES))]
        lines = "\n".join(f"| {c} | {v:.3f} | {v / total * 100:.0f}% |" for c, v in shares.items())
        profile = f"""Where a bf16 step goes: torch.profiler on one training step of the small preset (bf16 autocast, BT loss, AdamW)
on {2 * args.batch_size} x 512 tokens, without the fused kernels of `mamba_ssm`/`causal_conv1d` (CUDA only), self CPU time by operator:

| operators | seconds | share |
|---|---|---|
{lines}

That step did {step_flop / 1e9:.0f} GFLOP in {wall:.2f} s. At 35% of the bf16 peak it would take {budget:.2f} s; the matmuls
alone took {matmul:.2f} s ({step_flop / 1e9 / matmul:.0f} GFLOP/s while they run, {step_flop / 1e9 / matmul / peaks["bfloat16"] * 100:.0f}% of the peak), which leaves
{budget - matmul:.2f} s for everything else, against the {total - matmul:.2f} s it took. The gap is memory-bound elementwise work of the
PyTorch reference Mamba2 path, which only fused kernels remove.
"""
    section = f"""## MFU at sequence length 512

Command: `.venv/bin/python bench/mfu.py --steps {args.steps} --batch-size {args.batch_size}` ({os.cpu_count()} cores). `helpsteer train --objective bt
--backbone small --max_length 512` on HH-RLHF harmless packed to 512 tokens (each record preceded by the 4
records before it as earlier turns; {trunc}), in each precision; median tokens/s of the logged windows after the first x {fpt / 1e6:.1f} MFLOP/token (forward + backward,
6N + attention at 512), against the measured matmul peak of the same precision (1024 x 1024 matmuls).

| precision | tokens/s | GFLOP/s | peak GFLOP/s | MFU (goal >= 35%) |
|---|---|---|---|---|
{table}

{profile}"""
    publish(args.out, "## MFU at sequence length 512", section)


if __name__ == "__main__":
    main()
