"""Per-item labels from per-annotator ratings: the HelpSteer2 procedure (configurable) or a plain
mean / median, with a report of what each step removed.

HelpSteer2 (Wang et al. 2024): at least 3 annotators per item; annotations far from the others are
dropped; the label is the mean of the 3 annotators who agree most. "Agree most" is the k-subset of
an item's values with the smallest variance, which in one dimension is a window of k consecutive
sorted values."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .labels import resolve

METHODS = ("helpsteer2", "mean", "median")


@dataclass
class RatingAggregator:
    method: str = "helpsteer2"
    min_annotators: int = 3  # helpsteer2: items with fewer annotations get no label
    max_distance: float = 2.0  # helpsteer2: drop annotations farther than this from the item's median
    k: int = 3  # helpsteer2: label = mean of the k most-agreeing annotations
    rounding: str = "none"  # "none" or "nearest" (half up, as integer HelpSteer labels)
    labels_: pl.DataFrame = field(default_factory=pl.DataFrame, init=False)
    report_: dict = field(default_factory=dict, init=False)

    def fit(self, ratings: pl.DataFrame) -> "RatingAggregator":
        """ratings: response_id, annotator_id, attribute, score. Rows with a null annotator are the
        source's own aggregated labels: where one exists it is the label (helpsteer.labels' rule)."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.rounding not in ("none", "nearest"):
            raise ValueError(f"rounding must be none or nearest, got {self.rounding!r}")
        votes = ratings.filter(pl.col("annotator_id").is_not_null()).select("response_id", "attribute", pl.col("score").cast(pl.Float64))
        given = ratings.filter(pl.col("annotator_id").is_null()).group_by("response_id", "attribute").agg(pl.col("score").mean().alias("given"))
        key = ["response_id", "attribute"]
        grouped = votes.group_by(key).agg(pl.col("score").sort().alias("v"))
        report = {"method": self.method, "items": grouped.height, "annotations": votes.height}
        stats = grouped.select(*key, pl.col("v").list.mean().alias("mean"), (pl.col("v").list.max() - pl.col("v").list.min()).alias("spread"),
                               pl.col("v").list.len().alias("n"))
        if self.method == "helpsteer2":
            n_item = pl.len().over(key)
            long = votes.with_columns(n_item.alias("_n"), pl.col("score").median().over(key).alias("_med"))
            few = long.filter(pl.col("_n") < self.min_annotators)
            report["removed_items_few_annotators"] = few.select(key).unique().height
            report["removed_annotations_few_annotators"] = few.height
            long = long.filter(pl.col("_n") >= self.min_annotators)
            near = (pl.col("score") - pl.col("_med")).abs() <= self.max_distance
            report["removed_annotations_outliers"] = int(long.filter(~near).height)
            kept = long.filter(near).group_by(key).agg(pl.col("score").sort().alias("v"))
            label = self._most_agreeing(kept)
        elif self.method == "mean":
            label = grouped.select(*key, pl.col("v").list.mean().alias("label"))
        else:
            label = grouped.select(*key, pl.col("v").list.median().alias("label"))
        if self.rounding == "nearest":
            label = label.with_columns((pl.col("label") + 0.5).floor())
        out = stats.join(label, on=key, how="left").join(given, on=key, how="full", coalesce=True)
        # one precedence everywhere (helpsteer.labels): the source's own label, else the aggregated votes
        out = out.with_columns(resolve("given", "label").alias("label"), pl.col("n").fill_null(0))
        report["labelled_items"] = int(out["label"].is_not_null().sum())
        self.labels_ = out.select(*key, "mean", "spread", "n", "label")
        self.report_ = report
        return self

    def _most_agreeing(self, kept: pl.DataFrame) -> pl.DataFrame:
        """Mean of the k consecutive sorted values with the smallest variance (all when n <= k)."""
        key = ["response_id", "attribute"]
        k = self.k
        small = kept.filter(pl.col("v").list.len() <= k).select(*key, pl.col("v").list.mean().alias("label"))
        big = kept.filter(pl.col("v").list.len() > k)
        if big.height == 0:
            return small
        lens = big["v"].list.len().to_numpy().astype(np.int64)
        flat = big["v"].explode().to_numpy()
        mat = np.full((big.height, int(lens.max())), np.nan)
        mat[np.repeat(np.arange(big.height), lens), np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)] = flat
        # variance of every window of k consecutive sorted values, from running sums
        zeros = np.zeros((len(mat), 1))
        cs = np.concatenate([zeros, np.cumsum(mat, axis=1)], axis=1)
        cs2 = np.concatenate([zeros, np.cumsum(mat**2, axis=1)], axis=1)
        mean = (cs[:, k:] - cs[:, :-k]) / k
        var = (cs2[:, k:] - cs2[:, :-k]) / k - mean**2  # nan where a window runs past the values
        best = np.argmin(np.where(np.isnan(var), np.inf, np.round(var, 12)), axis=1)
        labels = mean[np.arange(len(mat)), best]
        return pl.concat([small, big.select(*key).with_columns(pl.Series("label", labels))])


def wide_items(labels: pl.DataFrame) -> pl.DataFrame:
    """items.parquet: one row per response with <attribute>_mean, _spread, _label."""
    if labels.height == 0:
        return pl.DataFrame(schema={"response_id": pl.String})
    out = labels.pivot(on="attribute", index="response_id", values=["mean", "spread", "label"], aggregate_function="first")
    # polars names pivoted columns <value>_<attribute>; the contract wants <attribute>_<value>
    rename = {}
    for c in out.columns:
        for v in ("mean", "spread", "label"):
            if c.startswith(f"{v}_"):
                rename[c] = f"{c[len(v) + 1:]}_{v}"
    out = out.rename(rename)
    attrs = sorted({c.rsplit("_", 1)[0] for c in out.columns if c != "response_id"})
    return out.select("response_id", *[f"{a}_{v}" for a in attrs for v in ("mean", "spread", "label")])
