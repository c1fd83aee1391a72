"""The Streamlit dashboard of a workspace: `helpsteer dashboard --workspace WS` (or
HELPSTEER_WORKSPACE=WS streamlit run dashboards/app.py). Pages live in app_pages/, data loading
in data.py."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT.parent) not in sys.path:  # `streamlit run dashboards/app.py` from a checkout
    sys.path.insert(0, str(ROOT.parent))

from dashboards import data  # noqa: E402

st.set_page_config(page_title="helpsteer dashboard", layout="wide")

PAGES = [
    st.Page(str(ROOT / "app_pages" / "datasets.py"), title="Datasets", icon=":material/database:", default=True),
    st.Page(str(ROOT / "app_pages" / "agreement.py"), title="Agreement", icon=":material/groups:"),
    st.Page(str(ROOT / "app_pages" / "diverging.py"), title="Diverging pairs", icon=":material/call_split:"),
    st.Page(str(ROOT / "app_pages" / "items.py"), title="Item explorer", icon=":material/search:"),
    st.Page(str(ROOT / "app_pages" / "runs.py"), title="Training runs", icon=":material/show_chart:"),
    st.Page(str(ROOT / "app_pages" / "evaluation.py"), title="Evaluation", icon=":material/fact_check:"),
    st.Page(str(ROOT / "app_pages" / "adversarial.py"), title="Adversarial", icon=":material/shield:"),
    st.Page(str(ROOT / "app_pages" / "playground.py"), title="Playground", icon=":material/science:"),
]

page = st.navigation(PAGES, position="sidebar")
data.refresh()  # each run reads the newest version of every dataset, one version throughout
ws = data.workspace()
st.sidebar.caption(f"workspace: `{ws}`" if ws else "no workspace: set HELPSTEER_WORKSPACE or run `helpsteer dashboard --workspace WS`")
page.run()
