"""Dashboard page times on a 100k-response workspace: every page rendered by streamlit's AppTest
(the app's own code, caches included), first visit (cold caches) and second visit (warm).

Run:  .venv/bin/python bench/dashboard.py [--prompts 50000] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
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
PAGES = ["datasets", "agreement", "diverging", "items", "runs", "evaluation", "adversarial", "playground"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=50000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    work = WORK / f"dashboard-{args.prompts}"
    syn, ws = work / "syn", work / "ws"
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error")
    if not (ws / "datasets" / "dis" / "analysis").exists():
        subprocess.run([HS, "synth", "--out", str(syn), "--prompts", str(args.prompts), "--seed", "5"], check=True, capture_output=True, env=env)
        for name, files in (("hs2", ["helpsteer2/train.jsonl.gz", "helpsteer2/validation.jsonl.gz"]), ("dis", ["helpsteer2/disagreements/disagreements.jsonl.gz"]),
                            ("pref", ["helpsteer2/preference/preference.jsonl.gz"])):
            subprocess.run([HS, "ingest", *[str(syn / f) for f in files], "--workspace", str(ws), "--name", name], check=True, capture_output=True, env=env)
        for name in ("dis", "pref"):
            subprocess.run([HS, "analyze", "--workspace", str(ws), "--name", name], check=True, capture_output=True, env=env)
    import polars as pl

    n_resp = pl.scan_parquet(ws / "datasets" / "hs2" / "responses.parquet").select(pl.len()).collect().item()
    os.environ["HELPSTEER_WORKSPACE"] = str(ws)
    from streamlit.testing.v1 import AppTest

    rows = []
    at = AppTest.from_file(str(ROOT / "dashboards" / "app.py"), default_timeout=600)
    for page in PAGES:
        times = []
        for _ in range(2):
            t = time.perf_counter()
            at.switch_page(f"app_pages/{page}.py")
            at.run()
            times.append(time.perf_counter() - t)
            assert not at.exception, (page, at.exception)
        rows.append((page, *times))
        print(page, times, flush=True)
    table = "\n".join(f"| {p} | {a:.2f} | {b:.2f} |" for p, a, b in rows)
    section = f"""## Dashboard

Command: `.venv/bin/python bench/dashboard.py --prompts {args.prompts}` ({os.cpu_count()} cores): a workspace with
{n_resp:,} responses (HelpSteer2 layout), their disagreements and preferences datasets, analysed; each page
rendered by streamlit's AppTest running the app's own code, first visit (cold `st.cache_data`) and second.

| page | first visit s | second visit s |
|---|---|---|
{table}
"""
    publish(args.out, "## Dashboard", section)


if __name__ == "__main__":
    main()
