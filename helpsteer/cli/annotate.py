"""`helpsteer annotate push | pull | export-tasks`: round trips with a Label Studio server (annotation/)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ._app import app

annotate_app = typer.Typer(help="Round trips with a Label Studio server (push tasks, pull annotations).", no_args_is_help=True)

_URL = typer.Option(None, "--url", help="Label Studio URL (or LABEL_STUDIO_URL).")
_KEY = typer.Option(None, "--api-key", help="Label Studio API key (or LABEL_STUDIO_API_KEY). Never printed.")
_KIND = typer.Option(..., "--kind", help="ratings (five 0-4 attributes), preference (-3..3 + justification), principle (Yes/No) or feedback (text).")


def _env(value: str | None, var: str) -> str | None:
    return value or os.environ.get(var) or None


@annotate_app.command("push")
def push_cmd(
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    name: str = typer.Option(..., "--name", help="Dataset to annotate."),
    kind: str = _KIND,
    url: Optional[str] = _URL,
    api_key: Optional[str] = _KEY,
    project: Optional[str] = typer.Option(None, "--project", help="Project title (default NAME-KIND); reused when it exists."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Annotators per task (Label Studio's maximum annotations)."),
) -> None:
    """Create or update a project and import the dataset's items as tasks (re-pushing adds only new items)."""
    from annotation.client import push

    res = push(workspace, name, kind, _env(url, "LABEL_STUDIO_URL"), _env(api_key, "LABEL_STUDIO_API_KEY"), title=project, overlap=overlap)
    verb = "created" if res.created else "updated"
    print(f"project {res.project_id} {verb}: {res.imported} tasks imported, {res.existing} already there", file=sys.stderr)
    print(res.project_id)


@annotate_app.command("pull")
def pull_cmd(
    project: str = typer.Option(..., "--project", help="Project id or exact title."),
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    name: str = typer.Option(..., "--name", help="Dataset to mirror the project into (replaced atomically)."),
    url: Optional[str] = _URL,
    api_key: Optional[str] = _KEY,
) -> None:
    """Export all annotations and mirror the project into a workspace dataset (per-annotator rows)."""
    from annotation.client import pull

    proj, report = pull(_env(url, "LABEL_STUDIO_URL"), _env(api_key, "LABEL_STUDIO_API_KEY"), project, workspace, name)
    src = report.sources[0]
    counts = ", ".join(f"{t} {n}" for t, n in report.tables.items() if n)
    parts = f", {src.quarantined_parts} annotations quarantined" if src.quarantined_parts else ""
    print(f"project {proj.id} -> dataset {name!r}: {src.records} tasks, {src.quarantined} quarantined{parts} ({counts})", file=sys.stderr)
    for reason, n in list(src.reasons.items())[:5]:
        print(f"  quarantined {n}: {reason}", file=sys.stderr)


@annotate_app.command("export-tasks")
def export_tasks_cmd(
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    name: str = typer.Option(..., "--name", help="Dataset to annotate."),
    kind: str = _KIND,
    out: Path = typer.Option(..., "--out", help="Tasks JSON file to upload by hand."),
    config_out: Optional[Path] = typer.Option(None, "--config-out", help="Also write the labeling config XML here."),
) -> None:
    """Write the tasks JSON (and optionally the labeling config) for uploading by hand."""
    from annotation.configs import labeling_config, validate_config
    from annotation.tasks import build_tasks, write_tasks_file

    tasks = build_tasks(workspace, name, kind)
    write_tasks_file(tasks, out)
    if config_out:
        xml = labeling_config(kind)
        validate_config(xml)
        Path(config_out).write_text(xml)
    print(f"wrote {len(tasks)} tasks to {out}", file=sys.stderr)


app.add_typer(annotate_app, name="annotate")
