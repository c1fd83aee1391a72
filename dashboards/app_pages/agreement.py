"""Agreement: per-attribute kappa/alpha with confidence intervals, annotator table and scatter,
aggregation report."""

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data

st.title("Agreement")
name = data.pick_dataset("Dataset", need="agreement.json", prefer_annotators=True)
if name is None:
    data.missing("No dataset has an analysis yet.", f"helpsteer analyze --workspace {data.ws_arg()} --name NAME")
    st.stop()
ag = data.analysis_json(name)

rows = []
for attr, stats in (ag.get("ratings") or {}).items():
    for stat in ("kappa_quadratic", "alpha_interval", "alpha_ordinal"):
        v = stats.get(stat) or {}
        rows.append({"attribute": attr, "statistic": stat, "value": v.get("value"), "ci_low": v.get("ci_low"), "ci_high": v.get("ci_high"),
                     "n_items": stats.get("n_items"), "n_annotators": stats.get("n_annotators"), "note": v.get("reason")})
if rows:
    st.subheader("Inter-annotator agreement per attribute")
    df = pl.DataFrame(rows, infer_schema_length=None)
    st.dataframe(df, hide_index=True, width="stretch")
    shown = df.filter(pl.col("value").is_not_null())
    if shown.height and shown["attribute"].n_unique() == 1 and shown["statistic"].n_unique() == 1:
        r = shown.row(0, named=True)
        st.write(f"**{r['statistic']}** of {r['attribute']}: {r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
    elif shown.height:
        pdf = shown.with_columns((pl.col("ci_high") - pl.col("value")).alias("up"), (pl.col("value") - pl.col("ci_low")).alias("down")).to_pandas()
        st.plotly_chart(px.scatter(pdf, x="attribute", y="value", color="statistic", error_y="up", error_y_minus="down",
                                   title="Point estimates with 95% bootstrap intervals"), width="stretch")
else:
    st.write("This dataset has no ratings.")

prefs = ag.get("preferences") or {}
if prefs.get("n_pairs"):
    st.subheader("Preferences")
    cols = st.columns(4)
    cols[0].metric("pairs", prefs.get("n_pairs"))
    cols[1].metric("pairs with 2+ votes", prefs.get("n_annotated_pairs"))
    dr, ur = prefs.get("diverging_rate"), prefs.get("unanimous_rate")
    val = lambda x: x.get("value") if isinstance(x, dict) else x  # noqa: E731
    cols[2].metric("diverging rate", "n/a" if val(dr) is None else f"{val(dr):.3f}", help=dr.get("reason") if isinstance(dr, dict) else None)
    cols[3].metric("unanimous rate", "n/a" if val(ur) is None else f"{val(ur):.3f}", help=ur.get("reason") if isinstance(ur, dict) else None)
    strong = prefs.get("diverging_rate_strong")
    if isinstance(strong, dict):
        st.caption("Strong diverging rate (|strength| >= 2 on both sides): "
                   + (f"{strong['value']:.3f}" if strong.get("value") is not None else f"n/a: {strong.get('reason')}"))

ann = data.analysis_table(name, "annotators")
st.subheader("Annotators")
if ann is None or ann.height == 0:
    st.write("No per-annotator table: the source keeps votes without annotator identities (anonymous), or has no ratings.")
else:
    st.dataframe(ann.sort("flagged", "agreement", descending=[True, False]), hide_index=True, width="stretch")
    pdf = ann.with_columns(pl.when(pl.col("flagged")).then(pl.lit("flagged")).otherwise(pl.lit("ok")).alias("status")).to_pandas()
    st.plotly_chart(px.scatter(pdf, x="offset", y="agreement", size="n_items", color="status", hover_name="annotator_id",
                               color_discrete_map={"flagged": "crimson", "ok": "steelblue"},
                               title="Offset (mean score minus leave-one-out consensus) vs agreement; size = items rated"), width="stretch")
    st.caption(f"{int(ann['flagged'].sum())} of {ann.height} annotators flagged")

items = data.analysis_table(name, "items")
if items is not None and items.height:
    st.subheader("Aggregation report")
    cfg = ag.get("config", {})
    st.write(f"Aggregation: **{cfg.get('aggregation', '?')}** (min annotators {cfg.get('min_annotators', '?')}, max distance {cfg.get('max_distance', '?')})")
    attrs = sorted(c[: -len("_label")] for c in items.columns if c.endswith("_label"))
    rep = [{"attribute": a, "labelled": int(items[f"{a}_label"].is_not_null().sum()), "dropped": int(items[f"{a}_label"].is_null().sum()),
            "mean label": items[f"{a}_label"].mean(), "mean spread": items[f"{a}_spread"].mean() if f"{a}_spread" in items.columns else None}
           for a in attrs]
    st.dataframe(pl.DataFrame(rep), hide_index=True, width="stretch")
