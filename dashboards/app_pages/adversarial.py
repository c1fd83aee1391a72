"""Adversarial: attack success and clean accuracy per round of `helpsteer attack`, and examples of
successful attacks with their reward deltas."""

import plotly.express as px
import polars as pl
import streamlit as st

from dashboards import data

st.title("Adversarial")
att = data.pick_one(data.attacks(), "Attack", "attack", "No attack runs under WS/attacks/ yet.",
                    f"helpsteer attack --model {data.ws_arg()}/runs/RUN --workspace {data.ws_arg()} --name NAME")
res = data.attack(att)
rounds = pl.DataFrame(res.get("rounds") or [], infer_schema_length=None)
if rounds.height:
    st.dataframe(rounds, hide_index=True, width="stretch")
    long = rounds.unpivot(index="round", on=[c for c in ("attack_success_rate", "clean_accuracy") if c in rounds.columns])
    fig = px.line(long.to_pandas(), x="round", y="value", color="variable", markers=True, title="Attack success and clean accuracy by round")
    fig.update_xaxes(dtick=1, tick0=0)  # rounds are whole numbers
    st.plotly_chart(fig, width="stretch")
ex = res.get("examples") or []
st.subheader(f"Successful attacks ({len(ex)})")
if ex:
    df = pl.DataFrame(ex, infer_schema_length=None)
    rnd = sorted(df["round"].unique().to_list()) if "round" in df.columns else []
    if rnd:
        df = df.filter(pl.col("round") == st.selectbox("Round", rnd))
    for r in df.head(30).iter_rows(named=True):
        delta = r.get("reward_delta")
        with st.expander(f"{', '.join(r.get('operators') or [])} · reward delta {delta:+.3f}" if delta is not None else str(r.get("prompt", ""))[:80]):
            st.markdown(f"**Prompt:** {r.get('prompt', '')}")
            a, b = st.columns(2)
            a.markdown("**Original**")
            a.text(r.get("original", ""))
            b.markdown("**Attacked**")
            b.text(r.get("attacked", ""))
