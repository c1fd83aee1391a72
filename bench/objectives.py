"""Principle, mean-variance and adversarial objectives on synthetic data (small preset), all in one
run: principle accuracy on held-out phrasings; divergence AUROC of the mean-variance model next to a
plain BT model's |margin| on the same pairs; attack success rate and clean accuracy per Adv-RM round,
with the share of successful attacks whose original is the truly better response (planted truth).

Run:  .venv/bin/python bench/objectives.py [--prompts 2000] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import publish  # noqa: E402
from ingest import WORK  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HS = str(ROOT / ".venv" / "bin" / "helpsteer")


def sh(*args: str) -> float:
    t = time.perf_counter()
    p = subprocess.run([HS, *args], capture_output=True, text=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
    if p.returncode:
        raise RuntimeError(f"helpsteer {' '.join(args)} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    work = WORK / "objectives"
    syn, ws = work / "syn", work / "ws"
    if not syn.exists():
        sh("synth", "--out", str(syn), "--prompts", str(args.prompts), "--seed", "21")
    if not (ws / "datasets" / "hs2").exists():
        sh("ingest", str(syn / "helpsteer2" / "train.jsonl.gz"), str(syn / "helpsteer2" / "validation.jsonl.gz"), "--workspace", str(ws), "--name", "hs2")
        # the preference pairs with the per-annotator ratings of the same responses (the mean-variance
        # model's NLL term fits each response's rating spread)
        sh("ingest", str(syn / "helpsteer2" / "preference" / "preference.jsonl.gz"), str(syn / "helpsteer2" / "disagreements" / "disagreements.jsonl.gz"),
           "--workspace", str(ws), "--name", "pref")
        sh("analyze", "--workspace", str(ws), "--name", "pref")
    small = ["--backbone", "small", "--max_length", "128", "--save_strategy", "no"]
    runs = ws / "runs"
    t = {}

    def done(r):  # a finished run from an earlier invocation is reused (its time is then the recorded one)
        return (runs / r / "eval.json").exists()

    prev = json.loads((work / "times.json").read_text()) if (work / "times.json").exists() else {}
    # a recorded time counts while its output still exists
    output = {"regression_base": runs / "regression-base" / "config.json", "bt_scratch": runs / "bt-scratch" / "config.json",
              "attack": work / "attack" / "attack.json", **{k: runs / k / "eval.json" for k in ("principle", "meanvar", "bt")}}
    t.update({k: v for k, v in prev.items() if k in output and output[k].exists()})
    for k in ("principle", "meanvar", "bt"):
        if done(k) and k not in t:  # no wall time recorded: the trainer's own train_runtime (start-up excluded)
            lines = [json.loads(x) for x in (runs / k / "metrics.jsonl").read_text().splitlines()]
            t[k] = next(x["train_runtime"] for x in lines if "train_runtime" in x)
    reused = sorted(t)  # outputs of an earlier invocation, not rerun here
    # RLBFF fine-tunes a pretrained model and HelpSteer2-Preference starts BT from a regression model;
    # here the "pretrained" backbone of all three is a regression reward model trained from scratch on
    # the same synthetic ratings (6 epochs: at 3 it had not yet learned the fact table reliably,
    # correctness Pearson 0.35 vs 0.73); the responses are the same in hs2 and pref
    base = runs / "regression-base"
    if not output["regression_base"].exists():
        t["regression_base"] = sh("train", "--workspace", str(ws), "--name", "hs2", "--objective", "regression", *small, "--num_train_epochs", "6",
                                  "--out", "regression-base")
    if not done("principle"):
        t["principle"] = sh("train", "--workspace", str(ws), "--name", "hs2", "--objective", "principle", *small, "--num_train_epochs", "1",
                            "--principles_per_response", "10", "--principle_augment", "0.85", "--learning_rate", "2e-4", "--init_from", str(base),
                            "--out", "principle")
        sh("eval", "--model", str(runs / "principle"), "--workspace", str(ws), "--name", "hs2")
    for r in ("meanvar", "bt"):
        if not done(r):
            extra = ["--nll_weight", "1"] if r == "meanvar" else []
            t[r] = sh("train", "--workspace", str(ws), "--name", "pref", "--objective", r, *small, "--num_train_epochs", "2", *extra,
                      "--init_from", str(base), "--out", r)
            sh("eval", "--model", str(runs / r), "--workspace", str(ws), "--name", "pref")
    # the attack's target: a BT model trained from scratch (2 epochs), as the ensemble the attack trains
    if not output["bt_scratch"].exists():
        t["bt_scratch"] = sh("train", "--workspace", str(ws), "--name", "pref", "--objective", "bt", *small, "--num_train_epochs", "2", "--out", "bt-scratch")
    if "attack" not in t:  # an attack loop of an earlier invocation is reused too
        t["attack"] = sh("attack", "--model", str(runs / "bt-scratch"), "--workspace", str(ws), "--name", "pref", "--out", str(work / "attack"), "--rounds", "2",
                         "--prompts", "150", "--train-prompts", "300", "--steps", "16")
    (work / "times.json").write_text(json.dumps(t))
    pe = json.loads((runs / "principle" / "eval.json").read_text())
    mv = json.loads((runs / "meanvar" / "eval.json").read_text())
    bt = json.loads((runs / "bt" / "eval.json").read_text())
    att = json.loads((work / "attack" / "attack.json").read_text())
    # planted truth: is the attacked original the truly better response of its pair?
    pairs = [p for p in map(json.loads, (syn / "truth" / "pairs.jsonl").open())]
    by_id = {r["response_id"]: r for r in map(json.loads, (syn / "truth" / "responses.jsonl").open())}
    key = lambda ctx, resp: (tuple((t["role"], t["content"]) for t in ctx), resp)  # noqa: E731
    best = {}
    for p in pairs:
        a, b = by_id[p["response_a_id"]], by_id[p["response_b_id"]]
        best[key(a["context"], a["response"])] = a["quality"] >= b["quality"]
        best[key(b["context"], b["response"])] = b["quality"] >= a["quality"]
    ex0 = [e for e in att["examples"] if e["round"] == 0]
    agree = [bool(best.get(key(e["context"], e["original"]))) for e in ex0]
    truth_share = sum(agree) / len(agree) if agree else None
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731

    def goal(auc):
        ok = auc is not None and auc >= 0.7 and auc >= (bt.get("divergence_auroc") or 0) + 0.05
        return f"{fmt(auc)}, {'met' if ok else 'NOT met'}"

    rounds = "\n".join(f"| {r['round']} | {fmt(r['attack_success_rate'])} | {fmt(r['clean_accuracy'])} | {r['n_prompts']} | {r['n_adversarial_pairs']} |" for r in att["rounds"])
    first, last = att["rounds"][0], att["rounds"][-1]
    drop = first["attack_success_rate"] - last["attack_success_rate"]
    acc_drop = first["clean_accuracy"] - last["clean_accuracy"]
    held_rows = "\n".join(f"| {q} | {fmt(m['accuracy'])} | {fmt(m['auroc'])} |" for q, m in pe["per_principle"].items() if m["heldout"])
    cmd = f".venv/bin/python bench/objectives.py --prompts {args.prompts}"
    section = f"""## Principle, mean-variance and adversarial objectives

Command: `{cmd}` (synthetic data, seed 21; small preset, max length 128; times are whole-command wall times, or the trainer's train_runtime for runs reused from an earlier invocation).
{"Reused from an earlier invocation (their outputs were kept): " + ", ".join(reused) + "." if reused else ""}

Starting point of the principle, mean-variance and BT models below: a regression run on the ratings (6 epochs, {t.get('regression_base', 0):.0f} s).

Principle model: `--objective principle --init_from` the regression run (1 epoch, 10 rating-derived
principles sampled per response, 85% of them reworded (`--principle_augment 0.85`), `--learning_rate 2e-4`, {t['principle']:.0f} s):

| metric | value | goal |
|---|---|---|
| principle_accuracy (validation, all phrasings) | {fmt(pe.get('principle_accuracy'))} | |
| principle_auroc | {fmt(pe.get('principle_auroc'))} | |
| principle_accuracy_heldout_phrasings | {fmt(pe.get('principle_accuracy_heldout_phrasings'))} | >= 0.85: {"met" if (pe.get('principle_accuracy_heldout_phrasings') or 0) >= 0.85 else "NOT met"} |
| principle_accuracy_trained_phrasings | {fmt(pe.get('principle_accuracy_trained_phrasings'))} | |

Per held-out phrasing (never trained on; accuracy / AUROC over the {pe.get('n_responses', 0)} validation responses):

| held-out phrasing | accuracy | AUROC |
|---|---|---|
{held_rows}

Mean-variance (`--nll_weight 1`: the NLL term on the per-annotator helpfulness ratings, ingested
with the pairs from the HelpSteer2 `disagreements` layout) vs plain BT on the same pairs, both
`--init_from` the regression run (2 epochs each; {t['meanvar']:.0f} s and {t['bt']:.0f} s):

| model | accuracy | unanimous accuracy | diverging accuracy | divergence AUROC (-abs z or -abs margin) | divergence AUROC (sigma) |
|---|---|---|---|---|---|
| meanvar | {fmt(mv.get('accuracy'))} | {fmt(mv.get('unanimous_accuracy'))} | {fmt(mv.get('diverging_accuracy'))} | {fmt(mv.get('divergence_auroc'))} | {fmt(mv.get('divergence_auroc_sigma'))} |
| bt | {fmt(bt.get('accuracy'))} | {fmt(bt.get('unanimous_accuracy'))} | {fmt(bt.get('diverging_accuracy'))} | {fmt(bt.get('divergence_auroc'))} | - |

Goal: mean-var divergence AUROC >= 0.7 and clearly above BT's (taken here as at least 0.05 above), for each
divergence score the issue names: -|z| = -|mu_A - mu_B| / sqrt(var_A + var_B): {goal(mv.get('divergence_auroc'))};
predicted sigma (var_A + var_B): {goal(mv.get('divergence_auroc_sigma'))}. BT's score is -|margin| ({fmt(bt.get('divergence_auroc'))}).
One run on {mv.get('n_unanimous', 0) + mv.get('n_diverging', 0)} validation pairs: an AUROC moves by about 0.04 (one standard error) between samples of this size.

Adv-RM loop against a BT model trained from scratch (`helpsteer train --objective bt --num_train_epochs 2`, {t.get('bt_scratch', 0):.0f} s),
`helpsteer attack --rounds 2 --prompts 150 --train-prompts 300 --steps 16`, ensemble of 2 trained by it; {t['attack']:.0f} s):

| round | attack success rate | clean accuracy | prompts | adversarial pairs so far |
|---|---|---|---|---|
{rounds}

Attack success rate drop after adversarial training (round 0 minus last round): {drop:+.3f} (goal: a drop: {"met" if drop > 0 else "NOT met"}); clean accuracy
change {-acc_drop:+.3f} (goal: at most -0.01: {"met" if acc_drop <= 0.01 else "NOT met"}). Planted truth: {fmt(truth_share)} of the
round-0 successful attacks start from the truly better response of their pair (so the attack, an
edit that cannot improve it, is truly worse than a response the model should rank first).
"""
    publish(args.out, "## Principle, mean-variance and adversarial objectives", section)


if __name__ == "__main__":
    main()
