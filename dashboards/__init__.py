"""The Streamlit dashboard: `helpsteer dashboard --workspace WS` (dashboards/app.py)."""
