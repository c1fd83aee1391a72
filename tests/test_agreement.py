"""Agreement statistics equal scikit-learn's, krippendorff's, statsmodels' and scipy's on the same
matrices (1e-9), including on explicit bootstrap resamples of the vectorised code."""

from __future__ import annotations

import krippendorff
import numpy as np
import polars as pl
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa

from helpsteer.agreement import (
    Agreement,
    alpha_from_coincidences,
    fleiss_from_counts,
    kappa_from_confusion,
    spearman_from_confusion,
    unit_coincidences,
)


def _ratings(seed=0, n_items=80, n_ann=6, per_item=(2, 4), anon=False):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_items):
        truth = rng.integers(0, 5)
        for k in rng.choice(n_ann, rng.integers(per_item[0], per_item[1] + 1), replace=False):
            v = int(np.clip(truth + rng.integers(-1, 2), 0, 4))
            rows.append((f"i{i}", f"anon:i{i}:{k}" if anon else f"a{k}", float(v)))
    return pl.DataFrame(rows, schema=["item", "annotator", "value"], orient="row")


def _value_counts(df):
    units = df["item"].unique(maintain_order=True).to_list()
    domain = np.sort(df["value"].unique().to_numpy())
    vc = np.zeros((len(units), len(domain)))
    for it, v in zip(df["item"], df["value"]):
        vc[units.index(it), np.searchsorted(domain, v)] += 1
    return units, domain, vc


def test_point_estimates_equal_the_libraries():
    df = _ratings()
    ag = Agreement(n_bootstrap=200, min_shared=3).fit(df)
    units, domain, vc = _value_counts(df)
    matrix = df.pivot(on="annotator", index="item", values="value").drop("item").to_numpy().T
    for level in ("interval", "ordinal"):
        want = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
        assert abs(ag.results_[f"alpha_{level}"]["value"] - want) < 1e-9
    kap, rho = [], []
    anns = sorted(df["annotator"].unique())
    for i, a in enumerate(anns):
        for b in anns[i + 1:]:
            ja = df.filter(pl.col("annotator") == a).join(df.filter(pl.col("annotator") == b), on="item").sort("item")
            if ja.height >= 3:
                kap.append(cohen_kappa_score(ja["value"], ja["value_right"], labels=domain, weights="quadratic"))
                rho.append(spearmanr(ja["value"], ja["value_right"]).statistic)
    assert abs(ag.results_["kappa_quadratic"]["value"] - np.nanmean(kap)) < 1e-9
    assert abs(ag.results_["spearman"]["value"] - np.nanmean(rho)) < 1e-9
    r = ag.results_["alpha_interval"]
    assert r["ci_low"] < r["value"] < r["ci_high"]
    assert ag.results_["fleiss_kappa"]["value"] is None and "different numbers" in ag.results_["fleiss_kappa"]["reason"]


def test_vectorised_bootstrap_equals_libraries_on_resamples():
    df = _ratings(seed=1)
    units, domain, vc = _value_counts(df)
    rng = np.random.default_rng(5)
    coinc = unit_coincidences(vc)
    a, b = "a0", "a1"
    pair = df.filter(pl.col("annotator") == a).join(df.filter(pl.col("annotator") == b), on="item")
    for _ in range(5):
        idx = rng.integers(0, len(units), len(units))
        w = np.bincount(idx, minlength=len(units)).astype(float)[None]
        o = (w @ coinc).reshape(1, len(domain), len(domain))
        for level in ("interval", "ordinal"):
            want = krippendorff.alpha(value_counts=vc[idx], value_domain=domain, level_of_measurement=level)
            assert abs(alpha_from_coincidences(o, domain, level)[0] - want) < 1e-9
        # kappa and Spearman of the pair on the resampled items
        sel = [units.index(i) for i in pair["item"]]
        ya = np.concatenate([[v] * int(w[0, s]) for v, s in zip(pair["value"], sel)])
        yb = np.concatenate([[v] * int(w[0, s]) for v, s in zip(pair["value_right"], sel)])
        conf = np.zeros((1, len(domain), len(domain)))
        for x, y in zip(ya, yb):
            conf[0, np.searchsorted(domain, x), np.searchsorted(domain, y)] += 1
        assert abs(kappa_from_confusion(conf)[0] - cohen_kappa_score(ya, yb, labels=domain, weights="quadratic")) < 1e-9
        assert abs(spearman_from_confusion(conf, domain)[0] - spearmanr(ya, yb).statistic) < 1e-9


def test_fleiss_when_every_item_has_the_same_raters():
    df = _ratings(seed=2, per_item=(3, 3))
    ag = Agreement(n_bootstrap=100).fit(df)
    _, domain, vc = _value_counts(df)
    assert abs(ag.results_["fleiss_kappa"]["value"] - fleiss_kappa(vc)) < 1e-9
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(vc), len(vc))
    w = np.bincount(idx, minlength=len(vc)).astype(float)[None]
    assert abs(fleiss_from_counts(vc, w)[0] - fleiss_kappa(vc[idx])) < 1e-9


def test_anonymous_votes_get_alpha_but_no_kappa():
    ag = Agreement(n_bootstrap=50).fit(_ratings(seed=3, anon=True))
    assert ag.results_["alpha_interval"]["value"] is not None
    assert ag.results_["kappa_quadratic"]["value"] is None and "anonymous" in ag.results_["kappa_quadratic"]["reason"]


def test_degenerate_inputs_give_reasons_not_errors():
    one = pl.DataFrame({"item": ["x", "y"], "annotator": ["a", "b"], "value": [1.0, 2.0]})
    ag = Agreement(n_bootstrap=10).fit(one)
    assert ag.results_["alpha_interval"]["value"] is None and "two or more" in ag.results_["alpha_interval"]["reason"]
    same = pl.DataFrame({"item": ["x", "x"], "annotator": ["a", "b"], "value": [1.0, 1.0]})
    assert Agreement(n_bootstrap=10).fit(same).results_["alpha_interval"]["reason"] == "fewer than two distinct values"


def test_spearman_point_estimate_equals_scipy():
    df = _ratings(seed=7, n_items=60, n_ann=4, per_item=(3, 4))
    ag = Agreement(n_bootstrap=0, min_shared=3).fit(df)
    rhos = []
    anns = sorted(df["annotator"].unique())
    for i, a in enumerate(anns):
        for b in anns[i + 1:]:
            ja = df.filter(pl.col("annotator") == a).join(df.filter(pl.col("annotator") == b), on="item")
            if ja.height >= 3:
                r = spearmanr(ja["value"], ja["value_right"]).statistic
                if np.isfinite(r):
                    rhos.append(r)
    assert abs(ag.results_["spearman"]["value"] - np.mean(rhos)) < 1e-9
