"""`helpsteer score`: offline batch scoring of a file in any ingest format with the API's own
scoring path (`Scorer`: same rendering, truncation and length-bucketed batches), for best-of-N
selection and data filtering without a server. Files with preference pairs give one row per pair
(rewards of both sides, P(A better), the label); others one row per response; `--level best-of-n`
one row per prompt: the top-reward response of the prompt's N and how spread its rewards are."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from helpsteer import store
from helpsteer.errors import UsageError

from .scoring import Item, Scorer


def score_file(run: Path, data: Path, out: Path, fmt: str = "auto", level: str = "auto", batch_size: int = 32,
               progress: bool | None = None, device: str = "auto", dtype: str = "auto") -> dict:
    """Under torchrun each rank scores every world-th response (devices.Shards) and rank 0 writes
    the file; every rank returns the same summary."""
    from helpsteer.console import quiet
    from helpsteer.ingest import ingest

    from .config import check_option
    from .devices import Shards, placement

    if level not in ("auto", "responses", "pairs", "best-of-n"):
        raise UsageError(f"--level must be auto, responses, pairs or best-of-n, got {level!r}")
    if not Path(out).name.endswith(".parquet"):
        raise UsageError(f"--out {out}: the output is a parquet file (name it *.parquet)")
    check_option("per_device_eval_batch_size", batch_size, "--batch-size")
    dev, dt = placement(device, dtype)
    try:
        sc = Scorer(run, device=dev, dtype=dt, batch_size=batch_size)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    shards = Shards()
    progress = sys.stderr.isatty() if progress is None else progress
    with tempfile.TemporaryDirectory(prefix="helpsteer-score-", ignore_cleanup_errors=True) as tmp:
        tmp = Path(tmp)
        with quiet("helpsteer.ingest"):  # a scratch ingest of --data: its lines are not this command's
            ingest([Path(data)], tmp, "score", fmt=fmt)
        resp = store.load_table(tmp, "score", "responses", ["response_id", "prompt_id", "context", "prompt", "response", "split"])
        labels = None
        if level in ("auto", "pairs"):
            from helpsteer.labels import pair_labels

            labels = pair_labels(tmp, "score")
            if labels.height == 0:
                if level == "pairs":
                    raise UsageError(f"{data}: no preference pairs to score (--level responses scores the responses)")
                labels = None
        items = [Item(c, r) for c, r in zip(resp["context"].to_list(), resp["response"].to_list())]
        logits, truncated = sc.score_texts([sc.text(it) for it in items], shards, progress=progress)
        rows = sc.results(logits, truncated)
        scored = resp.with_columns(
            pl.Series("reward", [r["reward"] for r in rows], dtype=pl.Float64),
            pl.Series("truncated", [r["truncated"] for r in rows], dtype=pl.Boolean))
        if sc.objective == "regression":
            scored = scored.with_columns([pl.Series(a, logits[:, k], dtype=pl.Float64) for k, a in enumerate(sc.attributes)])
        if sc.objective == "meanvar":
            scored = scored.with_columns(pl.Series("uncertainty", [r["uncertainty"] for r in rows], dtype=pl.Float64))
        if sc.objective == "principle":
            scored = scored.with_columns(pl.Series("probability", [r["probability"] for r in rows], dtype=pl.Float64))
        if level == "best-of-n":
            table = best_of_n(scored)
        elif labels is None:
            table = scored
        else:
            pos = {rid: i for i, rid in enumerate(resp["response_id"].to_list())}
            keep = labels.filter(pl.col("response_a_id").is_in(list(pos)) & pl.col("response_b_id").is_in(list(pos)))
            ia = np.array([pos[x] for x in keep["response_a_id"]], dtype=np.int64)
            ib = np.array([pos[x] for x in keep["response_b_id"]], dtype=np.int64)
            p = sc.prefer_a(logits[ia], logits[ib]) if len(ia) else np.zeros(0)
            side = scored.drop("prompt_id", "split")
            shared = ("prompt", "context")
            a = side.rename({c: ("response_a_id" if c == "response_id" else f"{c}_a") for c in side.columns if c not in shared}).drop(*shared)
            b = side.rename({c: ("response_b_id" if c == "response_id" else f"{c}_b") for c in side.columns if c not in shared})
            table = (keep.select("pair_id", "prompt_id", "response_a_id", "response_b_id", "strength", "subset")
                     .join(a, on="response_a_id", how="left").join(b, on="response_b_id", how="left")
                     .with_columns(pl.Series("p_a_better", p, dtype=pl.Float64))
                     .with_columns(pl.when(pl.col("strength") < 0).then(pl.lit("A")).when(pl.col("strength") > 0).then(pl.lit("B"))
                                   .when(pl.col("strength") == 0).then(pl.lit("tie")).alias("label")))
        out = Path(out)
        if shards.main:
            out.parent.mkdir(parents=True, exist_ok=True)
            store.write_parquet(table, out)
    shards.close()
    summary = {"rows": table.height, "level": level if level == "best-of-n" else "responses" if labels is None else "pairs", "truncated": int(sum(truncated)), "out": str(out)}
    if labels is not None and table.height:
        decided = table.filter(pl.col("label").is_in(["A", "B"]))
        if decided.height:
            summary["accuracy"] = float(((decided["p_a_better"] > 0.5) == (decided["label"] == "A")).mean())
    return summary


def best_of_n(scored: pl.DataFrame) -> pl.DataFrame:
    """One row per prompt (its responses: the N candidates, identical texts once): the top-reward
    response (the first in file order among equal rewards), its reward, and the spread of the N
    rewards (max - min, population std, the margin over the runner-up: null when N = 1)."""
    r = pl.col("reward")
    top = r.arg_max()
    return scored.group_by("prompt_id", maintain_order=True).agg(
        pl.col("prompt").first(), pl.col("context").first(), pl.len().alias("n"),
        pl.col("response_id").get(top).alias("best_response_id"), pl.col("response").get(top).alias("best_response"),
        r.max().alias("best_reward"), r.min().alias("worst_reward"), r.mean().alias("mean_reward"),
        (r.max() - r.min()).alias("reward_spread"), r.std(ddof=0).alias("reward_std"),
        (r.max() - r.sort(descending=True).slice(1, 1).first()).alias("margin_over_runner_up"),
        pl.col("truncated").any().alias("any_truncated"))
