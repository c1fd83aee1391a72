"""Annotator quality: how each annotator relates to the leave-one-out consensus of the others.

Per annotator: items rated, `offset` (mean of own score minus the mean of the other annotators on
the same item and attribute), `agreement` (Pearson correlation with that consensus over all their
ratings, attributes pooled) and `flagged` when the correlation is not significantly above zero
(one-sided Fisher z test) -- labels indistinguishable from noise. Needs real annotator ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .agreement import ANON_PREFIX

SCHEMA = {
    "annotator_id": pl.String,
    "n_items": pl.Int64,
    "n_ratings": pl.Int64,
    "offset": pl.Float64,
    "agreement": pl.Float64,
    "z": pl.Float64,
    "flagged": pl.Boolean,
    "kind": pl.String,
}


@dataclass
class AnnotatorQuality:
    """fit(long) with columns item, attribute, annotator, value -> `table_` sorted worst first."""

    min_items: int = 10  # fewer rated items: not flagged (too little evidence either way)
    z_threshold: float = 2.326  # one-sided p < 0.01 that agreement > 0
    kind: str = "ratings"
    table_: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SCHEMA), init=False)
    available_: bool = field(default=False, init=False)
    reason_: str | None = field(default=None, init=False)

    def fit(self, long: pl.DataFrame) -> "AnnotatorQuality":
        df = long.select("item", "attribute", "annotator", pl.col("value").cast(pl.Float64)).drop_nulls()
        if df.height == 0:
            self.reason_ = "no per-annotator labels"
            return self
        if df["annotator"].str.starts_with(ANON_PREFIX).all():
            self.reason_ = "annotator identities are not in the source (anonymous votes)"
            return self
        df = df.filter(~pl.col("annotator").str.starts_with(ANON_PREFIX))
        grp = ["item", "attribute"]
        df = df.with_columns(pl.col("value").sum().over(grp).alias("_sum"), pl.len().over(grp).alias("_n"))
        # leave-one-out consensus: the mean of the *other* annotators on this item and attribute
        df = df.filter(pl.col("_n") >= 2).with_columns(((pl.col("_sum") - pl.col("value")) / (pl.col("_n") - 1)).alias("loo"))
        if df.height == 0:
            self.reason_ = "no item has labels from two or more annotators"
            return self
        stats = df.group_by("annotator").agg(
            pl.col("item").n_unique().alias("n_items"),
            pl.len().alias("n_ratings"),
            (pl.col("value") - pl.col("loo")).mean().alias("offset"),
            pl.corr("value", "loo").alias("agreement"),
        )
        r = stats["agreement"].to_numpy().astype(float)
        n = stats["n_ratings"].to_numpy().astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.arctanh(np.clip(r, -0.999999, 0.999999)) * np.sqrt(np.maximum(n - 3, 0))
        z = np.where(np.isfinite(r), z, 0.0)  # a constant labeller carries no signal: z = 0
        flagged = (stats["n_items"].to_numpy() >= self.min_items) & (z < self.z_threshold)
        self.table_ = stats.with_columns(
            pl.Series("z", z), pl.Series("flagged", flagged), pl.lit(self.kind).alias("kind"),
            pl.col("agreement").fill_nan(None),
        ).rename({"annotator": "annotator_id"}).select(list(SCHEMA)).sort(["agreement", "annotator_id"], nulls_last=False)
        self.available_ = True
        return self
