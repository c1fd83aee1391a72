"""rm_training/evaluate.py: calibration that does not depend on which response a source puts
first, one evaluation file per dataset (with its name and hash) plus eval.json for the latest, and
statistics that cannot exist reported as n/a with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import run_cli, shared, synthetic_workspace, write_jsonl

from rm_training.evaluate import calibration


def test_calibration_of_an_uninformative_model_on_gold_pairs():
    """Gold data often stores the chosen response as A: y = 1 everywhere. Oriented as stored, an
    uninformative p = 0.5 gets ECE 0.5 (= 1 - mean p); on both orientations it is calibrated."""
    p, y = np.full(200, 0.5), np.ones(200)
    assert calibration(p, y)["ece"] == pytest.approx(0.5)
    both = calibration(p, y, both_orientations=True)
    assert both["ece"] == pytest.approx(0.0) and both["brier"] == pytest.approx(0.25) and both["orientation"].startswith("both")
    # a confident, always-right model stays perfect either way; a hand computation for a mixed case
    assert calibration(np.full(10, 1.0), np.ones(10), both_orientations=True)["ece"] == pytest.approx(0.0)
    p2, y2 = np.array([0.8, 0.8, 0.3]), np.array([1.0, 0.0, 1.0])
    got = calibration(p2, y2, both_orientations=True)
    # six points: (0.8,1) (0.8,0) (0.3,1) (0.2,0) (0.2,1) (0.7,0); bins [0.2]x2 mean y 0.5, [0.3] y 1, [0.7] y 0, [0.8]x2 y 0.5
    want = (2 * abs(0.2 - 0.5) + abs(0.3 - 1) + abs(0.7 - 0) + 2 * abs(0.8 - 0.5)) / 6
    assert got["ece"] == pytest.approx(want)
    assert got["brier"] == pytest.approx(np.mean((np.r_[p2, 1 - p2] - np.r_[y2, 1 - y2]) ** 2))


@pytest.fixture(scope="module")
def run_ws(tmp_path_factory):
    ws = synthetic_workspace(tmp_path_factory.mktemp("ev"), seed=6, n_prompts=60)
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--max_steps", "3", "--max_length", "64",
                   "--save_strategy", "no", "--out", "bt") == 0
    return ws


def test_one_evaluation_per_dataset_and_eval_json_is_the_latest(run_ws, tmp_path):
    run = run_ws / "runs" / "bt"
    gold = write_jsonl(tmp_path / "Natural" / "dataset.jsonl", [
        {"prompt": f"question {i}", "chosen": f"a right answer {i}", "rejected": f"wrong {i}"} for i in range(12)])
    assert run_cli("eval", "--model", run, "--workspace", run_ws, "--name", "pref") == 0
    assert run_cli("eval", "--model", run, "--data", gold, "--format", "pairs") == 0
    first = json.loads((run / "eval" / "pref.json").read_text())
    second = json.loads((run / "eval" / "Natural-dataset.json").read_text())
    latest = json.loads((run / "eval.json").read_text())
    from helpsteer.containers import file_sha256
    from rm_training.evaluate import dataset_hash

    assert first["dataset"] == "pref" and first["dataset_sha256"] == dataset_hash(run_ws, "pref") and first["n_pairs"] > 0
    assert second["dataset"] == "Natural-dataset" and second["dataset_sha256"] == file_sha256(gold) and second["n_pairs"] == 12
    assert latest["evaluation_file"] == "eval/Natural-dataset.json" and latest["accuracy"] == second["accuracy"]
    assert (run / "eval" / "pref_pairs.parquet").exists() and (run / "eval" / "Natural-dataset_pairs.parquet").exists()
    # gold pairs (A always chosen): calibration on both orientations, and it says so
    assert second["calibration"]["orientation"].startswith("both")


def test_strong_diverging_rate_is_na_when_votes_give_only_a_direction(tmp_path):
    path = shared("pandalm-testset", "data", "testset-v1.json")
    ws = tmp_path / "ws"
    assert run_cli("ingest", path, "--workspace", ws, "--name", "pandalm") == 0
    assert run_cli("analyze", "--workspace", ws, "--name", "pandalm") == 0
    prefs = json.loads((ws / "datasets" / "pandalm" / "analysis" / "agreement.json").read_text())["preferences"]
    strong = prefs["diverging_rate_strong"]
    assert strong["value"] is None
    assert strong["reason"] == "needs votes with |strength| >= 2; this dataset's votes reach only 1 (direction only)"
    assert prefs["diverging_rate"]["value"] is not None  # the plain rate exists


# --- the polars _pairwise against the row-loop implementation it replaced (kept here as the oracle) ---
# (issue 22: same eval.json and per-pair parquet; P(A better) now comes from scoring.Scorer, whose
# scipy expit / sigma path may differ from the old hand-written formulas in the last bit only)
def _rowwise_pairwise(res: dict, workspace: Path, name: str, reward: dict, detail: dict | None = None, log_var: dict | None = None,
              lengths: dict | None = None) -> None:
    from helpsteer import store
    from helpsteer.labels import pair_labels
    from rm_training.evaluate import (
        calibration,
        length_baselines,
        rewardbench2_items,
        rewardbench2_scores,
        rewardbench_sections,
    )

    labels = pair_labels(workspace, name)
    prefs = store.load_table(workspace, name, "preferences", ["pair_id", "style_a", "style_b"]).unique("pair_id", keep="first")
    labels = labels.join(prefs, on="pair_id", how="left")
    rows = [r for r in labels.iter_rows(named=True) if r["response_a_id"] in reward and r["response_b_id"] in reward and r["strength"] is not None]
    res["n_pairs"] = sum(r["strength"] != 0 for r in rows)
    res["n_ties"] = sum(r["strength"] == 0 for r in rows)
    if not rows:
        res["accuracy"] = None
        return
    d = np.array([reward[r["response_a_id"]] - reward[r["response_b_id"]] for r in rows])  # r_A - r_B
    s = np.array([r["strength"] for r in rows])
    decided = s != 0
    correct = (np.sign(-s) == np.sign(d)) & decided  # strength < 0: A better
    res["accuracy"] = float(correct[decided].mean()) if decided.any() else None
    if res["n_ties"]:
        res["ties"] = {"n": res["n_ties"], "mean_abs_margin": float(np.abs(d[~decided]).mean())}
    per = {}
    for sub in sorted({r["subset"] for r in rows if r["subset"] is not None}):
        m = np.array([r["subset"] == sub for r in rows]) & decided
        if m.any():
            per[sub] = {"n": int(m.sum()), "accuracy": float(correct[m].mean())}
    if lengths is not None and decided.any():
        # lengths (characters) of the chosen and the rejected side of each decided pair
        len_a = np.array([lengths[r["response_a_id"]] for r in rows])
        len_b = np.array([lengths[r["response_b_id"]] for r in rows])
        chosen_len, rejected_len = np.where(s < 0, len_a, len_b), np.where(s < 0, len_b, len_a)
        res["length_baselines"] = length_baselines(chosen_len[decided], rejected_len[decided], correct[decided])
        for sub, entry in per.items():
            m = np.array([r["subset"] == sub for r in rows]) & decided
            lb = length_baselines(chosen_len[m], rejected_len[m], correct[m])
            entry.update({k: lb[k] for k in ("longer_wins", "shorter_wins", "length_controlled_accuracy")})
    if per:
        res["per_subset"] = per
        res.update({"rewardbench": rb} if (rb := rewardbench_sections(per)) else {})
    items = rewardbench2_items(rows, reward)
    if items:
        res["rewardbench2"] = rewardbench2_scores(items)
        res["n_rewardbench2_items"] = len(items)
        if lengths is not None:
            # the same best-of-N (and Ties) scoring with the response length as the reward
            by_len = rewardbench2_items(rows, {k: float(v) for k, v in lengths.items()})
            res["rewardbench2_length_baselines"] = {
                "longest_wins": rewardbench2_scores(by_len),
                "shortest_wins": rewardbench2_scores([{**it, "scores": [-x for x in it["scores"]]} for it in by_len])}
    # calibration of P(A better) against the label (a tie is 0.5): sigmoid(r_A - r_B) for BT-style
    # models, Thurstonian Phi((mu_A - mu_B) / sqrt(var_A + var_B)) for mean-variance models
    if log_var is not None:
        from scipy.stats import norm

        sd = np.sqrt(np.array([np.exp(np.clip(log_var[r["response_a_id"]], -30, 30)) + np.exp(np.clip(log_var[r["response_b_id"]], -30, 30)) for r in rows]))
        z = d / sd
        p = norm.cdf(z)
    else:
        sd, z = None, d
        p = 1 / (1 + np.exp(-np.clip(d, -60, 60)))
    y = np.where(s < 0, 1.0, np.where(s > 0, 0.0, 0.5))
    res["calibration"] = calibration(p, y, both_orientations=True)
    styles = [(r["style_a"], r["style_b"]) for r in rows]
    if any(a is not None for a, _ in styles):
        mat = np.full((3, 3), np.nan)
        for i in range(3):
            for j in range(3):
                # chosen style i vs rejected style j (RM-Bench pairs are gold: A = chosen)
                m = np.array([a == i and b == j for a, b in styles]) & decided
                if m.any():
                    mat[i, j] = correct[m].mean()
        iu, il = np.triu_indices(3, 1), np.tril_indices(3, -1)
        res["rm_bench"] = {"hard": float(np.nanmean(mat[iu])), "normal": float(np.nanmean(np.diag(mat))), "easy": float(np.nanmean(mat[il])),
                           "matrix": [[None if np.isnan(x) else float(x) for x in row] for row in mat]}
    ana = store.require(workspace, name) / "analysis" / "pairs.parquet"
    f = {}
    if ana.exists():
        flags = pl.read_parquet(ana, columns=["pair_id", "diverging", "unanimous"])
        f = {r["pair_id"]: r for r in flags.iter_rows(named=True)}
        for key in ("unanimous", "diverging"):
            m = np.array([bool(f.get(r["pair_id"], {}).get(key)) for r in rows]) & decided
            res[f"{key}_accuracy"] = float(correct[m].mean()) if m.any() else None
            res[f"n_{key}"] = int(m.sum())
        div = np.array([bool(f.get(r["pair_id"], {}).get("diverging")) for r in rows])
        una = np.array([bool(f.get(r["pair_id"], {}).get("unanimous")) for r in rows])
        m = div | una
        if m.any() and div[m].any() and una[m].any():
            from sklearn.metrics import roc_auc_score

            scores = {"divergence_auroc": -np.abs(z[m]), "divergence_auroc_margin": -np.abs(d[m]),
                      **({"divergence_auroc_sigma": sd[m]} if sd is not None else {})}
            res.update({k: float(roc_auc_score(div[m], v)) for k, v in scores.items()})
    if detail is not None:
        detail["pairs"] = pl.DataFrame({
            "pair_id": [r["pair_id"] for r in rows], "subset": [r["subset"] for r in rows],
            "reward_a": [float(reward[r["response_a_id"]]) for r in rows], "reward_b": [float(reward[r["response_b_id"]]) for r in rows],
            "strength": s.astype(float), "margin": d.astype(float), "correct": correct,
            "diverging": [f.get(r["pair_id"], {}).get("diverging") for r in rows], "unanimous": [f.get(r["pair_id"], {}).get("unanimous") for r in rows],
        }, schema_overrides={"subset": pl.Utf8, "diverging": pl.Boolean, "unanimous": pl.Boolean})


def _fake_scorer(objective: str, weights):
    from rm_training.scoring import Scorer

    sc = Scorer.__new__(Scorer)  # the pair functions need only the objective and the weights
    sc.objective, sc.weights = objective, np.asarray(weights, dtype=np.float64)
    return sc


def _same(got, want, path="res"):
    assert type(got) is type(want) or isinstance(got, float) and isinstance(want, float), f"{path}: {got!r} vs {want!r}"
    if isinstance(want, dict):
        assert list(got) == list(want), f"{path}: keys {list(got)} vs {list(want)}"
        for k in want:
            _same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15, nan_ok=True), path
    else:
        assert got == want, path


@pytest.fixture(scope="module")
def eval_sets(tmp_path_factory):
    """Workspaces with ties and an analysis (synthetic HelpSteer2 preferences), RewardBench v1 subsets,
    an RM-Bench style matrix and RewardBench 2 items (Ties included)."""
    from test_rewardbench2 import ITEMS

    from helpsteer.synth import SynthConfig, write_synthetic

    root = tmp_path_factory.mktemp("pw")
    write_synthetic(SynthConfig(seed=6, n_prompts=40), root / "syn")
    ws = root / "ws"
    assert run_cli("ingest", root / "syn" / "helpsteer2" / "preference" / "preference.jsonl.gz", "--workspace", ws, "--name", "pref") == 0
    assert run_cli("analyze", "--workspace", ws, "--name", "pref") == 0
    subsets = ["alpacaeval-easy", "hep-cpp", "math-prm", "donotanswer", "other"]
    rb = write_jsonl(root / "rb.jsonl", [{"prompt": f"q{i}", "chosen": "c" * (i % 7 + 1), "rejected": "r" * (i % 5 + 1), "chosen_model": "m",
                                         "rejected_model": "n", "subset": subsets[i % 5], "id": i} for i in range(40)])
    assert run_cli("ingest", rb, "--workspace", ws, "--name", "rb", "--format", "rewardbench") == 0
    rmb = write_jsonl(root / "rmb.jsonl", [{"id": f"x{i}", "prompt": f"p{i}", "chosen": [f"good {i}", f"good {i} **bold**", f"good {i} long " * 3],
                                           "rejected": [f"bad {i}", f"bad {i} **b**", f"bad {i} long " * 4], "domain": "chat"} for i in range(6)])
    assert run_cli("ingest", rmb, "--workspace", ws, "--name", "rmb", "--format", "rm-bench") == 0
    assert run_cli("ingest", write_jsonl(root / "rb2.jsonl", ITEMS), "--workspace", ws, "--name", "rb2", "--format", "rewardbench2") == 0
    return ws


@pytest.mark.parametrize("name", ["pref", "rb", "rmb", "rb2"])
@pytest.mark.parametrize("objective", ["bt", "meanvar"])
def test_polars_pairwise_gives_the_row_loop_results(eval_sets, name, objective):
    from helpsteer import store
    from rm_training.evaluate import _pairwise

    resp = store.load_table(eval_sets, name, "responses", ["response_id", "response"])
    rng = np.random.default_rng(len(name))
    # rewards rounded to one decimal: equal rewards (zero margins) occur, as in real runs with ties
    logits = np.c_[np.round(rng.normal(0, 1, resp.height), 1), rng.normal(0, 1, resp.height)]
    weights = [1.0, 0.0] if objective == "meanvar" else [1.0]
    logits = logits if objective == "meanvar" else logits[:, :1]
    ids = resp["response_id"].to_list()
    reward, lengths = dict(zip(ids, logits @ weights)), dict(zip(ids, resp["response"].str.len_chars().to_list()))
    log_var = dict(zip(ids, logits[:, 1])) if objective == "meanvar" else None
    want, want_detail, got, got_detail = {}, {}, {}, {}
    _rowwise_pairwise(want, eval_sets, name, reward, want_detail, log_var, lengths)
    scored = pl.DataFrame({"response_id": ids, "reward": logits @ weights, "length": resp["response"].str.len_chars()})
    _pairwise(got, eval_sets, name, _fake_scorer(objective, weights), scored, logits, got_detail)
    assert want["n_pairs"] > 0
    key = {"pref": "divergence_auroc", "rb": "rewardbench", "rmb": "rm_bench", "rb2": "rewardbench2_length_baselines"}[name]
    assert key in want and (name != "pref" or want["n_ties"] > 0)  # the branch under test ran
    _same(json.loads(json.dumps(got)), json.loads(json.dumps(want)))
    g, w = got_detail["pairs"], want_detail["pairs"]
    assert g.schema == w.schema
    assert g.drop("margin").equals(w.drop("margin")) and np.allclose(g["margin"], w["margin"], rtol=0, atol=0)
