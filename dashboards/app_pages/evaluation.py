"""Evaluation: RewardBench-style section table, RewardBench 2 and length baselines, calibration
reliability diagram, reward distributions of chosen vs rejected, unanimous vs diverging margins, regression scatter."""

import plotly.express as px
import plotly.graph_objects as go
import polars as pl
import streamlit as st

from dashboards import data

st.title("Evaluation")
run = data.pick_one([r for r in data.runs() if data.evaluations(r)], "Run", "eval-run", "No evaluated run yet (RUN/eval/<dataset>.json).",
                    f"helpsteer eval --model {data.ws_arg()}/runs/RUN --workspace {data.ws_arg()} --name NAME")
pick = run.name
evals = data.evaluations(run)
dataset = st.selectbox("Evaluated on", list(evals), key=f"eval-ds-{pick}")
path = evals[dataset]
ev = data.read_json(path) or {}
trained_on = data.run_config(run).get("run", {}).get("dataset")
st.caption(f"Every figure on this page: run `{run.name}` (trained on `{trained_on}`) evaluated on dataset `{dataset}`, "
           f"split {ev.get('split') or 'unsplit'}" + (f", data sha256 {ev['dataset_sha256'][:12]}" if ev.get("dataset_sha256") else "") + ".")

c = st.columns(4)
fmt = lambda x: "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))  # noqa: E731
c[0].metric("pairwise accuracy", fmt(ev.get("accuracy")))
c[1].metric("pairs", fmt(ev.get("n_pairs")))
c[2].metric("unanimous accuracy", fmt(ev.get("unanimous_accuracy")))
c[3].metric("diverging accuracy", fmt(ev.get("diverging_accuracy")))
extra = {k: ev[k] for k in ("principle_accuracy", "principle_auroc", "principle_accuracy_heldout_phrasings", "divergence_auroc") if ev.get(k) is not None}
if extra:
    cols = st.columns(len(extra))
    for col, (k, v) in zip(cols, extra.items()):
        col.metric(k.replace("_", " "), fmt(v))

if ev.get("rewardbench"):
    st.subheader("RewardBench sections")
    st.dataframe(pl.DataFrame([{"section": k, "score": v} for k, v in ev["rewardbench"].items()]), hide_index=True)
if ev.get("rewardbench2"):
    st.subheader("RewardBench 2 (best-of-4, Ties weighted as the official code)")
    by_len = ev.get("rewardbench2_length_baselines") or {}
    st.dataframe(pl.DataFrame([{"subset": k, "score": v, "longest wins": (by_len.get("longest_wins") or {}).get(k),
                                "shortest wins": (by_len.get("shortest_wins") or {}).get(k)} for k, v in ev["rewardbench2"].items()],
                              schema={"subset": pl.String, "score": pl.Float64, "longest wins": pl.Float64, "shortest wins": pl.Float64}), hide_index=True)
lb = ev.get("length_baselines") or {}
if lb:
    st.subheader("Length baselines")
    st.caption("Accuracy of always picking the longer / the shorter response (equal lengths skipped), and the model's accuracy "
               "on the pairs where the longer response is the rejected one.")
    c = st.columns(3)
    c[0].metric("longer wins", fmt(lb.get("longer_wins")))
    c[1].metric("shorter wins", fmt(lb.get("shorter_wins")))
    c[2].metric(f"length-controlled accuracy (n={lb.get('n_length_controlled')})", fmt(lb.get("length_controlled_accuracy")))
if ev.get("rm_bench"):
    st.subheader("RM-Bench")
    st.dataframe(pl.DataFrame([{k: ev["rm_bench"][k] for k in ("hard", "normal", "easy")}]), hide_index=True)
if ev.get("per_subset"):
    st.subheader("Per subset")
    st.dataframe(pl.DataFrame([{"subset": k, **v} for k, v in ev["per_subset"].items()]), hide_index=True, width="stretch")

cal = ev.get("calibration") or {}
if cal.get("reliability"):
    st.subheader(f"Calibration (Brier {cal['brier']:.3f}, ECE {cal['ece']:.3f})")
    if cal.get("orientation"):
        st.caption(f"Pairs oriented: {cal['orientation']}.")
    rel = pl.DataFrame(cal["reliability"]).to_pandas()
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash", "color": "grey"}),
                     go.Scatter(x=rel["p_mean"], y=rel["y_mean"], mode="lines+markers", name=run.name, text=rel["n"],
                                marker={"size": 6 + 20 * rel["n"] / rel["n"].max()})])
    fig.update_layout(xaxis_title="predicted P(A better)", yaxis_title="observed frequency", title=f"Reliability diagram ({dataset})")
    st.plotly_chart(fig, width="stretch")

pairs = data.eval_detail(path, "pairs")
if pairs is not None and pairs.height:
    decided = pairs.filter(pl.col("strength") != 0).with_columns(
        pl.when(pl.col("strength") < 0).then(pl.col("reward_a")).otherwise(pl.col("reward_b")).alias("chosen"),
        pl.when(pl.col("strength") < 0).then(pl.col("reward_b")).otherwise(pl.col("reward_a")).alias("rejected"))
    long = pl.concat([decided.select(pl.col("chosen").alias("reward")).with_columns(pl.lit("chosen").alias("side")),
                      decided.select(pl.col("rejected").alias("reward")).with_columns(pl.lit("rejected").alias("side"))])
    st.plotly_chart(px.histogram(long.to_pandas(), x="reward", color="side", barmode="overlay", nbins=50, title="Rewards of chosen vs rejected"),
                    width="stretch")
    flagged = decided.filter(pl.col("diverging").is_not_null()).with_columns(
        (pl.col("chosen") - pl.col("rejected")).alias("chosen minus rejected"),
        pl.when(pl.col("diverging")).then(pl.lit("diverging")).when(pl.col("unanimous")).then(pl.lit("unanimous")).otherwise(pl.lit("other")).alias("kind"))
    if flagged.height:
        st.plotly_chart(px.box(flagged.to_pandas(), x="kind", y="chosen minus rejected", points="outliers", title="Margins on unanimous vs diverging pairs"),
                        width="stretch")
elif ev.get("n_pairs"):
    st.caption("Per-pair scores appear here after a new `helpsteer eval` (it writes RUN/eval/<dataset>_pairs.parquet).")

reg = data.eval_detail(path, "responses")
if reg is not None and reg.height:
    st.subheader("Regression: predicted vs label")
    if ev.get("regression"):
        st.dataframe(pl.DataFrame([{"attribute": k, **v} for k, v in ev["regression"].items()]), hide_index=True)
    st.plotly_chart(px.scatter(reg.to_pandas(), x="label", y="predicted", facet_col="attribute", opacity=0.4), width="stretch")
