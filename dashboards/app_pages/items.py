"""Item explorer: search responses by text; one response with its context, every annotator's
ratings, the aggregated label and, with a run selected, the model's scores."""

import polars as pl
import streamlit as st

from dashboards import data

st.title("Item explorer")
name = data.pick_dataset("Dataset")
if name is None:
    data.missing("This workspace has no datasets yet.", f"helpsteer ingest FILE --workspace {data.ws_arg()} --name NAME")
    st.stop()
resp = data.table(name, "responses", ["response_id", "prompt", "response", "context", "domain", "split"])
query = st.text_input("Search prompts and responses (case-insensitive)")
hits = resp
if query:
    q = query.lower()
    hits = resp.filter(pl.col("prompt").str.to_lowercase().str.contains(q, literal=True) | pl.col("response").str.to_lowercase().str.contains(q, literal=True))
st.caption(f"{hits.height:,} of {resp.height:,} responses")
if hits.height == 0:
    st.stop()
per_page = 25
pages = (hits.height + per_page - 1) // per_page
page = st.number_input("Page", 1, max(pages, 1), 1)
shown = hits.slice((page - 1) * per_page, per_page)
st.dataframe(shown.select("response_id", pl.col("prompt").str.slice(0, 100), pl.col("response").str.slice(0, 140), "domain", "split"),
             hide_index=True, width="stretch")
rid = st.selectbox("Response", shown["response_id"].to_list())
row = resp.filter(pl.col("response_id") == rid).row(0, named=True)
st.subheader("Conversation")
for turn in row["context"] or []:
    with st.chat_message(turn["role"] if turn["role"] in ("user", "assistant") else "user"):
        st.write(turn["content"])
with st.chat_message("assistant"):
    st.write(row["response"])

ratings = data.table(name, "ratings", ["response_id", "annotator_id", "attribute", "score"]).filter(pl.col("response_id") == rid)
if ratings.height:
    st.subheader("Ratings")
    wide = ratings.with_columns(pl.col("annotator_id").fill_null("(aggregated)")).pivot(on="attribute", index="annotator_id", values="score", aggregate_function="mean")
    st.dataframe(wide, hide_index=True, width="stretch")
    items = data.analysis_table(name, "items")
    if items is not None:
        lab = items.filter(pl.col("response_id") == rid)
        if lab.height:
            st.caption("Aggregated labels (analysis)")
            st.dataframe(lab.select([c for c in lab.columns if c.endswith("_label")]), hide_index=True)

pairs = data.pair_labels(name)
if pairs.height:
    mine = pairs.filter((pl.col("response_a_id") == rid) | (pl.col("response_b_id") == rid))
    if mine.height:
        st.subheader("Preference pairs with this response")
        text = dict(zip(resp["response_id"].to_list(), resp["response"].to_list()))
        rows = []
        for p in mine.iter_rows(named=True):
            side = "A" if p["response_a_id"] == rid else "B"
            other = p["response_b_id"] if side == "A" else p["response_a_id"]
            s = p["strength"]
            won = None if s is None else ("tie" if s == 0 else ("A" if s < 0 else "B"))
            rows.append({"pair_id": p["pair_id"], "this response is": side, "chosen": won,
                         "outcome": "no label" if won is None else ("tie" if won == "tie" else ("this response chosen" if won == side else "the other chosen")),
                         "strength": s, "votes": p["n_votes"], "other response": (text.get(other) or "")[:160]})
        st.dataframe(pl.DataFrame(rows, infer_schema_length=None), hide_index=True, width="stretch")

runs = data.runs()
if runs:
    st.subheader("Model scores")
    pick = st.selectbox("Run", ["(none)"] + [r.name for r in runs])
    if pick != "(none)":
        from rm_training.scoring import Item

        sc = data.scorer(str(next(r for r in runs if r.name == pick)))
        res = sc.score([Item(row["context"] or [], row["response"])])[0]
        st.metric("reward", f"{res['reward']:.4f}")
        if res["attributes"]:
            st.dataframe(pl.DataFrame([res["attributes"]]), hide_index=True)
        if res["uncertainty"] is not None:
            st.metric("uncertainty (sigma)", f"{res['uncertainty']:.4f}")
