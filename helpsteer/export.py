"""`helpsteer export`: preference pairs for trainers.

One pair per `pair_id`: the aggregated strength where the source has one (annotator_id null),
else the mean of the annotators' votes. Negative strength = response A is chosen. Formats:
- trl: `prompt`, `chosen`, `rejected` as text plus `margin` (= |strength|), TRL's standard format;
  a multi-turn context is rendered as "User: ...\\n\\nAssistant: ..." in `prompt`;
- dpo: conversational (`prompt` = context messages, `chosen`/`rejected` = [assistant message]);
- hf: a `datasets` DatasetDict (by split) with both, saved with save_to_disk."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .errors import UsageError
from .labels import oriented_pairs, pair_labels


def render_context(context: list[dict]) -> str:
    if len(context) == 1 and context[0]["role"] == "user":
        return context[0]["content"]
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in context)


def build_pairs(workspace: Path, name: str, ties: str = "drop", split: str | None = None) -> list[dict]:
    if ties not in ("drop", "keep"):
        raise UsageError(f"--ties must be drop or keep, got {ties!r}")
    pairs = pair_labels(workspace, name)
    if pairs.height == 0:
        raise UsageError(f"dataset {name!r} has no preference pairs to export")
    df = oriented_pairs(workspace, name, pairs, split)
    if ties == "drop":
        df = df.filter(pl.col("strength") != 0)
    out = df.select("pair_id", "split", pl.col("strength").abs().cast(pl.Float64).alias("margin"), pl.col("chosen_context").alias("context"),
                    pl.col("chosen_response").alias("chosen_text"), pl.col("rejected_response").alias("rejected_text")).to_dicts()
    return out


def export_pairs(workspace: Path, name: str, fmt: str, out: Path, ties: str = "drop", split: str | None = None) -> int:
    if fmt not in ("trl", "dpo", "hf"):
        raise UsageError(f"--format must be trl, dpo or hf, got {fmt!r}")
    rows = build_pairs(workspace, name, ties=ties, split=split)
    trl = [{"prompt": render_context(r["context"]), "chosen": r["chosen_text"], "rejected": r["rejected_text"], "margin": r["margin"],
            "pair_id": r["pair_id"], "split": r["split"]} for r in rows]
    dpo = [{"prompt": r["context"], "chosen": [{"role": "assistant", "content": r["chosen_text"]}],
            "rejected": [{"role": "assistant", "content": r["rejected_text"]}], "margin": r["margin"], "pair_id": r["pair_id"], "split": r["split"]}
           for r in rows]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        import shutil

        import datasets

        datasets.disable_progress_bars()

        by_split: dict[str, list[dict]] = {}
        for r in trl:
            by_split.setdefault(r["split"] or "train", []).append(r)
        dd = datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in by_split.items()})
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        dd.save_to_disk(str(tmp))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return len(trl)
    records = trl if fmt == "trl" else dpo
    tmp = out.with_name(f".{out.name}.tmp")
    schema_df = pl.DataFrame(records) if records else pl.DataFrame(schema={"prompt": pl.String, "chosen": pl.String, "rejected": pl.String, "margin": pl.Float64})
    if out.suffix == ".parquet":
        schema_df.write_parquet(tmp)
    else:
        schema_df.write_ndjson(tmp)
    tmp.replace(out)
    return len(records)
