"""The `helpsteer` Typer app that every command module of helpsteer/cli/ adds its commands to."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="helpsteer",
    help="Reward-model and preference-data platform: ingest, analyse, train, serve, annotate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def err(msg: str) -> None:
    """A line for the person at the terminal: stderr, so stdout stays the command's data."""
    print(msg, file=sys.stderr)


def console():
    from ..console import console

    return console()
