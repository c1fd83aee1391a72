"""`helpsteer analyze`: agreement, annotator quality, aggregation and preference disagreement of one
workspace dataset, written to WS/datasets/NAME/analysis/ (../shared/CONTRACT.md):

  agreement.json      per-attribute and preference agreement with bootstrap CIs, rates, reports
  annotators.parquet  one row per annotator, worst first (empty when ids are anonymous)
  pairs.parquet       one row per preference pair: votes, diverging, unanimous, soft_label, cues
  items.parquet       one row per response: <attribute>_mean, _spread, _label
  derived_pairs.parquet  pairs derived from the ratings of responses sharing a prompt"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from . import store
from .aggregation import RatingAggregator, wide_items
from .agreement import ANON_PREFIX, Agreement, stat
from .annotators import SCHEMA as ANNOTATOR_SCHEMA
from .annotators import AnnotatorQuality
from .disagreement import PairDisagreement, pairs_from_ratings


@dataclass
class AnalysisConfig:
    n_bootstrap: int = 1000  # resamples of items for every confidence interval
    confidence: float = 0.95
    min_shared: int = 5  # annotator pairs need this many shared items for kappa / Spearman
    seed: int = 0
    aggregation: str = "helpsteer2"  # helpsteer2 | mean | median
    min_annotators: int = 3
    max_distance: float = 2.0
    k: int = 3
    rounding: str = "none"
    derive_attribute: str = "helpfulness"  # ratings -> pairs on this attribute
    min_items_flag: int = 10  # annotators with fewer items are never flagged


def _agreement(cfg: AnalysisConfig, long: pl.DataFrame) -> Agreement:
    return Agreement(n_bootstrap=cfg.n_bootstrap, confidence=cfg.confidence, min_shared=cfg.min_shared, seed=cfg.seed).fit(long)


def run_analysis(workspace: Path, name: str, cfg: AnalysisConfig | None = None, *, wait: bool = False) -> dict:
    """Analyse NAME and store the results in a new version of it (analysis/ beside the tables),
    holding its lock so that no ingest changes the data between reading and writing."""
    store.require(workspace, name)
    with store.writing(workspace, name, wait=wait) as w:
        out = _analyse(workspace, name, cfg or AnalysisConfig(), w.path)
        w.copy_base(skip=("analysis",))
        w.commit()
    return out


def _analyse(workspace: Path, name: str, cfg: AnalysisConfig, folder: Path) -> dict:
    responses = store.load_table(workspace, name, "responses", ["response_id", "prompt_id", "response", "context", "domain"])
    ratings = store.load_table(workspace, name, "ratings", ["response_id", "annotator_id", "attribute", "score"])
    prefs = store.load_table(workspace, name, "preferences", ["pair_id", "prompt_id", "response_a_id", "response_b_id", "annotator_id", "strength", "justification", "subset"])
    out: dict = {"dataset": name, "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(), "config": asdict(cfg)}

    # 1. agreement per rating attribute (votes only; a null annotator is an aggregated label)
    votes = ratings.filter(pl.col("annotator_id").is_not_null())
    out["ratings"] = {}
    for (attr,), g in votes.group_by(["attribute"], maintain_order=True):
        ag = _agreement(cfg, g.select(pl.col("response_id").alias("item"), pl.col("annotator_id").alias("annotator"), pl.col("score").alias("value")))
        order = ("kappa_quadratic", "alpha_interval", "alpha_ordinal", "fleiss_kappa", "spearman")
        out["ratings"][attr] = {"n_items": ag.n_items_, "n_annotators": ag.n_annotators_, **{k: ag.results_[k] for k in order}}
    out["ratings"] = dict(sorted(out["ratings"].items()))
    if ratings.height and not votes.height:
        out["ratings_note"] = "the dataset has only aggregated ratings (no per-annotator rows): agreement needs votes"

    # 2. annotator quality (ratings where identities exist, else preference votes)
    pref_votes = prefs.filter(pl.col("annotator_id").is_not_null())
    quality = AnnotatorQuality(min_items=cfg.min_items_flag)
    if votes.height and not votes["annotator_id"].str.starts_with(ANON_PREFIX).all():
        quality.fit(votes.select(pl.col("response_id").alias("item"), "attribute", pl.col("annotator_id").alias("annotator"), pl.col("score").alias("value")))
    elif pref_votes.height:
        quality.kind = "preferences"
        quality.fit(pref_votes.select(pl.col("pair_id").alias("item"), pl.lit("preference").alias("attribute"), pl.col("annotator_id").alias("annotator"), pl.col("strength").alias("value")))
    elif votes.height:
        quality.reason_ = "annotator identities are not in the source (anonymous votes)"
    else:
        quality.reason_ = "no per-annotator labels"
    table = quality.table_ if quality.available_ else pl.DataFrame(schema=ANNOTATOR_SCHEMA)
    out["annotators"] = {"available": quality.available_, "n_annotators": table.height, "n_flagged": int(table["flagged"].sum()) if table.height else 0,
                         "kind": quality.kind if quality.available_ else None}
    if not quality.available_:
        out["annotators"]["reason"] = quality.reason_

    # 3. aggregation of per-annotator ratings into item labels
    items = pl.DataFrame(schema={"response_id": pl.String})
    derived = None
    if ratings.height:
        agg = RatingAggregator(method=cfg.aggregation, min_annotators=cfg.min_annotators, max_distance=cfg.max_distance, k=cfg.k, rounding=cfg.rounding).fit(ratings)
        out["aggregation"] = agg.report_
        items = wide_items(agg.labels_)
        derived = pairs_from_ratings(agg.labels_, responses, attribute=cfg.derive_attribute)
        out["derived_pairs"] = {"attribute": cfg.derive_attribute, "n_pairs": derived.height, "n_ties": int((derived["strength"] == 0).sum())}

    # 4. preference disagreement and agreement
    pairs = None
    if prefs.height:
        dis = PairDisagreement(n_bootstrap=cfg.n_bootstrap, confidence=cfg.confidence, seed=cfg.seed).fit(prefs, responses, ratings)
        pairs = dis.pairs_
        out["preferences"] = dis.summary_
        if pref_votes.height:
            ag = _agreement(cfg, pref_votes.select(pl.col("pair_id").alias("item"), pl.col("annotator_id").alias("annotator"), pl.col("strength").alias("value")))
            out["preferences"].update({k: ag.results_[k] for k in ("alpha_interval", "alpha_ordinal", "kappa_quadratic", "fleiss_kappa", "spearman")})
            out["preferences"]["n_annotators"] = ag.n_annotators_
        else:
            why = "no per-annotator votes (only aggregated or gold labels)"
            out["preferences"].update({k: stat(None, reason=why) for k in ("alpha_interval", "alpha_ordinal", "kappa_quadratic", "fleiss_kappa", "spearman")})
    else:
        why = "the dataset has no preference pairs"
        out["preferences"] = {"n_pairs": 0, "n_annotated_pairs": 0, **{k: stat(None, reason=why) for k in ("diverging_rate", "unanimous_rate", "alpha_interval")}}

    _write(folder, out, table, pairs, items, derived)
    return out


def _write(folder: Path, agreement: dict, annotators: pl.DataFrame, pairs: pl.DataFrame | None, items: pl.DataFrame, derived: pl.DataFrame | None) -> None:
    """All outputs into FOLDER/analysis (FOLDER: the new version being written, see store.writing)."""
    out = folder / "analysis"
    out.mkdir()
    store.write_json(out / "agreement.json", agreement)
    annotators.write_parquet(out / "annotators.parquet")
    if pairs is None:
        pairs = pl.DataFrame(schema={"pair_id": pl.String, "n_votes": pl.UInt32, "diverging": pl.Boolean, "unanimous": pl.Boolean,
                                     "soft_label": pl.Float64, "cues": pl.List(pl.String)})
    pairs.write_parquet(out / "pairs.parquet")
    items.write_parquet(out / "items.parquet")
    if derived is not None:
        derived.write_parquet(out / "derived_pairs.parquet")
