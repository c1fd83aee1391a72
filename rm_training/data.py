"""Training and evaluation examples from a workspace dataset.

Pairs (bt): one per `pair_id`, with the aggregated strength where the source has one, else the
mean of the votes (helpsteer.export.pair_labels); ties dropped or kept as a 0.5 label; optional
soft labels P(A better) from the annotators' votes (analysis/pairs.parquet). Regression: one
example per response with the HelpSteer attributes as targets (helpsteer.labels' rule; missing
ones masked). Truncation is
explicit and counted: nothing is dropped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from helpsteer import store
from helpsteer.errors import UsageError
from helpsteer.export import pair_labels
from helpsteer.labels import item_labels, labels_by_response
from helpsteer.schema import HELPSTEER_ATTRIBUTES

from .tokenizer import render


def choose_split(workspace: Path, name: str, purpose: str) -> str | None:
    """train: the `train` rows (all when no row has a split); eval: validation, else test, else all."""
    splits = set(store.load_table(workspace, name, "responses", ["split"])["split"].drop_nulls().unique().to_list())
    if purpose == "train":
        if not splits:
            return None
        if "train" not in splits:
            raise UsageError(f"dataset {name!r} has splits {sorted(splits)} but none is 'train'; run `helpsteer split --workspace {workspace} --name {name}`")
        return "train"
    for s in ("validation", "test"):
        if s in splits:
            return s
    return None


@dataclass
class Pairs:
    pair_id: list[str] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)  # rendered texts
    rejected: list[str] = field(default_factory=list)
    strength: list[float] = field(default_factory=list)  # |strength| of the preference
    label: list[float] = field(default_factory=list)  # P(chosen better): 1, a soft label, or 0.5 for a tie
    subset: list[str | None] = field(default_factory=list)
    style: list[tuple] = field(default_factory=list)  # RM-Bench (style_a, style_b) of (chosen, rejected)
    chosen_id: list[str] = field(default_factory=list)
    rejected_id: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pair_id)

    def add(self, pair_id, chosen, rejected, strength, label, subset=None, style=(None, None), chosen_id="", rejected_id="") -> None:
        self.pair_id.append(pair_id)
        self.chosen.append(chosen)
        self.rejected.append(rejected)
        self.strength.append(float(strength))
        self.label.append(float(label))
        self.subset.append(subset)
        self.style.append(style)
        self.chosen_id.append(chosen_id)
        self.rejected_id.append(rejected_id)


def load_pairs(workspace: Path, name: str, tokenizer, split: str | None, ties: str = "drop", soft_labels: bool = False) -> Pairs:
    if ties not in ("drop", "half"):
        raise UsageError(f"ties must be drop or half, got {ties!r}")
    labels = pair_labels(workspace, name)
    if labels.height == 0:
        raise UsageError(f"dataset {name!r} has no preference pairs for a pairwise objective")
    resp = store.load_table(workspace, name, "responses", ["response_id", "context", "response", "split"])
    by_id = {r["response_id"]: r for r in resp.iter_rows(named=True)}
    styles = store.load_table(workspace, name, "preferences", ["pair_id", "style_a", "style_b"]).unique("pair_id", keep="first")
    style_of = {r["pair_id"]: (r["style_a"], r["style_b"]) for r in styles.iter_rows(named=True)}
    soft = {}
    if soft_labels:
        p = store.require(workspace, name) / "analysis" / "pairs.parquet"
        if p.exists():
            soft = dict(pl.read_parquet(p, columns=["pair_id", "soft_label", "n_votes"]).filter(pl.col("n_votes") > 0).select("pair_id", "soft_label").iter_rows())
        else:
            soft = vote_soft_labels(workspace, name)
            if not soft:
                raise UsageError(f"soft labels need annotator votes, and {name!r} has none (only aggregated preferences)")
    out = Pairs()
    for p in labels.iter_rows(named=True):
        a, b = by_id.get(p["response_a_id"]), by_id.get(p["response_b_id"])
        s = p["strength"]
        if a is None or b is None or s is None or (split is not None and a["split"] != split):
            continue
        if s == 0 and ties == "drop" and p["pair_id"] not in soft:
            continue
        a_better = s <= 0
        chosen, rejected = (a, b) if a_better else (b, a)
        if p["pair_id"] in soft:
            pa = soft[p["pair_id"]]
            lab = pa if a_better else 1 - pa
        else:
            lab = 0.5 if s == 0 else 1.0
        st = style_of.get(p["pair_id"], (None, None))
        out.add(p["pair_id"], render(tokenizer, chosen["context"], chosen["response"]), render(tokenizer, rejected["context"], rejected["response"]),
                abs(float(s)), lab, p["subset"], st if a_better else (st[1], st[0]), chosen["response_id"], rejected["response_id"])
    if not len(out):
        raise UsageError(f"dataset {name!r} has no usable pairs in split {split or 'all'} (ties dropped: --ties half keeps them)")
    return out


def vote_soft_labels(workspace: Path, name: str) -> dict[str, float]:
    """P(A better) per pair from its annotators' votes (a tie counts half), as the analysis computes it."""
    prefs = store.load_table(workspace, name, "preferences", ["pair_id", "annotator_id", "strength"])
    votes = prefs.filter(pl.col("annotator_id").is_not_null() & pl.col("strength").is_not_null())
    agg = votes.group_by("pair_id").agg(
        (pl.when(pl.col("strength") < 0).then(1.0).when(pl.col("strength") > 0).then(0.0).otherwise(0.5)).mean().alias("p"))
    return dict(agg.iter_rows())


def rating_stats(workspace: Path, name: str, attribute: str = "helpfulness") -> dict[str, tuple[int, float, float]]:
    """Per response: (n, mean, variance) of the annotators' ratings of one attribute (for the
    mean-variance model's Gaussian NLL term)."""
    r = store.load_table(workspace, name, "ratings", ["response_id", "annotator_id", "attribute", "score"])
    r = r.filter(pl.col("annotator_id").is_not_null() & (pl.col("attribute") == attribute))
    agg = r.group_by("response_id").agg(pl.len().alias("n"), pl.col("score").mean().alias("m"), pl.col("score").var(ddof=0).alias("v"))
    return {rid: (int(n), float(m), float(v or 0.0)) for rid, n, m, v in agg.iter_rows()}


@dataclass
class Responses:
    response_id: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    targets: list[list[float]] = field(default_factory=list)  # per attribute, NaN = missing

    def __len__(self) -> int:
        return len(self.response_id)


def load_rated(workspace: Path, name: str, tokenizer, split: str | None, attributes=HELPSTEER_ATTRIBUTES) -> Responses:
    """Responses with attribute targets under the item-label rule (helpsteer.labels: the source's
    aggregated label, else the analysis label, else the mean of the votes); missing ones are NaN."""
    ratings = store.load_table(workspace, name, "ratings", ["response_id"])
    if ratings.height == 0:
        raise UsageError(f"dataset {name!r} has no ratings for the regression objective")
    targets = labels_by_response(item_labels(workspace, name, attributes))
    resp = store.load_table(workspace, name, "responses", ["response_id", "context", "response", "split"])
    out = Responses()
    for r in resp.iter_rows(named=True):
        t = targets.get(r["response_id"])
        if t is None or (split is not None and r["split"] != split):
            continue
        out.response_id.append(r["response_id"])
        out.text.append(render(tokenizer, r["context"], r["response"]))
        out.targets.append([t.get(a, np.nan) for a in attributes])
    if not len(out):
        raise UsageError(f"dataset {name!r} has no rated responses in split {split or 'all'}")
    return out


def truncate_left(full: list[list[int]], max_length: int) -> tuple[list[list[int]], list[bool]]:
    """Keep the last max_length tokens of each text (the response and the last turns) and say
    which texts were cut. Training, evaluation and serving all truncate through here."""
    return [x[-max_length:] for x in full], [len(x) > max_length for x in full]


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids (left-truncated to max_length) and how many texts were truncated."""
    ids, cut = truncate_left(tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"], max_length)
    return ids, sum(cut)
