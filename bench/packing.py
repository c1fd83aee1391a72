"""Padding-free training (--packing true) against padded batches, in the same run: training tokens/s
(real tokens, padding not counted) of `helpsteer train --objective bt` on the same tiny Llama
(saved once), the same HH-RLHF pairs (mixed lengths) and the same batch size, with and without
length grouping.

Run:  .venv/bin/python bench/packing.py [--pairs 400] [--epochs 1] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import WORK, _write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HS = [sys.executable, "-m", "helpsteer.cli"]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test" / "harmless-base" / "test.jsonl.gz"
ENV = dict(os.environ, TRANSFORMERS_VERBOSITY="error")

# (label, extra options): padded with the trainer's defaults (length-grouped batches, cut in two
# length-sorted halves), padded with random batches, and packed with either sampler
SETUPS = [
    ("padded, group_by_length (default)", []),
    ("padded, random batches", ["--train_sampling_strategy", "random"]),
    ("packed, group_by_length", ["--packing", "true"]),
    ("packed, random batches", ["--packing", "true", "--train_sampling_strategy", "random"]),
]


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t


def llama(ws: Path, name: str, out: Path, max_len: int) -> Path:
    """The initial checkpoint every setup starts from: a 4-layer Llama (hidden 256) with a BPE
    trained on the dataset, as in bench/trl_compare.py."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rm_training.tokenizer import train_bpe
    from rm_training.train import _texts_for_tokenizer

    tok = train_bpe(_texts_for_tokenizer(ws, name), vocab_size=4096)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max(1024, max_len),
                                                       num_labels=1, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                                       eos_token_id=tok.eos_token_id, use_cache=False))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=400, help="HH-RLHF harmless records used (of 2,312).")
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    work = WORK / "packing"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with gzip.open(HH, "rt") as f:
        lines = [next(f) for _ in range(args.pairs)]
    (work / "hh.jsonl").write_text("".join(lines))
    ws = work / "ws"
    run(HS + ["ingest", str(work / "hh.jsonl"), "--workspace", str(ws), "--name", "hh", "--format", "hh-rlhf"])
    ck = llama(ws, "hh", work / "init", args.max_length)
    rows = []
    for label, extra in SETUPS:
        out = ws / "runs" / f"{label.split(',')[0]}-{'random' if 'random' in label else 'grouped'}"
        wall = run(HS + ["train", "--workspace", str(ws), "--name", "hh", "--objective", "bt", "--backbone", str(ck), "--num_train_epochs", str(args.epochs),
                         "--per_device_train_batch_size", str(args.batch_size), "--max_length", str(args.max_length), "--logging_steps", "5",
                         "--save_strategy", "no", "--out", str(out), *extra])
        logs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        windows = [x["tokens_per_s"] for x in logs if "tokens_per_s" in x]
        windows = windows[1:] or windows  # the first window holds the start-up
        runtime = next(x["train_runtime"] for x in logs if "train_runtime" in x)
        row = {"setup": label, "tokens_per_s": statistics.median(windows), "train_s": runtime, "wall_s": wall,
               "final_loss": [x["loss"] for x in logs if "accuracy" in x][-1]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    base = rows[0]
    table = "\n".join(f"| {r['setup']} | {r['tokens_per_s']:.0f} | **{r['tokens_per_s'] / base['tokens_per_s']:.2f}x** | {r['train_s']:.1f} "
                      f"| {base['train_s'] / r['train_s']:.2f}x | {r['final_loss']:.4f} |" for r in rows)
    n = json.loads((ws / "runs" / "padded-grouped" / "run_config.json").read_text())["run"]["n_examples"]
    cmd = f".venv/bin/python bench/packing.py --pairs {args.pairs} --epochs {args.epochs:g} --batch-size {args.batch_size} --max-length {args.max_length}"
    section = f"""## Padding-free training (`bench/packing.py`)

Command: `{cmd}` ({os.cpu_count()} cores, bf16 autocast {'on' if _bf16() else 'off'}: the trainer's default here).
`helpsteer train --objective bt --backbone DIR` on a 4-layer Llama (hidden 256, saved once, BPE
trained on the data), {n} HH-RLHF harmless pairs (`../shared/data/hh-rlhf-harmless-test`, the first
{args.pairs} records; texts of mixed length, max length {args.max_length}), batch {args.batch_size}, {args.epochs:g} epoch(s), all in one
run. tokens/s: the trainer's `tokens_per_s` (real tokens only, padding not counted), median of its
5-step logging windows after the first; train s: transformers' `train_runtime`. Packed rows hold
up to --max_length tokens (`--packing_row_tokens` default), attention is SDPA with the
block-diagonal mask transformers builds from the position ids.

| setup | tokens/s | vs default | train s | speed-up | last logged loss |
|---|---|---|---|---|---|
{table}
"""
    _write_section(Path(args.out), "## Padding-free training", section)
    print(section)


def _bf16() -> bool:
    from rm_training.config import native_bf16

    return native_bf16()


if __name__ == "__main__":
    main()
