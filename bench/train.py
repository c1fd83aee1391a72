"""Training benchmark: learning quality of `helpsteer train` on synthetic data against the planted
truth, throughput (pairs/s, tokens/s) and model FLOP utilisation against the machine's measured
fp32 matmul peak, all in one run.

Run:  .venv/bin/python bench/train.py [--prompts 4000] [--epochs 2] [--out bench/RESULTS.md]

The same-run comparison with TRL's RewardTrainer and the HH-RLHF 80/20 comparison are in
bench/trl_compare.py."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_out_option, command_line, print_rows  # noqa: E402
from ingest import WORK, _write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HS = str(ROOT / ".venv" / "bin" / "helpsteer")


def sh(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([HS, *args], check=True, capture_output=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
    return time.perf_counter() - t


def matmul_peak(dtype: str = "float32") -> float:
    """GFLOP/s of a large matmul in this precision on this machine (the practical peak)."""
    import torch

    a, b = torch.randn(1024, 1024, dtype=getattr(torch, dtype)), torch.randn(1024, 1024, dtype=getattr(torch, dtype))
    for _ in range(3):
        a @ b
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 2.0:
        a @ b
        n += 1
    return 2 * 1024**3 * n / (time.perf_counter() - t) / 1e9


def truth_pair_accuracy(run: Path, synth: Path) -> tuple[float, int]:
    """Held-out pairs (validation split, not tied in truth): does the model prefer the truly better one?"""
    import rm_training  # noqa: F401
    from rm_training.scoring import load_run, score_texts
    from rm_training.tokenizer import render

    model, tok = load_run(run)
    truth = {r["response_id"]: r for r in map(json.loads, (synth / "truth" / "responses.jsonl").open())}
    pairs = [p for p in map(json.loads, (synth / "truth" / "pairs.jsonl").open()) if p["split"] == "validation" and p["true_better"] != "tie"]
    ids = sorted({i for p in pairs for i in (p["response_a_id"], p["response_b_id"])})
    texts = [render(tok, truth[i]["context"], truth[i]["response"]) for i in ids]
    logits, _ = score_texts(model, tok, texts, int(model.config.reward_max_length))
    r = dict(zip(ids, logits @ np.array(model.config.reward_weights)))
    correct = [(r[p["response_a_id"]] > r[p["response_b_id"]]) == (p["true_better"] == "a") for p in pairs]
    return float(np.mean(correct)), len(pairs)


def truth_regression(run: Path, synth: Path) -> dict:
    from scipy.stats import pearsonr

    import rm_training  # noqa: F401
    from rm_training.scoring import load_run, score_texts
    from rm_training.tokenizer import render

    model, tok = load_run(run)
    rows = [r for r in map(json.loads, (synth / "truth" / "responses.jsonl").open()) if r["split"] == "validation"]
    logits, _ = score_texts(model, tok, [render(tok, r["context"], r["response"]) for r in rows], int(model.config.reward_max_length))
    attrs = list(model.config.reward_attributes)
    return {a: float(pearsonr([r["attributes"][a] for r in rows], logits[:, k]).statistic) for k, a in enumerate(attrs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=4000)
    ap.add_argument("--epochs", type=float, default=3)
    add_out_option(ap)
    args = ap.parse_args()
    synth, ws = WORK / f"synth-train-{args.prompts}", WORK / "ws-train"
    if not (synth / "truth").exists():
        subprocess.run([HS, "synth", "--out", str(synth), "--prompts", str(args.prompts), "--seed", "7"], check=True, capture_output=True)
    import shutil

    shutil.rmtree(ws, ignore_errors=True)
    sh("ingest", str(synth / "helpsteer2" / "preference" / "preference.jsonl.gz"), "--workspace", str(ws), "--name", "pref")
    sh("ingest", str(synth / "helpsteer2" / "train.jsonl.gz"), str(synth / "helpsteer2" / "validation.jsonl.gz"), "--workspace", str(ws), "--name", "hs2")
    # the trainer's defaults (batch 8, learning rate 5e-4, bf16 autocast where native, length grouping)
    base = ["--backbone", "small", "--max_length", "96", "--logging_steps", "20", "--save_strategy", "no"]
    common = [*base, "--num_train_epochs", str(args.epochs)]
    t_bt = sh("train", "--workspace", str(ws), "--name", "pref", "--objective", "bt", *common, "--out", "bt")
    t_reg = sh("train", "--workspace", str(ws), "--name", "hs2", "--objective", "regression", *common, "--out", "reg")
    # HelpSteer2-Preference two-stage recipe: scaled BT starting from the regression run, half an epoch
    t_two = sh("train", "--workspace", str(ws), "--name", "pref", "--objective", "bt", "--bt_variant", "scaled", "--init_from", str(ws / "runs" / "reg"),
               *base, "--num_train_epochs", "0.5", "--learning_rate", "0.0002", "--out", "two-stage")
    acc2, _ = truth_pair_accuracy(ws / "runs" / "two-stage", synth)
    acc, n_pairs = truth_pair_accuracy(ws / "runs" / "bt", synth)
    acc_reg, _ = truth_pair_accuracy(ws / "runs" / "reg", synth)
    reg = truth_regression(ws / "runs" / "reg", synth)
    lines = [json.loads(x) for x in (ws / "runs" / "bt" / "metrics.jsonl").read_text().splitlines()]
    tps = float(np.median([x["tokens_per_s"] for x in lines if "tokens_per_s" in x]))
    summary = next(x for x in lines if "train_runtime" in x)
    n_train = json.loads((ws / "runs" / "bt" / "run_config.json").read_text())["run"]["n_examples"]
    pairs_per_s = n_train * args.epochs / summary["train_runtime"]
    from rm_training.backbones import build_config, flops_per_token

    cfg = json.loads((ws / "runs" / "bt" / "config.json").read_text())
    fpt = flops_per_token(build_config("small", cfg["vocab_size"]), 96)
    precision = "bfloat16" if json.loads((ws / "runs" / "bt" / "run_config.json").read_text())["config"].get("bf16") else "float32"
    peak = matmul_peak(precision)
    mfu = tps * fpt / 1e9 / peak
    def within(t):
        return "within 600 s" if t <= 600 else "NOT within 600 s"

    rows = [
        f"| bt, small preset, {args.epochs:g} epochs ({n_train} pairs) | {t_bt:.0f} s ({within(t_bt)}) | held-out pairwise accuracy vs planted truth **{acc:.3f}** ({n_pairs} pairs; goal >= 0.85) |",
        f"| regression, small preset, {args.epochs:g} epochs | {t_reg:.0f} s ({within(t_reg)}) | Pearson vs planted truth: " + ", ".join(f"{a} {v:.2f}" for a, v in reg.items())
        + f" (goal >= 0.7 on correctness and coherence); its scalar reward (Nemotron-4-340B weights) ranks the held-out pairs with accuracy {acc_reg:.3f} |",
        f"| two-stage (HelpSteer2-Preference): that regression run, then half an epoch of scaled BT from it (`--bt_variant scaled --init_from reg --learning_rate 2e-4`) | {t_reg + t_two:.0f} s in all ({within(t_reg + t_two)}) | held-out pairwise accuracy vs planted truth **{acc2:.3f}** |",
        f"| throughput (bt) | | {pairs_per_s:.1f} pairs/s, {tps:,.0f} tokens/s (median of logged windows) |",
        f"| model FLOP utilisation | | {mfu * 100:.1f}% of the measured {precision} matmul peak {peak:.0f} GFLOP/s (the run's precision) at seq <= 96 ({fpt / 1e6:.1f} MFLOP/token) |",
    ]
    print_rows(rows)
    section = "\n".join([
        "## Training (`bench/train.py`)", "",
        command_line("train.py", f"--prompts {args.prompts} --epochs {args.epochs:g}"),
        f"Synthetic data from `helpsteer synth --prompts {args.prompts} --seed 7`; each run is the whole `helpsteer train` command.",
        "TRL RewardTrainer and the HH-RLHF 80/20 comparison: section below (`bench/trl_compare.py`); MFU at sequence length 512: `bench/mfu.py`.", "",
        "| run | wall | result |", "|---|---|---|", *rows, "",
    ])
    _write_section(Path(args.out), "## Training (`bench/train.py`)", section)


if __name__ == "__main__":
    main()
