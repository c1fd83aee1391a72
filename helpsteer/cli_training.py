"""`helpsteer train` and `helpsteer eval`: registered on the main command by helpsteer/cli.py. rm_training
(torch, transformers) is imported inside the commands only, so other subcommands start fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def register(app: typer.Typer) -> None:
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def train(
        ctx: typer.Context,
        workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
        name: str = typer.Option(..., "--name", help="Dataset to train on (its train split, or all rows when it has no splits)."),
        objective: str = typer.Option(..., "--objective", help="bt (Bradley-Terry: plain, margin, scaled) or regression (HelpSteer attributes)."),
        out: Optional[str] = typer.Option(None, "--out", help="Run directory (default WS/runs/<name>-<objective>); a bare name goes under WS/runs/."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML file of config fields (configs/*.yaml); --key value pairs override it."),
    ) -> None:
        """Train a reward model; any field of the objective's config: --num_train_epochs 3 --learning_rate 1e-4 ..."""
        from rm_training.train import run_training

        run_training(workspace, name, objective, out=out, config_file=config, overrides=list(ctx.args), announce=_err)

    @app.command(name="eval")
    def eval_cmd(
        model: Path = typer.Option(..., "--model", help="A run directory."),
        workspace: Optional[Path] = typer.Option(None, "--workspace", help="Workspace folder (with --name)."),
        name: Optional[str] = typer.Option(None, "--name", help="Dataset: its validation split, else test, else all rows."),
        data: Optional[Path] = typer.Option(None, "--data", help="Or a file in any ingest format."),
        format: str = typer.Option("auto", "--format", help="Format of --data."),
        out: Optional[Path] = typer.Option(None, "--out", help="Where to write the JSON (default RUN/eval.json)."),
    ) -> None:
        """Evaluate a run: pairwise accuracy, RewardBench sections, RM-Bench, calibration, regression metrics."""
        from helpsteer.errors import UsageError
        from rm_training.evaluate import evaluate

        if (data is None) == (name is None):
            raise UsageError("give either --workspace WS --name NAME or --data FILE")
        res = evaluate(model, workspace=workspace, name=name, data=data, fmt=format, out=out)
        _print(res)


def _print(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"eval: {res['model']} on {res['dataset']} ({res.get('split') or 'all rows'})")
    t.add_column("metric")
    t.add_column("value")

    def row(k, v):
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))

    for k in ("objective", "n_pairs", "n_ties", "accuracy", "unanimous_accuracy", "diverging_accuracy", "n_truncated"):
        if k in res and res[k] is not None:
            row(k, res[k])
    for k, v in res.get("calibration", {}).items():
        row(f"calibration.{k}", v)
    for k, v in (res.get("rewardbench") or {}).items():
        row(f"rewardbench.{k}", v)
    for k in ("hard", "normal", "easy"):
        if "rm_bench" in res:
            row(f"rm_bench.{k}", res["rm_bench"][k])
    for attr, m in (res.get("regression") or {}).items():
        row(f"{attr} (mae / pearson / spearman)", f"{m['mae']:.3f} / {m['pearson']:.3f} / {m['spearman']:.3f}")
    for sub, m in list((res.get("per_subset") or {}).items())[:12]:
        row(f"subset {sub} (n={m['n']})", m["accuracy"])
    Console().print(t)
