"""The rich Console every command prints its tables through. On a terminal rich fits the window;
in a pipe or a file it would assume 80 columns and cut table cells to "…", so there the width is
unbounded and a table keeps every character (one line per row)."""

from __future__ import annotations

import sys

PIPE_WIDTH = 100_000  # columns when not on a terminal: wide enough that no cell is ever cut


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH, no_color=True, soft_wrap=True)
