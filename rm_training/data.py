"""Training and evaluation examples from a workspace dataset.

Pairs (bt): one per `pair_id`, with the aggregated strength where the source has one, else the
mean of the votes (helpsteer.labels.pair_labels); ties dropped or kept as a 0.5 label; optional
soft labels P(A better) from the annotators' votes (analysis/pairs.parquet). Regression: one
example per response with the HelpSteer attributes as targets (helpsteer.labels' rule; missing
ones masked). Truncation is
explicit and counted: nothing is dropped.

The examples are built as polars frames (pair_frame, rated_frame); training reads them rendered
and tokenized by `datasets` .map(num_proc=N) into WS/.cache/tokenized/<key>/ (tokenized): Arrow
files on disk, memory-mapped by every rank, keyed by the dataset version, the tokenizer, max_length
and the objective's label options, so a rerun reuses them and no process holds the texts as
Python lists."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from helpsteer import store
from helpsteer.errors import UsageError
from helpsteer.labels import item_labels, oriented_pairs, pair_labels
from helpsteer.schema import HELPSTEER_ATTRIBUTES

from .tokenizer import render

log = logging.getLogger(__name__)


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


def pair_frame(workspace: Path, name: str, split: str | None, ties: str = "drop", soft_labels: bool = False) -> pl.DataFrame:
    """One row per usable pair, in pair_labels' order: pair_id, chosen_id, rejected_id, strength
    (|strength|), label (P(chosen better): 1, the soft label, or 0.5 for a kept tie), subset,
    chosen_style, rejected_style, and the chosen_/rejected_ context and response. A pair is usable
    when both responses exist, it has a strength, its A response is in `split`, and it is no tie
    (unless --ties half or it has a soft label)."""
    if ties not in ("drop", "half"):
        raise UsageError(f"ties must be drop or half, got {ties!r}")
    labels = pair_labels(workspace, name)
    if labels.height == 0:
        raise UsageError(f"dataset {name!r} has no preference pairs for a pairwise objective")
    styles = store.load_table(workspace, name, "preferences", ["pair_id", "style_a", "style_b"]).unique("pair_id", keep="first", maintain_order=True)
    soft = pl.DataFrame(schema={"pair_id": pl.String, "soft_label": pl.Float64})
    if soft_labels:
        p = store.require(workspace, name) / "analysis" / "pairs.parquet"
        if p.exists():
            soft = pl.read_parquet(p, columns=["pair_id", "soft_label", "n_votes"]).filter(pl.col("n_votes") > 0).select("pair_id", "soft_label")
        else:
            soft = pl.DataFrame(list(vote_soft_labels(workspace, name).items()), schema={"pair_id": pl.String, "soft_label": pl.Float64}, orient="row")
            if soft.height == 0:
                raise UsageError(f"soft labels need annotator votes, and {name!r} has none (only aggregated preferences)")
    df = (oriented_pairs(workspace, name, labels, split).with_row_index("_row")
          .join(styles, on="pair_id", how="left")
          .join(soft.unique("pair_id", keep="last").with_columns(pl.lit(True).alias("_soft")), on="pair_id", how="left")
          .with_columns(pl.col("_soft").fill_null(False)))
    if ties == "drop":  # a tie with a soft label stays: its label says how the votes split
        df = df.filter((pl.col("strength") != 0) | pl.col("_soft"))
    a_chosen = pl.col("a_chosen")

    def pick(a: str, b: str) -> pl.Expr:
        return pl.when(a_chosen).then(pl.col(a)).otherwise(pl.col(b))

    df = df.sort("_row").select(
        "pair_id", "chosen_id", "rejected_id", pl.col("strength").abs().cast(pl.Float64),
        pl.when(pl.col("_soft")).then(pl.when(a_chosen).then(pl.col("soft_label")).otherwise(1 - pl.col("soft_label")))
        .when(pl.col("strength") == 0).then(0.5).otherwise(1.0).cast(pl.Float64).alias("label"),
        "subset", pick("style_a", "style_b").alias("chosen_style"), pick("style_b", "style_a").alias("rejected_style"),
        "chosen_context", "chosen_response", "rejected_context", "rejected_response")
    if df.height == 0:
        raise UsageError(f"dataset {name!r} has no usable pairs in split {split or 'all'} (ties dropped: --ties half keeps them)")
    return df


def load_pairs(workspace: Path, name: str, tokenizer, split: str | None, ties: str = "drop", soft_labels: bool = False) -> Pairs:
    """pair_frame's pairs with their texts rendered, as lists (for small uses; training reads
    `tokenized` examples)."""
    out = Pairs()
    for p in pair_frame(workspace, name, split, ties, soft_labels).iter_rows(named=True):
        out.add(p["pair_id"], render(tokenizer, p["chosen_context"], p["chosen_response"]), render(tokenizer, p["rejected_context"], p["rejected_response"]),
                p["strength"], p["label"], p["subset"], (p["chosen_style"], p["rejected_style"]), p["chosen_id"], p["rejected_id"])
    return out


def vote_soft_labels(workspace: Path, name: str) -> dict[str, float]:
    """P(A better) per pair from its annotators' votes (a tie counts half), as the analysis computes it."""
    prefs = store.load_table(workspace, name, "preferences", ["pair_id", "annotator_id", "strength"])
    votes = prefs.filter(pl.col("annotator_id").is_not_null() & pl.col("strength").is_not_null())
    agg = votes.group_by("pair_id").agg(
        (pl.when(pl.col("strength") < 0).then(1.0).when(pl.col("strength") > 0).then(0.0).otherwise(0.5)).mean().alias("p"))
    return dict(agg.iter_rows())


def rating_frame(workspace: Path, name: str, attribute: str = "helpfulness") -> pl.DataFrame:
    """Per response: response_id, n, mean, var (ddof 0) of the annotators' ratings of one
    attribute (for the mean-variance model's Gaussian NLL term)."""
    r = store.load_table(workspace, name, "ratings", ["response_id", "annotator_id", "attribute", "score"])
    r = r.filter(pl.col("annotator_id").is_not_null() & (pl.col("attribute") == attribute))
    return r.group_by("response_id", maintain_order=True).agg(
        pl.len().cast(pl.Float64).alias("n"), pl.col("score").mean().cast(pl.Float64).alias("mean"),
        pl.col("score").var(ddof=0).cast(pl.Float64).fill_null(0.0).alias("var"))


def rating_stats(workspace: Path, name: str, attribute: str = "helpfulness") -> dict[str, tuple[int, float, float]]:
    """rating_frame as {response_id: (n, mean, variance)}."""
    return {rid: (int(n), float(m), float(v)) for rid, n, m, v in rating_frame(workspace, name, attribute).iter_rows()}


@dataclass
class Responses:
    response_id: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    targets: list[list[float]] = field(default_factory=list)  # per attribute, NaN = missing

    def __len__(self) -> int:
        return len(self.response_id)


def rated_frame(workspace: Path, name: str, split: str | None, attributes=HELPSTEER_ATTRIBUTES) -> pl.DataFrame:
    """Responses with attribute targets under the item-label rule (helpsteer.labels: the source's
    aggregated label, else the analysis label, else the mean of the votes), in the responses
    table's order: response_id, context, response, targets (one per attribute, NaN = missing)."""
    ratings = store.load_table(workspace, name, "ratings", ["response_id"])
    if ratings.height == 0:
        raise UsageError(f"dataset {name!r} has no ratings for the regression objective")
    lab = item_labels(workspace, name, attributes)
    wide = lab.pivot(on="attribute", index="response_id", values="label", aggregate_function="last") if lab.height else pl.DataFrame(schema={"response_id": pl.String})
    resp = store.load_table(workspace, name, "responses", ["response_id", "context", "response", "split"]).with_row_index("_row")
    if split is not None:
        resp = resp.filter(pl.col("split") == split)
    nan = float("nan")
    targets = pl.concat_list([(pl.col(a).cast(pl.Float64) if a in wide.columns else pl.lit(None, pl.Float64)).fill_null(nan) for a in attributes])
    df = resp.join(wide, on="response_id", how="inner").sort("_row").select("response_id", "context", "response", targets.alias("targets"))
    if df.height == 0:
        raise UsageError(f"dataset {name!r} has no rated responses in split {split or 'all'}")
    return df


def load_rated(workspace: Path, name: str, tokenizer, split: str | None, attributes=HELPSTEER_ATTRIBUTES) -> Responses:
    """rated_frame's responses with their texts rendered, as lists."""
    df = rated_frame(workspace, name, split, attributes)
    return Responses(df["response_id"].to_list(), [render(tokenizer, c, r) for c, r in zip(df["context"].to_list(), df["response"].to_list())],
                     df["targets"].to_list())


def truncate_left(full: list[list[int]], max_length: int) -> tuple[list[list[int]], list[bool]]:
    """Keep the last max_length tokens of each text (the response and the last turns) and say
    which texts were cut. Training, evaluation and serving all truncate through here."""
    return [x[-max_length:] for x in full], [len(x) > max_length for x in full]


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids (left-truncated to max_length) and how many texts were truncated."""
    ids, cut = truncate_left(tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"], max_length)
    return ids, sum(cut)


# -- tokenized examples on disk ----------------------------------------------------------------------
# Bump when what `_encode` writes changes: an old cache entry must not be read as a new one.
CACHE_FORMAT = 1
MIN_ROWS_PER_PROCESS = 2000  # below this a worker process costs more to start than it saves


@dataclass
class Tokenized:
    """Examples rendered and tokenized on disk: `dataset` is memory-mapped from `path`."""

    dataset: object  # datasets.Dataset
    truncated: int  # texts cut to max_length (kept, never dropped)
    reused: bool  # read from an earlier run's cache, nothing rendered or tokenized
    path: Path


def tokenizer_hash(tokenizer) -> str:
    """A content hash of what renders and tokenizes a text: the tokenizer's model, normalizer,
    pre-tokenizer and added tokens (tokenizer.json), its chat template and special tokens."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([type(tokenizer).__name__, tokenizer.chat_template, tokenizer.special_tokens_map], sort_keys=True, default=str).encode())
    return h.hexdigest()


def dataset_version(workspace: Path, name: str) -> str:
    """The version of NAME this process reads: its version folder and the name, size and mtime of
    every file in it (versions are immutable; a pre-version plain folder changes its files)."""
    folder = store.require(workspace, name)
    files = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())
    return f"{folder.name}:{hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]}"


def _code_hash() -> str:
    """The rendering and encoding code itself (this file and tokenizer.py): a change to either
    makes new cache entries rather than reading ones written by the old code."""
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / f).read_bytes() for f in ("data.py", "tokenizer.py"))).hexdigest()[:16]


def _encode(batch: dict, tokenizer, max_length: int, sides: list[str]) -> dict:
    """Render and tokenize one batch: `<side>ids` per side (chosen_/rejected_, or none: input_ids),
    left-truncated through truncate_left; `length`: the longest side (length-grouped sampling);
    `n_truncated`: how many of the row's texts were cut."""
    out, lengths, cut = {}, [], []
    for side in sides:
        texts = [render(tokenizer, c, r) for c, r in zip(batch[f"{side}context"], batch[f"{side}response"])]
        ids, was_cut = truncate_left(tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"], max_length)
        out[f"{side}ids" if side else "input_ids"] = ids
        lengths.append([len(x) for x in ids])
        cut.append(was_cut)
    out["length"] = [max(x) for x in zip(*lengths)]
    out["n_truncated"] = [sum(x) for x in zip(*cut)]
    return out


def tokenized(cache_root: Path, key: dict, frame: Callable[[], pl.DataFrame], tokenizer, max_length: int, num_proc: int) -> Tokenized:
    """The examples of `frame()` (columns `[<side>_]context` and `[<side>_]response` plus the label
    columns), rendered and tokenized with datasets .map(batched, num_proc) into
    cache_root/<hash of key, tokenizer, max_length, code>/ and memory-mapped from there.

    One process builds an entry (a file lock: under torchrun the first rank builds, the others
    wait and then map the same files; so do two runs started together); it is written into a
    temporary folder and renamed into place, so a killed build leaves no entry behind. `frame`
    is only called when the entry is missing: a warm start reads no table."""
    import datasets
    from filelock import FileLock

    key = {**key, "format": CACHE_FORMAT, "tokenizer": tokenizer_hash(tokenizer), "max_length": max_length, "code": _code_hash()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    final = Path(cache_root) / digest
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{digest}.lock")):
        reused = (final / "meta.json").is_file()
        if not reused:
            # what a killed builder of this entry left (the lock's holder is its only builder)
            for stale in [final, *final.parent.glob(f".tmp-{digest}-*")]:
                shutil.rmtree(stale, ignore_errors=True)
            _build(final, key, frame(), tokenizer, max_length, num_proc)
    meta = json.loads((final / "meta.json").read_text())
    log.debug("%s tokenized examples %s", "reusing" if reused else "wrote", final)  # (train reports it)
    return Tokenized(datasets.load_from_disk(str(final / "dataset")), int(meta["truncated"]), reused, final)


def _build(final: Path, key: dict, df: pl.DataFrame, tokenizer, max_length: int, num_proc: int) -> None:
    import datasets
    import pyarrow.compute as pc

    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        sides = sorted({c[: -len("response")] for c in df.columns if c.endswith("response")})  # ["chosen_", "rejected_"] or [""]
        texts = [f"{s}{c}" for s in sides for c in ("context", "response")]
        df.write_parquet(tmp / "examples.parquet")  # the frame goes to disk: the map reads it memory-mapped, a batch at a time
        n = df.height
        del df
        src = datasets.Dataset.from_parquet(str(tmp / "examples.parquet"), cache_dir=str(tmp / "hf"))
        ids = datasets.List(datasets.Value("int32"))  # (vocabularies fit in 31 bits: half the disk and page cache of int64)
        features = datasets.Features({**{k: v for k, v in src.features.items() if k not in texts},
                                      **{(f"{s}ids" if s else "input_ids"): ids for s in sides}, "length": datasets.Value("int64"), "n_truncated": datasets.Value("int64")})
        procs = max(1, min(num_proc, n // MIN_ROWS_PER_PROCESS))
        enc = src.map(_encode, batched=True, batch_size=1000, num_proc=procs if procs > 1 else None, remove_columns=texts, features=features,
                      fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "sides": sides},
                      cache_file_name=str(tmp / "map" / "tokens.arrow"), new_fingerprint=final.name, desc="rendering and tokenizing")
        truncated = int(pc.sum(enc.data.column("n_truncated")).as_py() or 0)
        enc.remove_columns("n_truncated").save_to_disk(str(tmp / "dataset"))
        del src, enc
        for f in ("hf", "map", "examples.parquet"):
            shutil.rmtree(tmp / f, ignore_errors=True) if (tmp / f).is_dir() else (tmp / f).unlink(missing_ok=True)
        store.write_json(tmp / "meta.json", {"key": key, "n_examples": n, "truncated": truncated})
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cache_dir(workspace: Path, run_dir: Path) -> Path:
    """WS/.cache/tokenized, shared by the workspace's runs; RUN/.cache/tokenized when the workspace
    cannot be written (a read-only dataset mount with --out elsewhere)."""
    root = Path(workspace) / ".cache" / "tokenized"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return root
    except OSError:
        return Path(run_dir) / ".cache" / "tokenized"


def examples(workspace: Path, name: str, tokenizer, split: str | None, cfg, cache_root: Path,
             extra_pairs: list[tuple[list[dict], str, str]] | None = None) -> Tokenized:
    """The tokenized examples of a bt, meanvar or regression run (cfg: its RewardConfig) from one
    split. bt / meanvar: chosen_ids, rejected_ids, strength, label, length (and rating_stats, the
    chosen then rejected response's (n, mean, var) of helpfulness ratings, with --nll_weight);
    extra_pairs (context, chosen, rejected) follow the dataset's pairs with label 1.
    regression: input_ids, targets, length."""
    key = {"dataset": dataset_version(workspace, name), "split": split, "objective": cfg.objective}
    if cfg.objective in ("bt", "meanvar"):
        nll = bool(getattr(cfg, "nll_weight", 0))
        key.update(ties=cfg.ties, soft_labels=cfg.soft_labels, rating_stats=nll,
                   extra=hashlib.sha256(json.dumps(extra_pairs or []).encode()).hexdigest()[:16])

        def frame() -> pl.DataFrame:
            df = pair_frame(workspace, name, split, ties=cfg.ties, soft_labels=cfg.soft_labels).select(
                "chosen_id", "rejected_id", "chosen_context", "chosen_response", "rejected_context", "rejected_response", "strength", "label")
            if extra_pairs:
                adv = pl.DataFrame([{"chosen_id": None, "rejected_id": None, "chosen_context": ctx, "chosen_response": good, "rejected_context": ctx,
                                     "rejected_response": bad, "strength": 1.0, "label": 1.0} for ctx, good, bad in extra_pairs])
                df = pl.concat([df, adv.cast(df.schema)], how="vertical")  # (the contexts as the dataset's turn structs)
            if nll:
                st = rating_frame(workspace, name)
                if st.height == 0:
                    raise UsageError(f"--nll_weight needs per-annotator helpfulness ratings in {name!r}; it has none")
                for s in ("chosen", "rejected"):  # a response without ratings: (0, 0, 0), which the NLL term weighs 0
                    df = df.join(st.rename(lambda c, s=s: f"{s}_{c}"), left_on=f"{s}_id", right_on=f"{s}_response_id", how="left", maintain_order="left")
                df = df.with_columns(pl.concat_list([pl.col(f"{s}_{c}").fill_null(0.0) for s in ("chosen", "rejected") for c in ("n", "mean", "var")]).alias("rating_stats"))
            return df.drop("chosen_id", "rejected_id", *[f"{s}_{c}" for s in ("chosen", "rejected") for c in ("n", "mean", "var") if f"{s}_{c}" in df.columns])
    else:
        key.update(attributes=list(cfg.attributes))

        def frame() -> pl.DataFrame:
            return rated_frame(workspace, name, split, attributes=tuple(cfg.attributes)).select("context", "response", "targets")
    return tokenized(cache_root, key, frame, tokenizer, cfg.max_length, cfg.dataset_num_proc)
