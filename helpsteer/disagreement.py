"""Preference disagreement per pair: vote distribution, unanimity, the `diverging` flag (and its
looser variants), soft labels for training, rates overall / by domain / by cue, and the cues of the
Diverging Preferences taxonomy (Zhang et al. 2024) computed from the data.

Definitions (../shared/CONTRACT.md): only per-annotator rows are votes (a null annotator is the
aggregated label). `diverging`: some vote < 0 and some vote > 0 (ties are no side).
`unanimous`: at least two votes, all < 0 or all > 0. Rates use the pairs with >= 2 votes.
`soft_label` = P(A better) = (votes < 0 + half the ties) / votes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .agreement import bootstrap_ci, resample_weights, stat

_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|i can(?:no|')t|i can not|i cannot|i am unable|i'm unable|unable to (?:help|assist|provide)|"
    r"i won'?t|i will not|as an ai|i would rather not|i'd rather not|not able to help)\b",
    re.I,
)
_MARKDOWN = [r"(?m)^\s{0,3}#{1,6}\s", r"(?m)^\s*[-*+]\s+\S", r"(?m)^\s*\d+[.)]\s+\S", r"```", r"\*\*[^*]+\*\*", r"(?m)^\|.*\|\s*$"]
CUES = ("length_difference", "refusal", "formatting", "near_duplicate", "multi_turn", "contradictory_annotation", "low_effort_annotation")


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text[:400]))


def markdown_features(text: str) -> int:
    return sum(bool(re.search(p, text)) for p in _MARKDOWN)


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def text_cues(a: str, b: str, n_turns: int, length_ratio: float = 1.8, min_length_gap: int = 40, duplicate_jaccard: float = 0.8) -> list[str]:
    """Cues from the two texts and their context (no votes needed)."""
    cues = []
    la, lb = len(a), len(b)
    if max(la, lb) >= length_ratio * max(1, min(la, lb)) and abs(la - lb) >= min_length_gap:
        cues.append("length_difference")
    if is_refusal(a) != is_refusal(b):
        cues.append("refusal")
    fa, fb = markdown_features(a), markdown_features(b)
    if (fa == 0) != (fb == 0) or abs(fa - fb) >= 2:
        cues.append("formatting")
    ta, tb = _tokens(a), _tokens(b)
    if ta and tb and len(ta & tb) / len(ta | tb) >= duplicate_jaccard:
        cues.append("near_duplicate")
    if n_turns > 1:
        cues.append("multi_turn")
    return cues


@dataclass
class PairDisagreement:
    """fit(preferences, responses, ratings) -> `pairs_` (one row per pair) and `summary_`."""

    n_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    strong: float = 2.0  # the |strength| >= 2 on both sides variant
    pairs_: pl.DataFrame = field(default_factory=pl.DataFrame, init=False)
    summary_: dict = field(default_factory=dict, init=False)
    votes_max_abs_: float | None = field(default=None, init=False)  # the strongest vote's |strength| (None: no votes)

    def fit(self, preferences: pl.DataFrame, responses: pl.DataFrame, ratings: pl.DataFrame | None = None) -> "PairDisagreement":
        votes = preferences.filter(pl.col("annotator_id").is_not_null())
        self.votes_max_abs_ = float(votes["strength"].abs().max()) if votes.height and votes["strength"].abs().max() is not None else None
        s = pl.col("strength")
        per_pair = preferences.group_by("pair_id", maintain_order=True).agg(
            pl.col("response_a_id", "response_b_id", "subset").first(),
            s.filter(pl.col("annotator_id").is_null()).mean().alias("aggregate"),
        )
        v = votes.group_by("pair_id").agg(
            pl.len().alias("n_votes"),
            s.alias("votes"),
            (s < 0).sum().alias("_a"),
            (s > 0).sum().alias("_b"),
            (s == 0).sum().alias("_t"),
            (s <= -self.strong).any().alias("_sa"),
            (s >= self.strong).any().alias("_sb"),
            s.mean().alias("mean_strength"),
        )
        df = per_pair.join(v, on="pair_id", how="left").with_columns(pl.col("n_votes").fill_null(0), pl.col("_a", "_b", "_t").fill_null(0))
        n = pl.col("n_votes")
        agg_soft = pl.when(pl.col("aggregate") < 0).then(1.0).when(pl.col("aggregate") > 0).then(0.0).when(pl.col("aggregate") == 0).then(0.5)
        df = df.with_columns(
            ((pl.col("_a") > 0) & (pl.col("_b") > 0)).alias("diverging"),
            ((n >= 2) & ((pl.col("_a") == n) | (pl.col("_b") == n))).alias("unanimous"),
            # looser variants: a tie counts as a side; or strong votes on both sides
            ((n >= 2) & ((pl.col("_a") > 0).cast(pl.Int8) + (pl.col("_b") > 0).cast(pl.Int8) + (pl.col("_t") > 0).cast(pl.Int8) >= 2)).alias("diverging_with_ties"),
            (pl.col("_sa").fill_null(False) & pl.col("_sb").fill_null(False)).alias("diverging_strong"),
            pl.when(n > 0).then((pl.col("_a") + 0.5 * pl.col("_t")) / n).otherwise(agg_soft).alias("soft_label"),
        ).drop("_a", "_b", "_t", "_sa", "_sb")
        df = self._with_cues(df, responses, votes, ratings)
        self.pairs_ = df.select("pair_id", "n_votes", "diverging", "unanimous", "soft_label", "cues", "votes", "mean_strength", "aggregate",
                                "diverging_with_ties", "diverging_strong", "domain", "response_a_id", "response_b_id")
        self.summary_ = self._summary()
        return self

    def _with_cues(self, df: pl.DataFrame, responses: pl.DataFrame, votes: pl.DataFrame, ratings: pl.DataFrame | None) -> pl.DataFrame:
        resp = responses.select("response_id", "response", pl.col("context").list.len().alias("turns"), "domain")
        a = resp.rename({"response_id": "response_a_id", "response": "_ta", "turns": "_turns", "domain": "_domain"})
        b = resp.select(pl.col("response_id").alias("response_b_id"), pl.col("response").alias("_tb"))
        df = df.join(a, on="response_a_id", how="left").join(b, on="response_b_id", how="left")
        cues = [text_cues(x or "", y or "", t or 1) for x, y, t in zip(df["_ta"].to_list(), df["_tb"].to_list(), df["_turns"].to_list())]
        annot = self._annotation_cues(votes, ratings)
        for i, pid in enumerate(df["pair_id"].to_list()):
            cues[i] = cues[i] + annot.get(pid, [])
        return df.with_columns(
            pl.Series("cues", cues, dtype=pl.List(pl.String)),
            pl.coalesce("_domain", "subset").alias("domain"),
        ).drop("_ta", "_tb", "_turns", "_domain", "subset")

    def _annotation_cues(self, votes: pl.DataFrame, ratings: pl.DataFrame | None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if votes.height == 0:
            return out
        # low effort: a near-empty justification where another voter of the same pair wrote one
        just = votes.with_columns(pl.col("justification").fill_null("").str.count_matches(r"\w+").alias("_w"))
        has_text = just.group_by("pair_id").agg((pl.col("_w") >= 4).any().alias("t"), (pl.col("_w") < 4).any().alias("s"))
        for pid in has_text.filter(pl.col("t") & pl.col("s") & (pl.col("pair_id").is_in(just.filter(pl.col("justification").is_not_null())["pair_id"].implode())))["pair_id"].to_list():
            out.setdefault(pid, []).append("low_effort_annotation")
        # contradictory: the vote's direction disagrees with the same annotator's own ratings
        if ratings is not None and ratings.height:
            own = ratings.filter(pl.col("annotator_id").is_not_null())
            attr = "helpfulness" if (own["attribute"] == "helpfulness").any() else None
            own = own.filter(pl.col("attribute") == attr) if attr else own
            own = own.group_by("response_id", "annotator_id").agg(pl.col("score").mean())
            j = votes.join(own.rename({"response_id": "response_a_id", "score": "_ra"}), on=["response_a_id", "annotator_id"]).join(
                own.rename({"response_id": "response_b_id", "score": "_rb"}), on=["response_b_id", "annotator_id"])
            bad = j.filter(((pl.col("_ra") > pl.col("_rb")) & (pl.col("strength") > 0)) | ((pl.col("_ra") < pl.col("_rb")) & (pl.col("strength") < 0)))
            for pid in bad["pair_id"].unique().to_list():
                out.setdefault(pid, []).append("contradictory_annotation")
        return out

    def _rate(self, mask: np.ndarray, rng: np.random.Generator) -> dict:
        if mask.size == 0:
            return stat(None, reason="no pairs with two or more votes")
        value = float(mask.mean())
        samples = []
        for start in range(0, self.n_bootstrap, 200):
            w = resample_weights(rng, mask.size, min(200, self.n_bootstrap - start))
            samples.append(w @ mask / mask.size)
        samples = np.concatenate(samples) if samples else np.array([])
        return stat(value, bootstrap_ci(samples, value, self.confidence))

    def _strong_rate(self, ann: pl.DataFrame, rng: np.random.Generator) -> dict:
        """Strong votes (|strength| >= strong) on both sides; n/a, not 0, where no vote of the
        dataset can be that strong (sources that give only a direction: -1, 0, 1)."""
        biggest = self.votes_max_abs_
        if biggest is not None and biggest < self.strong:
            return stat(None, reason=f"needs votes with |strength| >= {self.strong:g}; this dataset's votes reach only {biggest:g} (direction only)")
        return self._rate(ann["diverging_strong"].to_numpy().astype(float), rng)

    def _summary(self) -> dict:
        rng = np.random.default_rng(self.seed)
        ann = self.pairs_.filter(pl.col("n_votes") >= 2)
        summary = {
            "n_pairs": self.pairs_.height,
            "n_annotated_pairs": ann.height,
            "diverging_rate": self._rate(ann["diverging"].to_numpy().astype(float), rng),
            "unanimous_rate": self._rate(ann["unanimous"].to_numpy().astype(float), rng),
            "diverging_rate_ties": self._rate(ann["diverging_with_ties"].to_numpy().astype(float), rng),
            "diverging_rate_strong": self._strong_rate(ann, rng),
        }
        by_domain = {}
        for (dom,), g in ann.group_by(["domain"], maintain_order=True):
            by_domain[str(dom)] = {"n_annotated_pairs": g.height, "diverging_rate": float(g["diverging"].mean())}
        summary["by_domain"] = dict(sorted(by_domain.items()))
        by_cue = {}
        exploded = ann.select("diverging", "cues").explode("cues").drop_nulls("cues")
        for cue in CUES:
            g = exploded.filter(pl.col("cues") == cue)
            if g.height:
                by_cue[cue] = {"n_annotated_pairs": g.height, "diverging_rate": float(g["diverging"].mean())}
        summary["by_cue"] = by_cue
        return summary


def pairs_from_ratings(labels: pl.DataFrame, responses: pl.DataFrame, attribute: str = "helpfulness", max_per_prompt: int = 8) -> pl.DataFrame:
    """HelpSteer2-style pairs from per-item labels of responses sharing a prompt: strength =
    label(B) - label(A) clipped to [-3, 3] (negative = A better), margin = |difference|, and the
    annotators' spread (the larger of the two responses') carried along."""
    from .ids import stable_hash

    lab = labels.filter(pl.col("attribute") == attribute).select("response_id", "label", "spread")
    if lab.height == 0:
        return pl.DataFrame(schema={"pair_id": pl.String, "prompt_id": pl.String, "response_a_id": pl.String, "response_b_id": pl.String,
                                    "strength": pl.Float64, "margin": pl.Float64, "spread": pl.Float64, "attribute": pl.String})
    r = responses.select("response_id", "prompt_id").unique("response_id").join(lab, on="response_id").drop_nulls("label")
    r = r.sort("prompt_id", "response_id").with_columns(pl.int_range(pl.len()).over("prompt_id").alias("_k")).filter(pl.col("_k") < max_per_prompt)
    pairs = r.join(r, on="prompt_id", suffix="_b").filter(pl.col("_k") < pl.col("_k_b"))
    diff = pl.col("label_b") - pl.col("label")
    out = pairs.select(
        "prompt_id",
        pl.col("response_id").alias("response_a_id"),
        pl.col("response_id_b").alias("response_b_id"),
        diff.clip(-3, 3).alias("strength"),
        diff.abs().alias("margin"),
        pl.max_horizontal("spread", "spread_b").alias("spread"),
        pl.lit(attribute).alias("attribute"),
    )
    ids = [stable_hash("ratings", attribute, a, b) for a, b in zip(out["response_a_id"].to_list(), out["response_b_id"].to_list())]
    return out.with_columns(pl.Series("pair_id", ids, dtype=pl.String)).select("pair_id", *[c for c in out.columns])
