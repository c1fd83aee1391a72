"""Analysis benchmark: `helpsteer analyze` on ~1M synthetic ratings (5 attributes, 3-5 annotators per
item, real annotator ids) against, in the same run, (a) the same kappa/alpha values computed once
with scikit-learn and krippendorff on ready matrices (the practical limit) and (b) a typical
row-by-row pandas script (groupby + apply per item).

Run:  .venv/bin/python bench/analyze.py [--prompts 30000] [--out bench/RESULTS.md]"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_out_option, command_line, print_rows  # noqa: E402
from ingest import WORK, _write_section, measure  # noqa: E402  (same measuring harness)

ROOT = Path(__file__).resolve().parents[1]

# the pairs of annotators (rows of m) with >= 5 items in common, in both scripts below
PAIRS = """    kap = []
    for i in range(len(m)):
        for j in range(i + 1, len(m)):
            both = ~np.isnan(m[i]) & ~np.isnan(m[j])
            if both.sum() >= 5:
"""

REFERENCE = """
import json, time, warnings
import numpy as np, polars as pl, krippendorff
from sklearn.metrics import cohen_kappa_score
warnings.simplefilter("ignore")
r = pl.read_parquet(ARGS[0]).filter(pl.col("annotator_id").is_not_null())
ready = {}
for (attr,), g in r.group_by(["attribute"]):
    wide = g.pivot(on="annotator_id", index="response_id", values="score", aggregate_function="first")
    m = wide.drop("response_id").to_numpy().T  # annotators x items, nan = missing
    ready[attr] = m
t = time.perf_counter()
out = {}
for attr, m in ready.items():
    dom = np.unique(m[~np.isnan(m)])
""" + PAIRS + """                k = cohen_kappa_score(m[i][both], m[j][both], labels=dom, weights="quadratic")
                if np.isfinite(k):
                    kap.append(k)
    out[attr] = {"kappa": float(np.mean(kap)),
                 "alpha_interval": float(krippendorff.alpha(reliability_data=m, level_of_measurement="interval")),
                 "alpha_ordinal": float(krippendorff.alpha(reliability_data=m, level_of_measurement="ordinal"))}
elapsed = time.perf_counter() - t
open(ARGS[1], "w").write(json.dumps({"values": out, "compute_s": elapsed}))
"""

TYPICAL = """
import warnings
import numpy as np, pandas as pd, krippendorff
from sklearn.metrics import cohen_kappa_score
warnings.simplefilter("ignore")
df = pd.read_parquet(ARGS[0])
votes = df[df.annotator_id.notna()]
def label(g):
    v = np.sort(g["score"].values)
    med = np.median(v)
    v = v[np.abs(v - med) <= 2]
    if len(v) > 3:
        best = min(range(len(v) - 2), key=lambda s: v[s:s + 3].var())
        v = v[best:best + 3]
    return pd.Series({"mean": g["score"].mean(), "spread": g["score"].max() - g["score"].min(), "label": v.mean()})
items = votes.groupby(["response_id", "attribute"]).apply(label)
# leave-one-out consensus per annotator, one item at a time
def loo(g):
    s, n = g["score"].sum(), len(g)
    return g.assign(loo=(s - g["score"]) / (n - 1)) if n > 1 else None
with_loo = votes.groupby(["response_id", "attribute"], group_keys=False).apply(loo)
ann = with_loo.groupby("annotator_id").apply(lambda g: pd.Series({"offset": (g.score - g.loo).mean(), "agreement": np.corrcoef(g.score, g.loo)[0, 1]}))
for attr, g in votes.groupby("attribute"):
    wide = g.pivot_table(index="annotator_id", columns="response_id", values="score", aggfunc="first")
    m = wide.values
    dom = np.unique(m[~np.isnan(m)])
""" + PAIRS + """                kap.append(cohen_kappa_score(m[i][both], m[j][both], labels=dom, weights="quadratic"))
    krippendorff.alpha(reliability_data=m, level_of_measurement="interval")
    krippendorff.alpha(reliability_data=m, level_of_measurement="ordinal")
"""

OURS = """
from helpsteer.cli import main
assert main(["analyze", "--workspace", ARGS[0], "--name", "bench", "--bootstrap", ARGS[1]]) == 0
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=30000)
    add_out_option(ap)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    hs = str(ROOT / ".venv" / "bin" / "helpsteer")
    data = WORK / f"ls-{args.prompts}"
    ws = WORK / "ws-analyze"
    if not (ws / "datasets" / "bench").exists():
        subprocess.run([hs, "synth", "--out", str(data), "--prompts", str(args.prompts), "--only", "label-studio"], check=True, capture_output=True)
        subprocess.run([hs, "ingest", str(data / "label_studio" / "ratings_export.json"), "--workspace", str(ws), "--name", "bench", "--replace"], check=True, capture_output=True)
    ratings = ws / "datasets" / "bench" / "ratings.parquet"
    n_ratings = int(subprocess.run([sys.executable, "-c", f"import polars as pl; print(pl.scan_parquet({str(ratings)!r}).select(pl.len()).collect().item())"],
                                   capture_output=True, text=True, check=True).stdout)
    ref_json = WORK / "reference.json"
    ref = measure(REFERENCE, str(ratings), str(ref_json))
    ref_values = json.loads(ref_json.read_text())
    ours0 = measure(OURS, str(ws), "0")
    ours = measure(OURS, str(ws), "1000")
    typical = measure(TYPICAL, str(ratings))
    got = json.loads((ws / "datasets" / "bench" / "analysis" / "agreement.json").read_text())["ratings"]
    diff = max(max(abs(got[a]["kappa_quadratic"]["value"] - v["kappa"]), abs(got[a]["alpha_interval"]["value"] - v["alpha_interval"]),
                   abs(got[a]["alpha_ordinal"]["value"] - v["alpha_ordinal"])) for a, v in ref_values["values"].items())
    boot_cost = (ours["wall_s"] - ours0["wall_s"]) / ours0["wall_s"]
    rows = [
        f"| `helpsteer analyze --bootstrap 0` (everything but the bootstrap) | {ours0['wall_s']:.2f} | {ours0['peak_mb']:.0f} |",
        f"| `helpsteer analyze` (1,000 bootstrap resamples, the default) | {ours['wall_s']:.2f} | {ours['peak_mb']:.0f} |",
        f"| (a) sklearn + krippendorff on ready matrices (library calls only) | {ref_values['compute_s']:.2f} | {ref['peak_mb']:.0f} |",
        f"| (b) typical pandas script (groupby + apply per item) | {typical['wall_s']:.2f} | {typical['peak_mb']:.0f} |",
    ]
    print_rows(rows)
    section = "\n".join([
        "## Analysis (`bench/analyze.py`)",
        "",
        command_line("analyze.py", f"--prompts {args.prompts}"),
        f"{n_ratings:,} synthetic ratings (5 attributes, 3-5 annotators per item, 24 annotators with ids, from `helpsteer synth --only label-studio`).",
        "Each measurement in a fresh process (wall time including imports; peak = max RSS).",
        "",
        "| what | wall s | peak MB |",
        "|---|---|---|",
        *rows,
        "",
        f"- everything but the bootstrap / (a): **{ours0['wall_s'] / ref_values['compute_s']:.2f}x** (goal: within 3x)",
        f"- 1,000 bootstrap resamples cost **{boot_cost:.2f}x** one computation (goal: < 20x)",
        f"- (b) / ours with bootstrap: **{typical['wall_s'] / ours['wall_s']:.1f}x** faster (goal: >= 10x)",
        f"- largest difference of kappa / alpha from (a): {diff:.1e} (goal: identical, 1e-9)",
        "",
    ])
    _write_section(Path(args.out), "## Analysis", section)


if __name__ == "__main__":
    main()
