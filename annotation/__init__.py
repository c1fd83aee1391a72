"""annotation package (arrives with its issue)."""
