"""The `helpsteer` command line: the one entry layer above helpsteer/, rm_training/, annotation/ and
dashboards/, and the only code that may import upward. Each command imports its library modules lazily,
so `helpsteer --help` stays fast.

Exit codes: 0 success; 2 bad usage or unusable input (one line on stderr); 1 anything else."""

from __future__ import annotations

import logging
import sys

import typer

# the command modules add their commands to `app` when imported; this order is `helpsteer --help`'s
# isort: off
from ._app import app, err
from . import data, analysis, training, annotate, dashboard  # noqa: F401
# isort: on

__all__ = ["app", "main"]

PROJECT_LOGGERS = ("helpsteer", "rm_training", "annotation", "dashboards")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (pytest's capture, a redirect)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


def show_library_logs(level: int = logging.INFO) -> None:
    """Library code logs; the CLI shows its INFO records as bare lines on stderr (what a person reads
    while a command runs). Idempotent: a second call replaces the first handler."""
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        for h in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
            logger.removeHandler(h)
        logger.addHandler(_StderrHandler())
        logger.setLevel(level)
        logger.propagate = False  # shown once, here, not again by a root handler


def main(argv: list[str] | None = None) -> int:
    from ..errors import UsageError

    show_library_logs()
    try:
        app(args=argv, standalone_mode=False)
    except UsageError as e:
        err(f"error: {e}")
        return 2
    except typer.Exit as e:
        return e.exit_code
    except SystemExit as e:
        return int(e.code or 0)
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except Exception as e:  # click's (typer's vendored click) usage errors come as exceptions here
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            return e.exit_code
        if type(e).__name__ == "Abort":
            return 1
        import traceback

        traceback.print_exc()
        err(f"error: {type(e).__name__}: {e}")
        return 1
    return 0
