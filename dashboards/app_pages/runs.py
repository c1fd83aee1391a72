"""Training runs: overlay loss/accuracy/margin curves, compare final metrics and configs."""

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data

st.title("Training runs")
runs = data.runs()
if not runs:
    data.missing("No training runs under WS/runs/ yet.", f"helpsteer train --workspace {data.ws_arg()} --name NAME --objective bt")
    st.stop()
names = [r.name for r in runs]
chosen = st.multiselect("Runs", names, default=names[: min(4, len(names))])
sel = [r for r in runs if r.name in chosen]
if not sel:
    st.stop()

curves = []
for r in sel:
    m = data.metrics(r)
    if m.height:
        curves.append(m.with_columns(pl.lit(r.name).alias("run")))
if curves:
    all_m = pl.concat(curves, how="diagonal_relaxed")
    metric_names = [c for c in ("loss", "accuracy", "margin", "mean_reward", "mae", "tokens_per_s", "learning_rate") if c in all_m.columns]
    which = st.multiselect("Curves", metric_names, default=[c for c in ("loss", "accuracy", "margin") if c in metric_names] or metric_names[:1])
    for k in which:
        st.plotly_chart(px.line(all_m.filter(pl.col(k).is_not_null()).to_pandas(), x="step", y=k, color="run", title=k, markers=True), width="stretch")
else:
    st.write("The selected runs have no metrics.jsonl lines yet.")

st.subheader("Final metrics")
st.caption("One row per run and evaluation dataset: `trained on` is the training dataset, `evaluated on` the dataset each figure comes from.")
rows = []
for r in sel:
    cfg = data.model_config(r)
    rc = data.run_config(r).get("run", {})
    base = {"run": r.name, "objective": cfg.get("objective"), "trained on": rc.get("dataset"), "examples": rc.get("n_examples")}
    evals = data.evaluations(r) or {None: None}
    for ds, path in evals.items():
        ev = (data.read_json(path) if path else None) or {}
        rows.append({**base, "evaluated on": ds or "not evaluated", "split": (ev.get("split") or "unsplit") if ev else None,
                     "eval accuracy": ev.get("accuracy"), "eval pairs": ev.get("n_pairs"), "brier": (ev.get("calibration") or {}).get("brier"),
                     "unanimous acc": ev.get("unanimous_accuracy"), "diverging acc": ev.get("diverging_accuracy"),
                     "principle acc": ev.get("principle_accuracy"), "divergence auroc": ev.get("divergence_auroc")})
st.dataframe(pl.DataFrame(rows, infer_schema_length=None), hide_index=True, width="stretch")

st.subheader("Configs")
cfgs = {r.name: data.run_config(r).get("config", {}) for r in sel}
keys = sorted({k for c in cfgs.values() for k in c})
diff_only = st.toggle("Only fields that differ", value=len(sel) > 1)
table = []
for k in keys:
    vals = [cfgs[n].get(k) for n in cfgs]
    if diff_only and len({str(v) for v in vals}) == 1:
        continue
    table.append({"field": k, **{n: str(v) for n, v in zip(cfgs, vals)}})
st.dataframe(pl.DataFrame(table) if table else pl.DataFrame({"field": []}), hide_index=True, width="stretch")
