"""The label rules: pair labels (pair_labels), item labels (item_labels), Yes/No values (yes_no) and
the principle statements in feedback texts (feedback_statements).

Item labels: the one rule that says which value of an attribute a response trains on and is
evaluated against. Regression training, regression evaluation, rating-derived principles and the
analysis' items.parquet all read it from here.

Rule, per (response, attribute): the source's own aggregated label (ratings rows whose
annotator_id is null) where it has one; else, when the dataset has been analysed, the analysis
label (`helpsteer analyze`'s configured aggregation of the votes, analysis/items.parquet: an item
that aggregation leaves unlabelled, such as one with too few annotators under the HelpSteer2
procedure, has no label; one ingested after the analysis ran has its vote mean); else the mean of
the annotators' votes."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from . import store

KEY = ["response_id", "attribute"]

# Yes/No values as written in sources (lower-cased, stripped): the one table every reader parses with
YES_NO = {"yes": 1.0, "y": 1.0, "true": 1.0, "1": 1.0, "no": 0.0, "n": 0.0, "false": 0.0, "0": 0.0}


def yes_no(v) -> float | None:
    """1.0 / 0.0 for a Yes/No value (a bool, the number 0 or 1, or a YES_NO string), else None."""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)) and v in (0, 1):
        return float(v)
    if isinstance(v, str):
        return YES_NO.get(v.strip().lower())
    return None


def pair_labels(workspace: Path, name: str) -> pl.DataFrame:
    """pair_id, prompt_id, response_a_id, response_b_id, strength, n_votes, subset: one row per
    pair_id, the source's aggregated strength (annotator_id null) where it has one, else the mean of
    the annotators' votes. Negative strength = response A is preferred."""
    prefs = store.load_table(workspace, name, "preferences")
    agg = prefs.filter(pl.col("annotator_id").is_null()).group_by("pair_id", maintain_order=True).agg(pl.col("strength").mean().alias("agg"))
    votes = prefs.filter(pl.col("annotator_id").is_not_null()).group_by("pair_id", maintain_order=True).agg(
        pl.col("strength").mean().alias("vote_mean"), pl.len().alias("n_votes"))
    pairs = prefs.group_by("pair_id", maintain_order=True).agg(
        pl.col("prompt_id", "response_a_id", "response_b_id", "subset").first())
    pairs = pairs.join(agg, on="pair_id", how="left").join(votes, on="pair_id", how="left")
    return pairs.with_columns(
        pl.coalesce("agg", "vote_mean").alias("strength"), pl.col("n_votes").fill_null(0)
    ).drop("agg", "vote_mean")


def oriented_pairs(workspace: Path, name: str, labels: pl.DataFrame, split: str | None = None) -> pl.DataFrame:
    """`labels` (pair_labels' rows) as chosen/rejected, in their order: the pairs that have a strength
    and both responses, whose A response is in `split` when one is given. Adds a_chosen (strength <= 0,
    A preferred; a tie keeps A as chosen), chosen_id, rejected_id, split (A's), and the chosen_/rejected_
    context and response."""
    resp = store.load_table(workspace, name, "responses", ["response_id", "context", "response", "split"])
    side = {s: resp.rename(lambda c, s=s: f"{s}_{c}") for s in ("a", "b")}
    df = (labels.with_row_index("_row")
          .join(side["a"], left_on="response_a_id", right_on="a_response_id", how="inner")
          .join(side["b"], left_on="response_b_id", right_on="b_response_id", how="inner")
          .filter(pl.col("strength").is_not_null()))
    if split is not None:
        df = df.filter(pl.col("a_split") == split)
    a_chosen = pl.col("strength") <= 0  # (negative strength: A preferred, HelpSteer2-Preference's sign)

    def pick(a: str, b: str) -> pl.Expr:
        return pl.when(a_chosen).then(pl.col(a)).otherwise(pl.col(b))

    return df.sort("_row").drop("_row").with_columns(
        a_chosen.alias("a_chosen"), pick("response_a_id", "response_b_id").alias("chosen_id"),
        pick("response_b_id", "response_a_id").alias("rejected_id"), pl.col("a_split").alias("split"),
        pick("a_context", "b_context").alias("chosen_context"), pick("a_response", "b_response").alias("chosen_response"),
        pick("b_context", "a_context").alias("rejected_context"), pick("b_response", "a_response").alias("rejected_response"))


def resolve(given: str | pl.Expr = "given", aggregated: str | pl.Expr = "aggregated") -> pl.Expr:
    """The precedence of the rule as one expression: the source's label, else the aggregate (the
    analysis label, or the vote mean where there is no analysis)."""
    return pl.coalesce(given, aggregated)


def given_and_votes(ratings: pl.DataFrame) -> pl.DataFrame:
    """response_id, attribute, given (mean of the source's aggregated rows), vote_mean (mean of
    the annotators' rows); one row per (response, attribute) rated either way."""
    score = pl.col("score").cast(pl.Float64)
    return ratings.group_by(KEY).agg(
        score.filter(pl.col("annotator_id").is_null()).mean().alias("given"),
        score.filter(pl.col("annotator_id").is_not_null()).mean().alias("vote_mean"),
    )


def analysis_labels(workspace: Path, name: str) -> pl.DataFrame | None:
    """response_id, attribute, aggregated: the `<attribute>_label` columns of analysis/items.parquet,
    long form; None when the dataset has no analysis."""
    items = store.require(workspace, name) / "analysis" / "items.parquet"
    if not items.exists():
        return None
    wide = pl.read_parquet(items)
    cols = [c for c in wide.columns if c.endswith("_label")]
    if not cols:
        return None
    return (wide.unpivot(index="response_id", on=cols, variable_name="attribute", value_name="aggregated")
            .with_columns(pl.col("attribute").str.strip_suffix("_label"), pl.col("aggregated").cast(pl.Float64)))


def item_labels(workspace: Path, name: str, attributes: list[str] | tuple[str, ...] | None = None) -> pl.DataFrame:
    """response_id, attribute, label (never null) under the rule above, for the given attributes
    (all when None)."""
    ratings = store.load_table(workspace, name, "ratings", ["response_id", "annotator_id", "attribute", "score"])
    lab = given_and_votes(ratings)
    ana = analysis_labels(workspace, name)
    if ana is not None:
        # an item the analysis has not seen (ingested after it ran) falls back to its vote mean;
        # one the analysis saw and left unlabelled stays unlabelled
        seen = ana.with_columns(pl.lit(True).alias("_seen"))
        lab = lab.join(seen, on=KEY, how="left").with_columns(
            pl.when(pl.col("_seen")).then(pl.col("aggregated")).otherwise(pl.col("vote_mean")).alias("aggregated")).drop("_seen")
    else:
        lab = lab.with_columns(pl.col("vote_mean").alias("aggregated"))
    if attributes is not None:
        lab = lab.filter(pl.col("attribute").is_in(list(attributes)))
    return lab.select(*KEY, resolve().alias("label")).drop_nulls("label")


def labels_by_response(labels: pl.DataFrame) -> dict[str, dict[str, float]]:
    """{response_id: {attribute: label}} from item_labels' frame."""
    out: dict[str, dict[str, float]] = {}
    for rid, attr, y in labels.iter_rows():
        out.setdefault(rid, {})[attr] = float(y)
    return out


# HelpSteer3 feedback: "The response is {not/slightly/partially/mostly/perfectly} helpful" and the
# same degree words with other qualities
_DEGREE = {"not": 0.0, "slightly": 0.0, "partially": None, "mostly": 1.0, "perfectly": 1.0, "completely": 1.0, "fully": 1.0, "very": 1.0}
_FEEDBACK_RE = re.compile(r"\bthe response is (not|slightly|partially|mostly|perfectly|completely|fully|very) "
                          r"(helpful|correct|accurate|coherent|clear|concise|verbose|relevant|complete)\b", re.I)


def feedback_statements(text: str) -> list[tuple[str, float]]:
    """(principle, label) statements in a feedback text; "partially" is ambiguous and skipped."""
    out = []
    for m in _FEEDBACK_RE.finditer(text or ""):
        label = _DEGREE[m.group(1).lower()]
        if label is not None:
            out.append((f"The response is {m.group(2).lower()}.", label))
    return out
