"""The rich Console every command prints its tables through, and `quiet`, which keeps a nested
step's progress lines out of its caller's output. On a terminal rich fits the window; in a pipe or a
file it would assume 80 columns and cut table cells to "…", so there the width is unbounded and a
table keeps every character (one line per row)."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

PIPE_WIDTH = 100_000  # columns when not on a terminal: wide enough that no cell is ever cut


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH, no_color=True, soft_wrap=True)


@contextmanager
def quiet(*loggers: str):
    """The INFO lines of these loggers unshown while the block runs (an ingest or a training run inside
    another command, whose report is the caller's); their warnings and errors still show."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
