"""Playground: type a context and one or two responses; get rewards, attribute scores and
principle scores from a running API (URL and key in the sidebar) or a local run."""

import polars as pl
import streamlit as st

from dashboards import data

st.title("Playground")
source = st.sidebar.radio("Score with", ["local run", "running API"])
runs = data.runs()
if source == "local run" and not runs:
    data.missing("No local run to score with (or choose 'running API' in the sidebar).",
                 f"helpsteer train --workspace {data.ws_arg()} --name NAME --objective bt")
    st.stop()
if source == "running API":
    url = st.sidebar.text_input("API URL", "http://127.0.0.1:8000")
    key = st.sidebar.text_input("API key", type="password")
else:
    run = st.sidebar.selectbox("Run", [r.name for r in runs])

prompt = st.text_area("Prompt (the user turn)", "What is the capital of France?")
col_a, col_b = st.columns(2)
resp_a = col_a.text_area("Response A", "The capital of France is Paris.")
resp_b = col_b.text_area("Response B (optional)", "")
principles = st.text_area("Principles, one per line (principle models)", "")
if not st.button("Score", type="primary"):
    st.stop()

texts = [x for x in (resp_a, resp_b) if x.strip()]
items = [{"prompt": prompt, "response": t} for t in texts]
plist = [p.strip() for p in principles.splitlines() if p.strip()]
try:
    if source == "running API":
        from rm_training.api.client import RewardClient

        with RewardClient(url, api_key=key or None, timeout=30) as rc:
            scores = rc.score(items)
            objective = rc.models()[0]["objective"]
            pscores = rc.principles([{**it, "principles": plist} for it in items]) if plist and objective == "principle" else None
    else:
        from rm_training.scoring import Item

        sc = data.scorer(str(next(r for r in runs if r.name == run)))
        objective = sc.objective
        scores = sc.score([Item([{"role": "user", "content": prompt}], t) for t in texts])
        pscores = None
        if plist and objective == "principle":
            flat = sc.score([Item([{"role": "user", "content": prompt}], t, p) for t in texts for p in plist])
            pscores = [{"principles": [{"principle": p, "probability": flat[i * len(plist) + j]["probability"]} for j, p in enumerate(plist)]}
                       for i in range(len(texts))]
except Exception as exc:  # noqa: BLE001  (a playground reports any failure as a message)
    st.error(f"scoring failed: {exc}")
    st.stop()

cols = st.columns(len(scores))
for label, col, s in zip("AB", cols, scores):
    col.metric(f"reward {label}", f"{s['reward']:.4f}")
    if s.get("uncertainty") is not None:
        col.metric(f"uncertainty {label}", f"{s['uncertainty']:.4f}")
    if s.get("attributes"):
        col.dataframe(pl.DataFrame([s["attributes"]]), hide_index=True)
    if s.get("truncated"):
        col.warning("truncated to the model's max length")
if len(scores) == 2:
    from rm_training.scoring import p_a_better

    a, b = scores
    # the same formula as /v1/compare: Thurstonian for mean-variance models, the BT sigmoid otherwise
    p = float(p_a_better(a["reward"], b["reward"], a.get("uncertainty"), b.get("uncertainty")))
    st.metric("P(A better)", f"{p:.3f}", help="Phi((mu_A - mu_B) / sqrt(sigma_A^2 + sigma_B^2))" if a.get("uncertainty") is not None else "sigmoid(r_A - r_B)")
if pscores:
    st.subheader("Principles")
    st.dataframe(pl.DataFrame([{"response": "AB"[i], **p} for i, r in enumerate(pscores) for p in r["principles"]]), hide_index=True)
elif plist:
    st.caption(f"Principle scores need a principle model; this one is a {objective!r} model.")
