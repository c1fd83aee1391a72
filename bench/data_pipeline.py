"""Training data pipeline benchmark: peak RSS and time to the first optimizer step of `helpsteer
train` on 20k and 200k synthetic pairs, with a cold and a warm tokenized-examples cache
(WS/.cache/tokenized), against the code before the cache (git BASE) in the same run.

Run:  .venv/bin/python bench/data_pipeline.py [--sizes 20000,200000] [--base 1bb126c] [--out bench/RESULTS.md]
Each measurement is a fresh `helpsteer train ... --max_steps 1` process; peak RSS is the largest
resident set of that process or any of its children (os.wait4's ru_maxrss: the tokenizing workers
count one at a time, not summed); time to the first step runs from the process start to the first
line of RUN/metrics.jsonl (logged at step 1)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "data_pipeline"
PY = sys.executable
WORDS = ["the", "model", "answer", "question", "helpful", "correct", "clear", "short", "long", "detail", "reason", "because", "example",
         "which", "would", "could", "python", "data", "table", "river", "mountain", "history", "science", "music", "paint", "number",
         "garden", "kitchen", "travel", "letter", "market"]


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    """n pairs of short texts (prompt 6-12 words, responses 8-24 words) in the `pairs` format; the
    file name makes them the train split."""
    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps({"prompt": f"{i} {text(6, 12)}?", "chosen": text(8, 24) + ".", "rejected": text(8, 24)}) + "\n" for i in range(n))


def measure(code: Path, ws: Path, name: str, run: Path, tokenizer: Path, num_proc: int) -> dict:
    """One training process, waited for with os.wait4 (Popen.poll would reap it and lose its rusage)."""
    shutil.rmtree(run, ignore_errors=True)
    cmd = [PY, "-m", "helpsteer.cli", "train", "--workspace", str(ws), "--name", name, "--objective", "bt", "--backbone", "tiny",
           "--tokenizer", str(tokenizer), "--max_length", "64", "--max_steps", "1", "--logging_steps", "1", "--save_strategy", "no",
           "--out", str(run)]
    if code == ROOT:
        cmd += ["--dataset_num_proc", str(num_proc)]
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")
    log = WORK / f"{run.name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as errf:
        p = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=errf)
        first = None
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if first is None and (run / "metrics.jsonl").exists():
                first = time.perf_counter() - t0
            time.sleep(0.02)
    total = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = log.read_text()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    return {"first_step_s": first or total, "total_s": total, "peak_mb": usage.ru_maxrss / 1024, "reused": "reused tokenized examples" in err}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20000,200000")
    ap.add_argument("--base", default="1bb126c", help="the commit before the tokenized-examples cache")
    ap.add_argument("--num-proc", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    base = WORK / "base"
    base.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base, "helpsteer", "rm_training"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)

    sys.path.insert(0, str(ROOT))
    from rm_training.tokenizer import train_bpe

    write_pairs(WORK / "tok" / "train.jsonl", 2000, seed=99)
    texts = [v for line in (WORK / "tok" / "train.jsonl").read_text().splitlines() for v in json.loads(line).values()]
    tok = WORK / "tokenizer"
    train_bpe(texts, vocab_size=512).save_pretrained(tok)

    rows = []
    for n in sizes:
        ws, name = WORK / f"ws-{n}", f"p{n}"
        write_pairs(WORK / f"in-{n}" / "train.jsonl", n)
        t = time.perf_counter()
        subprocess.run([PY, "-m", "helpsteer.cli", "ingest", str(WORK / f"in-{n}" / "train.jsonl"), "--workspace", str(ws), "--name", name],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True, capture_output=True)
        ingest_s = time.perf_counter() - t
        before = measure(base, ws, name, WORK / f"run-base-{n}", tok, args.num_proc)
        cold = measure(ROOT, ws, name, WORK / f"run-cold-{n}", tok, args.num_proc)
        warm = measure(ROOT, ws, name, WORK / f"run-warm-{n}", tok, args.num_proc)
        assert not cold["reused"] and warm["reused"], (cold, warm)
        rows.append({"pairs": n, "ingest_s": ingest_s, "base": before, "cold": cold, "warm": warm})
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(ws / "datasets", ignore_errors=True)  # (the cache stays: its size is reported)
    report(rows, args)


def report(rows: list[dict], args) -> None:
    cmd = f".venv/bin/python bench/data_pipeline.py --sizes {args.sizes} --base {args.base} --num-proc {args.num_proc}"
    lines = ["", "## Training data pipeline: tokenized-examples cache (issue 20)", "",
             (f"Command: `{cmd}` ({os.cpu_count()} cores). Each cell is one fresh `helpsteer train --objective bt --backbone tiny "
              "--max_length 64 --max_steps 1 --tokenizer DIR` process on synthetic short pairs (prompt 6-12 words, responses 8-24);"),
             ("peak RSS: the largest resident set of the process or any of its children (os.wait4); first step: process start to the first "
              f"metrics.jsonl line. base: the code at {args.base} (texts rendered and tokenized into Python lists in the process). "
              f"cold: this code with an empty WS/.cache (render + tokenize with datasets .map, num_proc {args.num_proc}); warm: the same command again."), "",
             "| pairs | base: peak RSS MB | base: first step s | cold: peak RSS MB | cold: first step s | warm: peak RSS MB | warm: first step s | cold / warm |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, c, w = r["base"], r["cold"], r["warm"]
        lines.append(f"| {r['pairs']} | {b['peak_mb']:.0f} | {b['first_step_s']:.1f} | {c['peak_mb']:.0f} | {c['first_step_s']:.1f} | "
                     f"{w['peak_mb']:.0f} | {w['first_step_s']:.1f} | {c['first_step_s'] / w['first_step_s']:.1f}x |")
    if len(rows) >= 2:
        lo, hi = rows[0], rows[-1]
        k = hi["pairs"] / lo["pairs"]
        lines.append("")
        for label in ("cold", "warm", "base"):
            ratio = hi[label]["peak_mb"] / lo[label]["peak_mb"]
            lines.append(f"- peak RSS at {hi['pairs']} / at {lo['pairs']} pairs ({k:.0f}x the data), {label}: {ratio:.2f}x"
                         + (f" (goal below 3x: {'met' if ratio < 3 else 'NOT met'})" if label != "base" else ""))
        for r in rows:
            ratio = r["cold"]["first_step_s"] / r["warm"]["first_step_s"]
            lines.append(f"- warm start against cold at {r['pairs']} pairs: {ratio:.1f}x faster (goal at least 5x: {'met' if ratio >= 5 else 'NOT met'})")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
