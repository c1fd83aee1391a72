"""dashboards package (arrives with its issue)."""
