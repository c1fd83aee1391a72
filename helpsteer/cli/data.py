"""`helpsteer synth | ingest | datasets | split | export`: the data commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, console, err


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the synthetic files into."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same files."),
    prompts: int = typer.Option(400, "--prompts", help="Number of prompts (2 responses each; ~3-5 annotators x 5 attributes per response)."),
    only: Optional[str] = typer.Option(None, "--only", help="Write only one layout: helpsteer2, helpsteer2-disagreements, helpsteer2-preference, helpsteer3-preference, label-studio."),
) -> None:
    """Write synthetic HelpSteer2/HelpSteer3/Label Studio files with planted annotators and a truth file."""
    from ..synth import SynthConfig, write_synthetic

    files = write_synthetic(SynthConfig(seed=seed, n_prompts=prompts), out, only=only)
    for kind, path in files.items():
        print(f"{kind}\t{path}")


_WAIT = "If another process is writing this dataset, wait for it to finish instead of exiting 2 at once (writes of one dataset take turns: its lock is datasets/.locks/NAME.lock)."


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files (or folders: every file inside, those no reader takes skipped and listed) to ingest; LLMFAO takes its pairs file and votes CSV together, TTCW its stories and annotations files."),
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder (created if missing)."),
    name: str = typer.Option(..., "--name", help="Dataset name inside the workspace."),
    format: str = typer.Option("auto", "--format", help="Source format (README \"Ingest\" lists them) or auto (announced on stderr); with --map, the shape: pairs, ratings, rankings or criteria."),
    strict: bool = typer.Option(False, "--strict", help="Fail (exit 2) on the first bad record instead of quarantining it, and on a folder's file that no reader takes instead of skipping it."),
    append: bool = typer.Option(False, "--append", help="Add these sources to an existing dataset (de-duplicated by id)."),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing dataset atomically."),
    drop_empty: bool = typer.Option(False, "--drop-empty", help="Quarantine records with an empty response instead of keeping them flagged."),
    column_map: Optional[str] = typer.Option(None, "--map", help="Column mapping for a schema no reader knows, TARGET=COLUMN,...; --format pairs, ratings, rankings or criteria (README \"Ingest\" lists each shape's targets), e.g. prompt=input,response_a=output_1,response_b=output_2,label=label."),
    label_values: Optional[str] = typer.Option(None, "--label-values", help="With --map: the source's label values, VALUE=N,...: pairs 1 (A better), 2 (B better), 0 (tie); criteria 1 (yes), 0 (no); rankings the rank (1 = best); ratings a number. E.g. a=1,b=2,tie=0."),
    scale: Optional[str] = typer.Option(None, "--scale", help="With --map: the ratings' own scale, LO-HI for every attribute or ATTRIBUTE=LO-HI,...; scores stay on it, out-of-range ones are quarantined; kept in the manifest. E.g. 0-100."),
    wait: bool = typer.Option(False, "--wait", help=_WAIT),
) -> None:
    """Ingest preference/rating files into a canonical, validated workspace dataset."""
    from ..errors import UsageError
    from ..formats.mapped import from_options
    from ..ingest import ingest as run

    if append and replace:
        raise UsageError("--append and --replace are mutually exclusive")
    mapping = from_options(format, column_map, label_values, scale)  # checked before any file is read
    report = run(paths, workspace, name, fmt=format, strict=strict, mode="append" if append else "replace" if replace else None,
                 drop_empty=drop_empty, mapping=mapping, wait=wait)
    for s in report.sources:
        extra = (f", and {s.quarantined_parts} parts of ingested records (annotations)" if s.quarantined_parts else "") + (" (truncated file)" if s.truncated else "")
        err(f"{s.path}: {s.records} records, {s.ingested} ingested, {s.quarantined} quarantined{extra}")
        for w in s.warnings:
            err(f"  warning: {w}")
        for reason, n in list(s.reasons.items())[:5]:
            err(f"  quarantined {n}: {reason}")
    if report.skipped_files:
        err(f"skipped {len(report.skipped_files)} file(s) that no reader takes (listed above; --strict makes that an error)")
    counts = ", ".join(f"{t} {n}" for t, n in report.tables.items() if n)
    err(f"dataset {name!r} -> {report.path} ({counts})")
    if any(s.quarantined or s.quarantined_parts for s in report.sources):
        err(f"quarantine: {report.path / 'quarantine.jsonl'}")


@app.command()
def datasets(
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    delete: Optional[str] = typer.Option(None, "--delete", help="Delete this dataset."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifests as JSON."),
    wait: bool = typer.Option(False, "--wait", help=_WAIT),
) -> None:
    """List the datasets of a workspace (or delete one)."""
    from .. import store

    if delete:
        store.delete(workspace, delete, wait=wait)
        err(f"deleted dataset {delete!r}")
        return
    items = store.list_datasets(workspace)
    if json_out:
        import orjson

        print(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode())
        return
    if not items:
        err(f"no datasets in {workspace}; create one with `helpsteer ingest FILE --workspace {workspace} --name NAME`")
        return
    from rich.table import Table

    t = Table(title=f"datasets in {workspace}")
    for col in ("name", "format", "responses", "ratings", "preferences", "quarantined", "splits"):
        t.add_column(col)
    for m in items:
        fmt = m["format"] if isinstance(m["format"], str) else ",".join(m["format"])
        q = sum(s.get("quarantined", 0) for s in m["sources"])
        splits = " ".join(f"{'unsplit' if k == 'None' else k}={v}" for k, v in sorted(m.get("splits", {}).items()))  # ('None': older manifests)
        t.add_row(m["name"], fmt, str(m["tables"]["responses"]), str(m["tables"]["ratings"]), str(m["tables"]["preferences"]), str(q), splits)
    console().print(t)


@app.command()
def split(
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    name: str = typer.Option(..., "--name", help="Dataset name."),
    eval_fraction: float = typer.Option(0.2, "--eval-fraction", help="Share of prompts (groups) that go to validation."),
    seed: int = typer.Option(0, "--seed", help="Seed of the assignment."),
    wait: bool = typer.Option(False, "--wait", help=_WAIT),
) -> None:
    """Assign train/validation by prompt, with no prompt in both."""
    from ..split import split_dataset

    counts = split_dataset(workspace, name, eval_fraction=eval_fraction, seed=seed, wait=wait)
    err(f"dataset {name!r}: " + ", ".join(f"{k} {v} responses" for k, v in counts.items()))


@app.command()
def export(
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    name: str = typer.Option(..., "--name", help="Dataset name."),
    format: str = typer.Option(..., "--format", help="trl (prompt/chosen/rejected/margin), dpo (conversational pairs) or hf (datasets.save_to_disk)."),
    out: Path = typer.Option(..., "--out", help="Output file (.jsonl or .parquet) or, for hf, a folder."),
    ties: str = typer.Option("drop", "--ties", help="Pairs whose strength is 0: drop them, or keep them (keep: chosen = response A, margin 0)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only pairs of this split (train, validation, test)."),
) -> None:
    """Export preference pairs for TRL / DPO trainers or as a Hugging Face dataset."""
    from ..export import export_pairs

    n = export_pairs(workspace, name, format, out, ties=ties, split=split)
    err(f"wrote {n} pairs to {out}")
