"""`helpsteer dashboard`: starts Streamlit on
dashboards/app.py with the workspace in HELPSTEER_WORKSPACE, bound to 127.0.0.1, headless, with
usage statistics off."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from ._app import app


def streamlit_command(port: int = 8501, host: str = "127.0.0.1") -> list[str]:
    """The Streamlit server's command line for dashboards/app.py (found without importing the app)."""
    from importlib.util import find_spec

    page = find_spec("dashboards.app").origin
    return [sys.executable, "-m", "streamlit", "run", page, "--server.port", str(port), "--server.address", host,
            "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer"]


@app.command()
def dashboard(
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder (datasets, runs, attacks)."),
    port: int = typer.Option(8501, "--port", help="TCP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
) -> None:
    """Open the Streamlit dashboard on a workspace: data, agreement, diverging pairs, items, runs, evaluation, attacks, playground."""
    from helpsteer.errors import UsageError

    if workspace.exists() and not workspace.is_dir():
        raise UsageError(f"--workspace {workspace}: not a folder")
    env = dict(os.environ, HELPSTEER_WORKSPACE=str(workspace.resolve()), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    print(f"dashboard on http://{host}:{port} (workspace {workspace}); Ctrl-C stops it", file=sys.stderr)
    cmd = streamlit_command(port, host)
    sys.stderr.flush()
    # become the Streamlit server (same PID), so whoever started `helpsteer dashboard` can stop it by PID
    os.execvpe(cmd[0], cmd, env)
