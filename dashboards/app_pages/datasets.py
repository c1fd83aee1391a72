"""Datasets: counts, sources, quarantine, attribute distributions and correlations, lengths."""

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data

st.title("Datasets")
ds = data.datasets()
if not ds:
    data.missing("This workspace has no datasets yet.",
                 f"helpsteer synth --out synthetic\nhelpsteer ingest synthetic/helpsteer2/train.jsonl.gz --workspace {data.ws_arg()} --name hs2")
    st.stop()

rows = []
for m in ds:
    t = m.get("tables", {})
    src = m.get("sources", [])
    rows.append({"dataset": m["name"], "format": data.format_name(m.get("format")), "sources": len(src), "records": sum(s.get("records", 0) for s in src),
                 "quarantined": sum(s.get("quarantined", 0) for s in src), **{k: v for k, v in t.items()}, "updated": m.get("updated")})
st.dataframe(pl.DataFrame(rows, infer_schema_length=None), hide_index=True, width="stretch")

name = st.selectbox("Dataset", [m["name"] for m in ds])
man = data.manifest(name)
c1, c2, c3, c4 = st.columns(4)
t = man.get("tables", {})
c1.metric("responses", f"{t.get('responses', 0):,}")
c2.metric("ratings", f"{t.get('ratings', 0):,}")
c3.metric("preferences", f"{t.get('preferences', 0):,}")
c4.metric("quarantined", f"{sum(s.get('quarantined', 0) for s in man.get('sources', [])):,}")

st.subheader("Sources")
st.dataframe(pl.DataFrame(man.get("sources", [])), hide_index=True, width="stretch")

q = data.quarantine(name)
st.subheader("Quarantine")
if q.height == 0:
    st.write("No record was quarantined.")
else:
    reasons = q.with_columns(pl.col("reason").str.replace(r"line \d+", "line N").str.slice(0, 120)).group_by("reason").len().sort("len", descending=True)
    st.dataframe(reasons.rename({"len": "records"}), hide_index=True, width="stretch")
    st.caption("Examples")
    st.dataframe(q.head(50), hide_index=True, width="stretch")

ratings = data.table(name, "ratings", ["response_id", "annotator_id", "attribute", "score"])
if ratings.height:
    st.subheader("Attribute scores")
    dist = ratings.group_by("attribute", "score").len().sort("attribute", "score")
    n_attr = dist["attribute"].n_unique()
    # facets wrap (a dataset may rate many criteria); scores on their own scale (0-4, 0-100, 0/1)
    st.plotly_chart(px.bar(dist.to_pandas(), x="score", y="len", facet_col="attribute", facet_col_wrap=min(n_attr, 5), labels={"len": "ratings"},
                           height=280 * ((n_attr + 4) // 5)), width="stretch")
    per_item = ratings.group_by("response_id", "attribute").agg(pl.col("score").mean()).pivot(on="attribute", index="response_id", values="score")
    cols = [c for c in per_item.columns if c != "response_id"]
    if len(cols) > 1:
        corr = per_item.select(cols).to_pandas().corr()
        st.plotly_chart(px.imshow(corr, text_auto=".2f", zmin=-1, zmax=1, color_continuous_scale="RdBu", title="Correlation of mean scores per response"),
                        width="stretch")

resp = data.table(name, "responses", ["response_id", "prompt", "response", "split"])
if resp.height:
    st.subheader("Lengths (characters)")
    lengths = pl.concat([resp.select(pl.col("prompt").str.len_chars().alias("chars")).with_columns(pl.lit("prompt").alias("text")),
                         resp.select(pl.col("response").str.len_chars().alias("chars")).with_columns(pl.lit("response").alias("text"))])
    st.plotly_chart(px.histogram(lengths.to_pandas(), x="chars", color="text", nbins=60, barmode="overlay"), width="stretch")
    if resp["split"].null_count() < resp.height:
        st.dataframe(resp.group_by("split").len().sort("split").with_columns(pl.col("split").fill_null("unsplit")), hide_index=True)
    else:
        st.caption("Splits: unsplit (no row has a split; `helpsteer split` makes train/validation by prompt).")
