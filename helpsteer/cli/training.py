"""`helpsteer train | eval | attack | score | serve`: the model commands. rm_training (torch,
transformers) is imported inside the commands only, so other subcommands start fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, err


def config_fields_help() -> str:
    """The config fields `train` takes as --key value, per objective, with their defaults and help
    (built when --help is asked for: it imports transformers)."""
    import dataclasses

    from transformers import TrainingArguments

    from rm_training.config import CONFIGS, RewardConfig

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    own = {f.name: f for f in dataclasses.fields(RewardConfig)}

    def line(f) -> str:
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = "depends on the backbone" if default is None and f.name in ("learning_rate", "num_train_epochs", "warmup_steps", "max_length") else default
        return f"--{f.name} (default {shown}): {f.metadata.get('help', '')}"

    parts = ["Config fields (--key value, or in the --config YAML). Every objective:"]
    parts += [line(f) for name, f in own.items() if name not in base or name in ("learning_rate", "num_train_epochs", "warmup_steps", "bf16",
                                                                                   "per_device_train_batch_size", "seed", "weight_decay")]
    for obj, cls in CONFIGS.items():
        extra = [f for f in dataclasses.fields(cls) if f.name not in own and f.name not in base]
        if extra:
            parts.append(f"Only --objective {obj}:")
            parts += [line(f) for f in extra]
    parts.append("Every other field of transformers' TrainingArguments works too (--gradient_accumulation_steps, --lr_scheduler_type, "
                 "--max_steps, --save_strategy, --report_to ...).")
    return "\n\n".join(parts)


class _TrainCommand(typer.core.TyperCommand):
    """`train --help` lists the config fields, built only when help is shown."""

    def format_help(self, ctx, formatter):
        from rich.markup import escape

        self.epilog = escape(config_fields_help())
        return super().format_help(ctx, formatter)


@app.command(cls=_TrainCommand, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    name: str = typer.Option(..., "--name", help="Dataset to train on (its train split, or all rows when it has no splits)."),
    objective: str = typer.Option(..., "--objective", help="bt (Bradley-Terry: plain, margin, scaled), regression (HelpSteer attributes), principle (RLBFF) or meanvar (Diverging Preferences)."),
    out: Optional[str] = typer.Option(None, "--out", help="Run directory (default WS/runs/<name>-<objective>); a bare name goes under WS/runs/."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of config fields (configs/*.yaml); --key value pairs override it."),
) -> None:
    """Train a reward model on a preset from scratch or on a local pretrained checkpoint (--backbone DIR); any config field below as --key value."""
    from rm_training.train import run_training

    run_training(workspace, name, objective, out=out, config_file=config, overrides=list(ctx.args))

@app.command(name="eval")
def eval_cmd(
    model: Path = typer.Option(..., "--model", help="A run directory."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", help="Workspace folder (with --name)."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset: its validation split, else test, else all rows."),
    data: Optional[Path] = typer.Option(None, "--data", help="Or a file in any ingest format."),
    format: str = typer.Option("auto", "--format", help="Format of --data."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the JSON (default RUN/eval/<dataset>.json, one per dataset, and RUN/eval.json for the latest)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present; under torchrun each rank its own GPU), cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="Weights' precision: auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16 or float16."),
) -> None:
    """Evaluate a run: pairwise accuracy beside length baselines, RewardBench v1 sections and RewardBench 2, RM-Bench, calibration, regression metrics.
    Under `torchrun --nproc_per_node N -m helpsteer.cli eval ...` each process scores its share; rank 0 writes."""
    from helpsteer.errors import UsageError
    from rm_training.evaluate import evaluate

    if (data is None) == (name is None):
        raise UsageError("give either --workspace WS --name NAME or --data FILE")
    res = evaluate(model, workspace=workspace, name=name, data=data, fmt=format, out=out, device=device, dtype=dtype)
    if _main_rank():
        _print(res)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def attack(
    ctx: typer.Context,
    model: Path = typer.Option(..., "--model", help="The reward model to attack (a run directory)."),
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    name: str = typer.Option(..., "--name", help="Dataset with preference pairs: held-out prompts are attacked, training prompts feed adversarial training."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default WS/attacks/<name>); rounds under round-<k>/."),
    rounds: int = typer.Option(2, "--rounds", help="Adversarial-training rounds after the first attack."),
    prompts: int = typer.Option(200, "--prompts", help="Held-out prompts attacked per round."),
    train_prompts: int = typer.Option(400, "--train-prompts", help="Training prompts attacked to make adversarial pairs."),
    steps: int = typer.Option(24, "--steps", help="Hill-climbing steps per prompt."),
    ensemble: Optional[list[Path]] = typer.Option(None, "--ensemble", help="Ensemble runs (repeatable); default: trained here like the target with other seeds."),
    ensemble_size: int = typer.Option(2, "--ensemble-size", help="Ensemble members (trained when fewer are given)."),
    retrain_epochs: float = typer.Option(1.0, "--retrain-epochs", help="Epochs of each adversarial retraining (from the previous round's weights)."),
    retrain_learning_rate: Optional[float] = typer.Option(None, "--retrain-learning-rate", help="Learning rate of the retraining from the previous round's weights. Default: 2e-4 (below the from-scratch 5e-4) for a preset target, the target's own rate for one fine-tuned from a pretrained checkpoint."),
    transfer: int = typer.Option(4, "--transfer", help="Replay each successful edit sequence on this many other training responses as extra adversarial pairs (0: only the successful attacks)."),
    seed: int = typer.Option(0, "--seed", help="Seed of prompt sampling and the search."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present; under torchrun each rank its own GPU), cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="Weights' precision: auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16 or float16."),
) -> None:
    """Adv-RM: find responses the model over-rewards (while an ensemble disagrees), retrain on them, attack again; writes DIR/attack.json.
    Extra --key value pairs are training fields for the ensemble and the retraining (e.g. --max_length 128)."""
    from rm_training.attack import AttackConfig, run_attack

    cfg = AttackConfig(rounds=rounds, n_prompts=prompts, n_train_prompts=train_prompts, steps=steps, ensemble=[str(p) for p in ensemble or []],
                       ensemble_size=ensemble_size, retrain_epochs=retrain_epochs,
                       retrain_learning_rate=retrain_learning_rate, transfer=transfer, seed=seed, train_overrides=list(ctx.args),
                       device=device, dtype=dtype)
    res = run_attack(model, workspace, name, out=out, cfg=cfg)
    from rich.table import Table

    from helpsteer.console import console

    t = Table(title=f"attack: {model} on {name}")
    for c in ("round", "attack success rate", "clean accuracy", "prompts", "adversarial pairs"):
        t.add_column(c)
    for r in res["rounds"]:
        t.add_row(str(r["round"]), f"{r['attack_success_rate']:.3f}", f"{r['clean_accuracy']:.3f}", str(r["n_prompts"]), str(r["n_adversarial_pairs"]))
    console().print(t)

@app.command()
def score(
    model: Path = typer.Option(..., "--model", help="A run directory."),
    data: Path = typer.Option(..., "--data", help="A file in any ingest format (responses or preference pairs)."),
    out: Path = typer.Option(..., "--out", help="Output parquet file."),
    format: str = typer.Option("auto", "--format", help="Format of --data."),
    level: str = typer.Option("auto", "--level", help="pairs (one row per pair: rewards, P(A better)), responses, best-of-n (one row per prompt: the top-reward response of its N and the reward spread), or auto (pairs when the file has them)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sequences per forward pass (length-bucketed)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present; under torchrun each rank its own GPU), cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="Weights' precision: auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16 or float16."),
) -> None:
    """Offline batch scoring: a file -> a parquet of rewards (attributes, uncertainty, P(A better) for pairs).
    Under `torchrun --nproc_per_node N -m helpsteer.cli score ...` each process scores its share; rank 0 writes."""
    from rm_training.batch_scoring import score_file

    res = score_file(model, data, out, fmt=format, level=level, batch_size=batch_size, device=device, dtype=dtype)
    if not _main_rank():
        return
    extra = f", accuracy {res['accuracy']:.4f}" if "accuracy" in res else ""
    what = "prompts (best of their N responses)" if res["level"] == "best-of-n" else res["level"]
    err(f"scored {res['rows']} {what} ({res['truncated']} truncated{extra}) -> {res['out']}")

@app.command()
def serve(
    model: Path = typer.Option(..., "--model", help="A run directory (loaded from safetensors only)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    max_batch_size: int = typer.Option(64, "--max-batch-size", help="Most sequences per forward pass (1 = no dynamic batching)."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long to wait for more requests before running a batch."),
    max_batch_tokens: int = typer.Option(0, "--max-batch-tokens", help="Padded tokens per forward pass (0 = 1024 on CPU, 65536 on GPU)."),
    max_items: int = typer.Option(256, "--max-items", help="Most items per request (413 beyond)."),
    max_body_bytes: int = typer.Option(4 * 1024 * 1024, "--max-body-bytes", help="Largest request body (413 beyond)."),
    max_length: int = typer.Option(0, "--max-length", help="Truncation length in tokens (0 = the run's)."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0 = default)."),
    timeout_keep_alive: float = typer.Option(5.0, "--timeout-keep-alive", help="Seconds an idle connection stays open, before and between requests."),
    timeout_header: float = typer.Option(10.0, "--timeout-header", help="Seconds to receive the request line and headers (408 and close beyond)."),
    timeout_body: float = typer.Option(30.0, "--timeout-body", help="Seconds to receive the whole body after the headers (408 and close beyond)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda or cuda:N; with --replicas on GPUs, the first of the GPUs used."),
    dtype: str = typer.Option("auto", "--dtype", help="Weights' precision: auto (bfloat16 on a GPU that has it, else float32), float32, bfloat16 or float16."),
    replicas: int = typer.Option(1, "--replicas", help="Model replicas fed by the one batcher: on GPUs one per device (cuda:K .. cuda:K+N-1); on the CPU N inference threads sharing the weights."),
) -> None:
    """Serve the reward model over HTTP: /v1/score, /v1/compare, /v1/principles, /v1/models, /get_reward (OpenRLHF), /metrics, /healthz.
    Set HELPSTEER_API_KEY (comma-separated keys) to require Authorization: Bearer <key>."""
    import logging
    import os

    from helpsteer.errors import UsageError

    if log_level.lower() not in UVICORN_LEVELS:  # (uvicorn would raise a KeyError after loading the model)
        raise UsageError(f"--log-level must be {', '.join(UVICORN_LEVELS[:-1])} or {UVICORN_LEVELS[-1]}, got {log_level!r}")
    import uvicorn

    from rm_training import runs
    from rm_training.api.settings import Settings

    settings = Settings.from_options(model=str(model), host=host, port=port, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                                     max_batch_tokens=max_batch_tokens, max_items=max_items, max_body_bytes=max_body_bytes,
                                     max_length=max_length, threads=threads, timeout_keep_alive=timeout_keep_alive,
                                     timeout_header=timeout_header, timeout_body=timeout_body, api_key=os.environ.get("HELPSTEER_API_KEY", ""),
                                     device=device, dtype=dtype, replicas=replicas)
    if not runs.is_run(model):
        raise UsageError(runs.not_a_run(model, "--model"))
    from rm_training.api.app import create_app
    from rm_training.api.protocol import http_protocol

    if not settings.keys() and host not in ("127.0.0.1", "localhost", "::1"):
        err(f"warning: serving on {host} without HELPSTEER_API_KEY: anyone who can reach it can use it")
    # --log-level is the platform's lines' level too (uvicorn's "trace" is below DEBUG)
    logging.getLogger("rm_training").setLevel("DEBUG" if log_level.lower() == "trace" else log_level.upper())
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30,
                http=http_protocol(settings), timeout_keep_alive=settings.timeout_keep_alive)


UVICORN_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _main_rank() -> bool:
    """Whether this process prints: always, except on torchrun's ranks other than 0."""
    from rm_training.devices import world

    return world()[0] == 0


def _print(res: dict) -> None:
    from rich.table import Table

    from helpsteer.console import console

    t = Table(title=f"eval: {res['model']} on {res['dataset']} ({res.get('split') or 'all rows'})")
    t.add_column("metric")
    t.add_column("value")

    def row(k, v):
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))

    for k in ("objective", "n_pairs", "n_ties", "accuracy", "unanimous_accuracy", "diverging_accuracy", "divergence_auroc", "divergence_auroc_sigma",
              "n_principle_rows", "principle_accuracy", "principle_auroc", "principle_accuracy_heldout_phrasings", "principle_accuracy_trained_phrasings",
              "n_truncated"):
        if k in res and res[k] is not None:
            row(k, res[k])
    for k, v in res.get("calibration", {}).items():
        if not isinstance(v, list):  # the reliability bins are for plots (RUN/eval.json)
            row(f"calibration.{k}", v)
    for k, v in (res.get("length_baselines") or {}).items():
        row(f"length_baselines.{k}", v)
    for k, v in (res.get("rewardbench") or {}).items():
        row(f"rewardbench.{k}", v)
    for k, v in (res.get("rewardbench2") or {}).items():
        row(f"rewardbench2.{k}", "-" if v is None else v)
    for k, v in ((res.get("rewardbench2_length_baselines") or {}).get("shortest_wins") or {}).items():
        row(f"rewardbench2.{k}, shortest wins", "-" if v is None else v)
    for k in ("hard", "normal", "easy"):
        if "rm_bench" in res:
            row(f"rm_bench.{k}", res["rm_bench"][k])
    for attr, m in (res.get("regression") or {}).items():
        row(f"{attr} (mae / pearson / spearman)", f"{m['mae']:.3f} / {m['pearson']:.3f} / {m['spearman']:.3f}")
    for q, m in list((res.get("per_principle") or {}).items())[:24]:
        auroc = "-" if m["auroc"] is None else f"{m['auroc']:.3f}"
        row(f"{'[held out] ' if m['heldout'] else ''}{q} (n={m['n']}) acc / auroc", f"{m['accuracy']:.3f} / {auroc}")
    for sub, m in list((res.get("per_subset") or {}).items())[:12]:
        row(f"subset {sub} (n={m['n']})", m["accuracy"])
    console().print(t)
