"""Inter-annotator agreement for one variable (a rating attribute, or preference strength), with
bootstrap confidence intervals over items.

Point estimates come from the field's libraries: quadratic-weighted Cohen's kappa from
scikit-learn (averaged over annotator pairs that share items), Krippendorff's alpha from
`krippendorff` (interval and ordinal), Fleiss' kappa from statsmodels, Spearman from scipy.
The bootstrap is vectorised: every statistic is a function of per-item count tables (value counts
per item; joint value counts per annotator pair), so a resample of items is a weighted sum of those
tables, W @ C, computed for a block of resamples at once. tests/test_agreement.py checks it equals
the libraries on explicit resamples."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

ANON_PREFIX = "anon:"


def stat(value, ci: tuple[float, float] | None = None, reason: str | None = None) -> dict:
    """The contract's statistic object: {value, ci_low, ci_high} or {value: null, reason}."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return {"value": None, "reason": reason or "not computable"}
    out = {"value": float(value), "ci_low": None, "ci_high": None}
    if ci is not None and all(np.isfinite(ci)):
        out["ci_low"], out["ci_high"] = float(ci[0]), float(ci[1])
    return out


def bootstrap_ci(samples: np.ndarray, point: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """Bias-corrected percentile interval (Efron 1981): the percentiles shift by the share of
    resamples below the point estimate. When nearly all resamples fall on one side (a statistic
    with strong small-sample bias, e.g. kappa averaged over annotator pairs that share a dozen
    items) the correction degenerates; then the plain percentile interval is widened to reach
    the estimate, so the interval always contains it."""
    from scipy.stats import norm

    samples = samples[np.isfinite(samples)]
    if samples.size == 0 or not np.isfinite(point):
        return None
    below = (np.sum(samples < point) + 0.5 * np.sum(samples == point)) / samples.size
    tail = (1 - confidence) / 2
    if tail < below < 1 - tail:
        z0 = norm.ppf(below)
        z = norm.ppf(1 - tail)
        lo, hi = norm.cdf(2 * z0 - z) * 100, norm.cdf(2 * z0 + z) * 100
    else:
        lo, hi = tail * 100, (1 - tail) * 100
    ci_lo, ci_hi = float(np.percentile(samples, lo)), float(np.percentile(samples, hi))
    return min(ci_lo, point), max(ci_hi, point)


def resample_weights(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """b bootstrap resamples of n items as count vectors (b x n): how often each item is drawn."""
    idx = rng.integers(0, n, size=(b, n))
    offsets = (np.arange(b) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


# --- statistics from count tables (vectorised over resamples) ---------------------------------
def alpha_from_coincidences(o: np.ndarray, domain: np.ndarray, level: str) -> np.ndarray:
    """Krippendorff's alpha from coincidence matrices o (b x V x V), as in `krippendorff`."""
    n_v = o.sum(axis=1)  # (b, V)
    n = n_v.sum(axis=1)  # (b,)
    e = (n_v[:, :, None] * n_v[:, None, :] - n_v[:, :, None] * np.eye(len(domain))[None]) / (n - 1)[:, None, None]
    if level == "interval":
        d = np.broadcast_to(((domain[:, None] - domain[None, :]) ** 2)[None], o.shape)
    elif level == "ordinal":
        cs = np.concatenate([np.zeros((n_v.shape[0], 1)), np.cumsum(n_v, axis=1)], axis=1)
        i = np.arange(len(domain))
        lo, hi = np.minimum(i[:, None], i[None, :]), np.maximum(i[:, None], i[None, :])
        between = cs[:, hi + 1] - cs[:, lo]  # sum of n_g for g in [lo, hi]
        d = (between - (n_v[:, i][:, :, None] + n_v[:, i][:, None, :]) / 2) ** 2
    else:
        raise ValueError(f"level must be interval or ordinal, got {level!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (o * d).sum(axis=(1, 2)) / (e * d).sum(axis=(1, 2))


def unit_coincidences(value_counts: np.ndarray) -> np.ndarray:
    """Per-unit coincidence contributions (n x V*V); units with < 2 values contribute nothing."""
    v = value_counts.shape[1]
    m = value_counts.sum(axis=1)
    c = value_counts[:, :, None] * value_counts[:, None, :] - value_counts[:, :, None] * np.eye(v)[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where((m >= 2)[:, None, None], c / np.maximum(m - 1, 1)[:, None, None], 0.0)
    return c.reshape(len(value_counts), v * v)


def kappa_from_confusion(o: np.ndarray) -> np.ndarray:
    """Quadratic-weighted Cohen's kappa from confusion matrices (b x K x K), as scikit-learn:
    weights (i - j)^2 on label indices, expected = outer(marginals) / n."""
    k = o.shape[-1]
    i = np.arange(k)
    w = (i[:, None] - i[None, :]) ** 2
    n = o.sum(axis=(1, 2))
    expected = o.sum(axis=2)[:, :, None] * o.sum(axis=1)[:, None, :] / np.where(n > 0, n, np.nan)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (w * o).sum(axis=(1, 2)) / (w * expected).sum(axis=(1, 2))


def spearman_from_confusion(o: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """Spearman's rho of the paired values a joint table (b x K x K) describes: the Pearson
    correlation of mid-ranks (ties share their average rank), as scipy.stats.spearmanr."""
    ra_n, rb_n = o.sum(axis=2), o.sum(axis=1)  # (b, K) marginal counts
    ra = np.cumsum(ra_n, axis=1) - ra_n + (ra_n + 1) / 2
    rb = np.cumsum(rb_n, axis=1) - rb_n + (rb_n + 1) / 2
    n = o.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mb = (ra_n * ra).sum(1) / n, (rb_n * rb).sum(1) / n
        cov = (o * (ra - ma[:, None])[:, :, None] * (rb - mb[:, None])[:, None, :]).sum(axis=(1, 2))
        va = (ra_n * (ra - ma[:, None]) ** 2).sum(1)
        vb = (rb_n * (rb - mb[:, None]) ** 2).sum(1)
        return cov / np.sqrt(va * vb)


def fleiss_from_counts(value_counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fleiss' kappa (all units with the same number of raters) under unit weights (b x n)."""
    m = value_counts.sum(axis=1)[0]
    p_i = ((value_counts**2).sum(axis=1) - m) / (m * (m - 1))
    tot = weights.sum(axis=1)
    p_bar = weights @ p_i / tot
    p_j = (weights @ value_counts) / (tot * m)[:, None]
    p_e = (p_j**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (p_bar - p_e) / (1 - p_e)


@dataclass
class Agreement:
    """Agreement on one variable. `fit(long)` takes rows (item, annotator, value); results in
    `results_` (the contract's statistic objects) and `n_items_`, `n_annotators_`."""

    n_bootstrap: int = 1000
    confidence: float = 0.95
    min_shared: int = 5  # annotator pairs need this many shared items for kappa / Spearman
    seed: int = 0
    block: int = 100  # resamples computed at once (memory: block x items floats)
    results_: dict = field(default_factory=dict, init=False)
    n_items_: int = field(default=0, init=False)
    n_annotators_: int = field(default=0, init=False)
    n_pairs_: int = field(default=0, init=False)
    anonymous_: bool = field(default=False, init=False)

    def fit(self, long: pl.DataFrame, item: str = "item", annotator: str = "annotator", value: str = "value") -> "Agreement":
        df = long.select(pl.col(item).alias("item"), pl.col(annotator).alias("annotator"), pl.col(value).cast(pl.Float64).alias("value")).drop_nulls()
        # one value per annotator and item (a repeated annotation keeps the first), as in a
        # coders x units reliability matrix
        df = df.unique(subset=["item", "annotator"], keep="first", maintain_order=True)
        self.anonymous_ = bool(df.height) and bool(df["annotator"].str.starts_with(ANON_PREFIX).all())
        domain = np.sort(df["value"].unique().to_numpy())
        df = df.with_columns(
            pl.col("item").cast(pl.Categorical).to_physical().cast(pl.Int64).alias("_u"),
            pl.Series("_v", np.searchsorted(domain, df["value"].to_numpy()), dtype=pl.Int64),
        )
        # dense unit index in order of first appearance
        first = df.select("_u").unique(maintain_order=True)["_u"]
        remap = np.full(int(first.max()) + 1 if len(first) else 0, -1)
        remap[first.to_numpy()] = np.arange(len(first))
        u_idx = remap[df["_u"].to_numpy()] if len(first) else np.array([], int)
        df = df.with_columns(pl.Series("_u", u_idx, dtype=pl.Int64))
        units = first
        self.n_items_ = len(units)
        v_idx = df["_v"].to_numpy()
        if self.anonymous_:
            per_item = df.group_by("item").len()["len"]
            self.n_annotators_ = int(per_item.max()) if per_item.len() else 0
        else:
            self.n_annotators_ = df["annotator"].n_unique()
        res: dict[str, dict] = {}
        vc = np.zeros((len(units), len(domain)))
        np.add.at(vc, (u_idx, v_idx), 1.0)
        multi = vc.sum(axis=1) >= 2
        if len(domain) < 2 or not multi.any():
            why = "fewer than two distinct values" if len(domain) < 2 else "no item has two or more ratings"
            for k in ("alpha_interval", "alpha_ordinal", "fleiss_kappa", "kappa_quadratic", "spearman"):
                res[k] = stat(None, reason=why)
            self.results_ = res
            return self
        rng = np.random.default_rng(self.seed)
        boot: dict[str, list[np.ndarray]] = {}
        point = self._points(df, vc, domain, res)
        pairs = self._annotator_pairs(df, len(units), len(domain)) if not self.anonymous_ else None
        coinc = unit_coincidences(vc)
        same_m = len(np.unique(vc.sum(axis=1))) == 1 and vc.sum(axis=1)[0] >= 2
        for start in range(0, self.n_bootstrap, self.block):
            b = min(self.block, self.n_bootstrap - start)
            w = resample_weights(rng, len(units), b)
            o = (w @ coinc).reshape(b, len(domain), len(domain))
            for level in ("interval", "ordinal"):
                boot.setdefault(f"alpha_{level}", []).append(alpha_from_coincidences(o, domain, level))
            if same_m:
                boot.setdefault("fleiss_kappa", []).append(fleiss_from_counts(vc, w))
            if pairs is not None:
                # every pair's confusion table under every resample in one sparse product
                k = len(domain)
                conf = np.asarray(pairs.T @ w.T).T.reshape(b, -1, k, k)  # (b, pairs, K, K)
                flat = conf.reshape(-1, k, k)
                kap = kappa_from_confusion(flat).reshape(b, -1)
                rho = spearman_from_confusion(flat, domain).reshape(b, -1)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    boot.setdefault("kappa_quadratic", []).append(np.nanmean(kap, axis=1))
                    boot.setdefault("spearman", []).append(np.nanmean(rho, axis=1))
        for key, value in point.items():
            if key in res:
                continue
            samples = np.concatenate(boot[key]) if key in boot else np.array([])
            res[key] = stat(value, bootstrap_ci(samples, value, self.confidence))
        self.results_ = res
        return self

    # --- point estimates from the libraries ----------------------------------------------------
    def _points(self, df: pl.DataFrame, vc: np.ndarray, domain: np.ndarray, res: dict) -> dict:
        import krippendorff

        point = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for level in ("interval", "ordinal"):
                point[f"alpha_{level}"] = float(krippendorff.alpha(value_counts=vc, value_domain=domain, level_of_measurement=level))
        m = vc.sum(axis=1)
        if len(np.unique(m)) == 1 and m[0] >= 2:
            from statsmodels.stats.inter_rater import fleiss_kappa

            point["fleiss_kappa"] = float(fleiss_kappa(vc, method="fleiss"))
        else:
            res["fleiss_kappa"] = stat(None, reason=f"items have different numbers of raters ({int(m.min())}-{int(m.max())}); Fleiss' kappa needs the same number")
        if self.anonymous_:
            why = "annotator identities are not in the source (anonymous votes): pairwise statistics need them"
            res["kappa_quadratic"] = stat(None, reason=why)
            res["spearman"] = stat(None, reason=why)
            return point
        kappas, rhos = self._pairwise_points(df, domain)
        if kappas:
            point["kappa_quadratic"] = float(np.mean(kappas))
        else:
            res["kappa_quadratic"] = stat(None, reason=f"no annotator pair shares {self.min_shared}+ items with varied labels")
        if rhos:
            point["spearman"] = float(np.mean(rhos))
        else:
            res["spearman"] = stat(None, reason=f"no annotator pair shares {self.min_shared}+ items with varied labels")
        self.n_pairs_ = len(kappas)
        return point

    def _pair_frames(self, df: pl.DataFrame) -> list:
        """(annotator a, annotator b, rows with item/value/value_b) per annotator pair that shares
        at least min_shared items. Computed once per fit (on integer codes: joins on text are slow)."""
        if getattr(self, "_pairs_cache", None) is not None and self._pairs_cache[0] is df:
            return self._pairs_cache[1]
        per = df.select("_u", "_v", "value", "annotator", pl.col("annotator").rank("dense").cast(pl.Int32).alias("_a"))
        joined = per.join(per.select("_u", "_a", "annotator", "value", "_v"), on="_u", suffix="_b").filter(pl.col("_a") < pl.col("_a_b"))
        counts = joined.group_by("_a", "_a_b").len().filter(pl.col("len") >= self.min_shared)
        joined = joined.join(counts.select("_a", "_a_b"), on=["_a", "_a_b"]).sort("_a", "_a_b", "_u")
        out = [(g["annotator"][0], g["annotator_b"][0], g) for _, g in joined.group_by(["_a", "_a_b"], maintain_order=True)]
        self._pairs_cache = (df, out)
        return out

    def _pairwise_points(self, df: pl.DataFrame, domain: np.ndarray) -> tuple[list[float], list[float]]:
        """Kappa per pair from scikit-learn; Spearman from each pair's joint table (mid-ranks),
        which equals scipy.stats.spearmanr (tests/test_agreement.py) at a fraction of the calls."""
        from sklearn.metrics import cohen_kappa_score

        kappas, tables = [], []
        k = len(domain)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _, _, g in self._pair_frames(df):
                ya, yb = g["value"].to_numpy(), g["value_b"].to_numpy()
                kap = cohen_kappa_score(ya, yb, labels=domain, weights="quadratic")
                if np.isfinite(kap):
                    kappas.append(float(kap))
                cells = g["_v"].to_numpy() * k + g["_v_b"].to_numpy()
                tables.append(np.bincount(cells, minlength=k * k).reshape(k, k).astype(float))
            rho = spearman_from_confusion(np.array(tables), domain) if tables else np.array([])
        return kappas, [float(r) for r in rho if np.isfinite(r)]

    def _annotator_pairs(self, df: pl.DataFrame, n_units: int, k: int):
        """Sparse (units x pairs*K*K) matrix: unit u has a 1 in pair p's (value a, value b) cell
        when both annotators of p rated u. W @ it gives every pair's confusion table per resample."""
        rows, cols = [], []
        n_pairs = 0
        for _, _, g in self._pair_frames(df):
            rows.append(g["_u"].to_numpy())
            cols.append(n_pairs * k * k + g["_v"].to_numpy() * k + g["_v_b"].to_numpy())
            n_pairs += 1
        if n_pairs == 0:
            return None
        r, c = np.concatenate(rows), np.concatenate(cols)
        return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n_units, n_pairs * k * k))
