"""`helpsteer train --objective bt` against TRL's RewardTrainer in the same run: throughput (pairs/s
of each whole command, same model, data, batch size and epochs) on short synthetic texts and on
HH-RLHF-length texts, for the platform's NemotronH class and a tiny Llama; and held-out accuracy on
HH-RLHF harmless split 80/20 by prompt, both trainers on the same model and budget.

Run:  .venv/bin/python bench/trl_compare.py [--hh-pairs 600] [--epochs 1] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_out_option, fresh_work, publish  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HS = str(ROOT / ".venv" / "bin" / "helpsteer")
PY = str(ROOT / ".venv" / "bin" / "python")
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test" / "harmless-base"
ENV = dict(os.environ, TRANSFORMERS_VERBOSITY="error")


def run(*cmd: str) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(list(cmd), capture_output=True, text=True, env=ENV, cwd=ROOT)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t, p.stdout


def backbones(ws: Path, name: str, out: Path, max_len: int) -> dict[str, Path]:
    """Initial checkpoints both trainers start from: the platform's NemotronH small preset and a tiny
    Llama of similar size, with a BPE trained on the dataset (saved with each)."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rm_training.backbones import build_config
    from rm_training.modeling import NemotronHForSequenceClassification
    from rm_training.tokenizer import train_bpe
    from rm_training.train import _texts_for_tokenizer

    tok = train_bpe(_texts_for_tokenizer(ws, name), vocab_size=4096)
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    nem = NemotronHForSequenceClassification(build_config("small", vocab_size=len(tok), num_labels=1, **ids))
    torch.manual_seed(0)
    llama = LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max(1024, max_len),
                                                       num_labels=1, **ids))
    paths = {}
    for key, model in (("nemotron_h", nem), ("llama", llama)):
        p = out / key
        model.config.reward_max_length = max_len
        model.save_pretrained(p)
        tok.save_pretrained(p)
        paths[key] = p
    return paths


def compare(ws: Path, name: str, label: str, work: Path, epochs: float, bs: int, max_len: int, evaluate: bool) -> list[dict]:
    data = work / f"{name}.train.dpo.jsonl"
    run(HS, "export", "--workspace", str(ws), "--name", name, "--format", "dpo", "--split", "train", "--out", str(data))
    out = []
    for key, bb in backbones(ws, name, work / f"init-{name}", max_len).items():
        ours = ws / "runs" / f"ours-{name}-{key}"
        t_ours, _ = run(HS, "train", "--workspace", str(ws), "--name", name, "--objective", "bt", "--backbone", str(bb), "--num_train_epochs", str(epochs),
                        "--per_device_train_batch_size", str(bs), "--max_length", str(max_len), "--save_strategy", "no", "--out", str(ours))
        n_ours = json.loads((ours / "run_config.json").read_text())["run"]["n_examples"]
        trl_dir = work / f"trl-{name}-{key}"
        t_trl, stdout = run(PY, str(ROOT / "bench" / "_trl_train.py"), "--backbone", str(bb), "--data", str(data), "--out", str(trl_dir),
                            "--epochs", str(epochs), "--batch-size", str(bs), "--max-length", str(max_len))
        info = json.loads(stdout.strip().splitlines()[-1])
        row = {"data": label, "model": key, "ours_s": t_ours, "ours_pairs": n_ours, "ours_pps": n_ours * epochs / t_ours,
               "trl_s": t_trl, "trl_pairs": info["pairs"], "trl_given": info["given"], "trl_pps": info["pairs"] * epochs / t_trl}
        row["ratio"] = row["ours_pps"] / row["trl_pps"]
        if evaluate:
            for side, path in (("ours", ours), ("trl", trl_dir)):
                run(HS, "eval", "--model", str(path), "--workspace", str(ws), "--name", name, "--out", str(work / f"eval-{name}-{key}-{side}.json"))
                row[f"{side}_acc"] = json.loads((work / f"eval-{name}-{key}-{side}.json").read_text())["accuracy"]
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hh-pairs", type=int, default=0, help="Subsample HH-RLHF to this many records (0 = all 2,312).")
    ap.add_argument("--synth-prompts", type=int, default=800)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    add_out_option(ap)
    args = ap.parse_args()
    work = fresh_work("trl")
    ws = work / "ws"
    run(HS, "synth", "--out", str(work / "syn"), "--prompts", str(args.synth_prompts), "--seed", "13")
    run(HS, "ingest", str(work / "syn" / "helpsteer2" / "preference" / "preference.jsonl.gz"), "--workspace", str(ws), "--name", "syn")
    hh_src = sorted(HH.glob("*.jsonl*"))
    if args.hh_pairs:
        import gzip

        lines = []
        for f in hh_src:
            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt") as fh:
                lines += fh.readlines()
        (work / "hh.jsonl").write_text("".join(lines[: args.hh_pairs]))
        hh_src = [work / "hh.jsonl"]
    run(HS, "ingest", *map(str, hh_src), "--workspace", str(ws), "--name", "hh", "--format", "hh-rlhf")
    run(HS, "split", "--workspace", str(ws), "--name", "hh", "--eval-fraction", "0.2", "--seed", "0")
    rows = compare(ws, "syn", "synthetic (short)", work, args.epochs, args.batch_size, 128, evaluate=False)
    rows += compare(ws, "hh", "HH-RLHF harmless (long)", work, args.epochs, args.batch_size, 512, evaluate=True)
    table = "\n".join(f"| {r['data']} | {r['model']} | {r['ours_pps']:.2f} ({r['ours_pairs']} pairs, {r['ours_s']:.0f} s) | "
                      f"{r['trl_pps']:.2f} ({r['trl_pairs']} of {r['trl_given']} pairs, {r['trl_s']:.0f} s) | **{r['ratio']:.2f}x** |" for r in rows)
    acc = "\n".join(f"| {r['model']} | {r['ours_acc']:.3f} | {r['trl_acc']:.3f} |" for r in rows if "ours_acc" in r)
    goal_s = [r["ratio"] for r in rows if r["data"].startswith("synthetic")]
    goal_h = [r["ratio"] for r in rows if r["data"].startswith("HH")]
    cmd = f".venv/bin/python bench/trl_compare.py --hh-pairs {args.hh_pairs} --synth-prompts {args.synth_prompts} --epochs {args.epochs:g} --batch-size {args.batch_size}"
    section = f"""## Training throughput and HH-RLHF accuracy vs TRL

Command: `{cmd}` ({os.cpu_count()} cores). Each side is a whole command as a user runs it
(`helpsteer train --objective bt --backbone DIR` vs a script calling TRL's `RewardTrainer` with its
defaults: bf16 autocast, gradient checkpointing, padding to the longest pair, no length grouping,
pairs over max_length dropped), same initial checkpoint (saved once), same training pairs, batch size
{args.batch_size}, {args.epochs:g} epoch(s); max length 128 (synthetic) and 512 (HH-RLHF). pairs/s = pairs trained
on x epochs / wall time of the command (start-up and tokenisation included).

| data | model | helpsteer pairs/s | TRL pairs/s | ratio |
|---|---|---|---|---|
{table}

Goals: >= 1.5x on short synthetic texts ({", ".join(f"{x:.2f}x" for x in goal_s)}: {"met" if goal_s and min(goal_s) >= 1.5 else "NOT met"});
>= 2x on HH-RLHF-length texts ({", ".join(f"{x:.2f}x" for x in goal_h)}: {"met" if goal_h and min(goal_h) >= 2 else "NOT met"}).

HH-RLHF harmless (`../shared/data/hh-rlhf-harmless-test`, split 80/20 by prompt with `helpsteer split --seed 0`),
held-out pairwise accuracy of both trainers' models (scored by `helpsteer eval` on the 20%), same model and budget:

| model | helpsteer train | TRL RewardTrainer |
|---|---|---|
{acc}
"""
    publish(args.out, "## Training throughput and HH-RLHF accuracy vs TRL", section)


if __name__ == "__main__":
    main()
