"""rm_training package (arrives with its issue)."""
