"""Diverging pairs: how often annotators disagree on which response is better, overall, by domain
and by cue, and a browser of the pairs with both responses and every vote."""

import polars as pl
import streamlit as st

from dashboards import data

st.title("Diverging pairs")
name = data.pick_dataset("Dataset", need="pairs.parquet", prefer_annotators=True)
pairs = data.analysis_table(name, "pairs") if name else None
if pairs is None or pairs.height == 0:
    data.missing("No dataset has analysed preference pairs yet (pairs with annotator votes).",
                 f"helpsteer analyze --workspace {data.ws_arg()} --name NAME")
    st.stop()

voted = pairs.filter(pl.col("n_votes") >= 2)
c = st.columns(3)
c[0].metric("pairs with 2+ votes", f"{voted.height:,}")
c[1].metric("diverging rate", f"{voted['diverging'].mean():.3f}" if voted.height else "-")
c[2].metric("unanimous rate", f"{voted['unanimous'].mean():.3f}" if voted.height else "-")

prefs = data.table(name, "preferences", ["pair_id", "prompt_id", "response_a_id", "response_b_id", "annotator_id", "strength", "justification"])
resp = data.table(name, "responses", ["response_id", "prompt_id", "prompt", "response", "domain"])
meta = prefs.group_by("pair_id").agg(pl.col("prompt_id", "response_a_id", "response_b_id").first())
dom = resp.group_by("prompt_id").agg(pl.col("domain").first())
v = voted.join(meta, on="pair_id", how="left").join(dom, on="prompt_id", how="left").with_columns(pl.col("domain").fill_null("(none)"))

if v.height:
    by_dom = v.group_by("domain").agg(pl.col("diverging").mean().alias("diverging_rate"), pl.len().alias("pairs")).sort("pairs", descending=True)
    data.bar_or_text(by_dom, "domain", "diverging_rate", "Diverging rate by domain", hover_data=["pairs"])
    cues = v.explode("cues").with_columns(pl.col("cues").fill_null("(no cue)")).group_by("cues").agg(
        pl.col("diverging").mean().alias("diverging_rate"), pl.len().alias("pairs")).sort("pairs", descending=True)
    data.bar_or_text(cues, "cues", "diverging_rate", "Diverging rate by cue", hover_data=["pairs"])

st.subheader("Browse pairs")
f1, f2, f3 = st.columns(3)
kind = f1.selectbox("Show", ["diverging", "unanimous", "all with 2+ votes"])
domains = sorted(v["domain"].unique().to_list()) if v.height else []
dsel = f2.multiselect("Domains", domains)
allcues = sorted(x for x in v.explode("cues")["cues"].drop_nulls().unique().to_list()) if v.height else []
csel = f3.multiselect("Cues", allcues)
sel = v
if kind != "all with 2+ votes":
    sel = sel.filter(pl.col(kind))
if dsel:
    sel = sel.filter(pl.col("domain").is_in(dsel))
if csel:
    sel = sel.filter(pl.col("cues").list.eval(pl.element().is_in(csel)).list.any())
st.caption(f"{sel.height:,} pairs")
if sel.height == 0:
    st.stop()
per_page = 10
pages = (sel.height + per_page - 1) // per_page
page = st.number_input("Page", min_value=1, max_value=max(pages, 1), value=1, step=1)
text = dict(zip(resp["response_id"].to_list(), resp["response"].to_list()))
prompt = dict(zip(resp["response_id"].to_list(), resp["prompt"].to_list()))
for r in sel.slice((page - 1) * per_page, per_page).iter_rows(named=True):
    with st.expander(f"{r['pair_id']} · {r['n_votes']} votes · P(A better) {r['soft_label']:.2f} · {', '.join(r['cues'] or []) or 'no cue'}"):
        st.markdown(f"**Prompt:** {prompt.get(r['response_a_id'], '')}")
        a, b = st.columns(2)
        a.markdown("**Response A**")
        a.text(text.get(r["response_a_id"], ""))
        b.markdown("**Response B**")
        b.text(text.get(r["response_b_id"], ""))
        votes = prefs.filter(pl.col("pair_id") == r["pair_id"]).select("annotator_id", "strength", "justification")
        st.dataframe(votes, hide_index=True, width="stretch")
