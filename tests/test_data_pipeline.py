"""The training data pipeline (rm_training/data.py `tokenized`): examples rendered and tokenized by
datasets .map into WS/.cache/tokenized/, equal to the list path, reused by a rerun, built once when
two builders race; and evaluation during training (--eval_strategy, --load_best_model_at_end)."""

from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_jsonl

from helpsteer.errors import UsageError
from rm_training import data
from rm_training.tokenizer import train_bpe


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    from helpsteer.synth import SynthConfig, write_synthetic

    root = tmp_path_factory.mktemp("pipeline")
    write_synthetic(SynthConfig(seed=5, n_prompts=60), root / "syn")
    ws = root / "ws"
    h2 = root / "syn" / "helpsteer2"
    assert run_cli("ingest", h2 / "preference" / "preference.jsonl.gz", "--workspace", ws, "--name", "pref") == 0
    assert run_cli("ingest", h2 / "train.jsonl.gz", h2 / "validation.jsonl.gz", "--workspace", ws, "--name", "hs2") == 0
    return ws


@pytest.fixture(scope="module")
def tok(ws):
    from rm_training.train import _texts_for_tokenizer

    return train_bpe(_texts_for_tokenizer(ws, "pref"), vocab_size=400)


def _cfg(objective: str, **kw):
    from rm_training.train import parse_config

    return parse_config(objective, None, [x for k, v in kw.items() for x in (f"--{k}", str(v))], Path("/tmp/unused-run"))


def _nan_equal(a, b) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def test_tokenized_pairs_equal_the_list_path(ws, tok, tmp_path, monkeypatch):
    """Same pairs in the same order, same labels and strengths, same left truncation and count,
    tokenized by two processes."""
    monkeypatch.setattr(data, "MIN_ROWS_PER_PROCESS", 10)
    cfg = _cfg("bt", ties="half", max_length=24, dataset_num_proc=2)
    ex = data.examples(ws, "pref", tok, "train", cfg, tmp_path / "cache")
    pairs = data.load_pairs(ws, "pref", tok, "train", ties="half")
    c_ids, n_c = data.tokenize(tok, pairs.chosen, 24)
    r_ids, n_r = data.tokenize(tok, pairs.rejected, 24)
    ds = ex.dataset
    assert not ex.reused and len(ds) == len(pairs) > 40
    assert ds["chosen_ids"][:] == c_ids and ds["rejected_ids"][:] == r_ids
    assert ds["label"][:] == pairs.label and ds["strength"][:] == pairs.strength
    assert 0.5 in pairs.label and 1.0 in pairs.label  # ties kept as half, the rest hard labels
    assert ds["length"][:] == [max(len(a), len(b)) for a, b in zip(c_ids, r_ids)]
    assert ex.truncated == n_c + n_r > 0
    assert all(len(x) <= 24 for x in ds["chosen_ids"][:])


def test_tokenized_rated_and_extra_pairs_equal_the_list_path(ws, tok, tmp_path):
    cfg = _cfg("regression", max_length=32)
    ex = data.examples(ws, "hs2", tok, "validation", cfg, tmp_path / "cache")
    rated = data.load_rated(ws, "hs2", tok, "validation")
    ids, cut = data.tokenize(tok, rated.text, 32)
    assert ex.dataset["input_ids"][:] == ids and ex.truncated == cut
    assert all(_nan_equal(a, b) for a, b in zip(ex.dataset["targets"][:], rated.targets))
    # adversarial pairs (rm_training/attack.py) follow the dataset's pairs with label 1
    ctx = [{"role": "user", "content": "What is 2 + 2?"}]
    bt = _cfg("bt", max_length=64)
    plain = data.examples(ws, "pref", tok, "train", bt, tmp_path / "cache").dataset
    adv = data.examples(ws, "pref", tok, "train", bt, tmp_path / "cache", extra_pairs=[(ctx, "4.", "5, surely.")]).dataset
    assert len(adv) == len(plain) + 1 and adv["label"][-1] == 1.0 and adv["strength"][-1] == 1.0
    assert adv["chosen_ids"][-1] == data.tokenize(tok, [data.render(tok, ctx, "4.")], 64)[0][0]


def test_meanvar_soft_labels_and_rating_stats_equal_the_list_path(ws, tok, tmp_path):
    """--nll_weight: each pair carries its chosen then rejected response's (n, mean, var) of
    helpfulness ratings, (0, 0, 0) for one without; soft labels from the votes."""
    h2 = ws.parent / "syn" / "helpsteer2"
    assert run_cli("ingest", h2 / "preference" / "preference.jsonl.gz", h2 / "disagreements" / "disagreements.jsonl.gz", "--workspace", ws, "--name", "both") == 0
    ex = data.examples(ws, "both", tok, None, _cfg("meanvar", nll_weight=0.1, max_length=32), tmp_path / "cache")
    pairs = data.load_pairs(ws, "both", tok, None, ties="half", soft_labels=True)
    st, z = data.rating_stats(ws, "both"), (0, 0.0, 0.0)
    want = [[float(x) for x in (*st.get(c, z), *st.get(r, z))] for c, r in zip(pairs.chosen_id, pairs.rejected_id)]
    assert ex.dataset["rating_stats"][:] == want and sum(w[0] > 0 for w in want) > len(want) / 2
    assert ex.dataset["label"][:] == pairs.label and any(0 < x < 1 for x in pairs.label)


def test_a_rerun_reuses_the_cache_and_reads_no_table(ws, tok, tmp_path, monkeypatch):
    cfg = _cfg("bt", max_length=48)
    first = data.examples(ws, "pref", tok, "train", cfg, tmp_path / "cache")
    # a builder killed mid-way leaves its temporary folder: the next build of that entry removes it
    (tmp_path / "cache" / f".tmp-{first.path.name}-999999").mkdir()
    shutil.rmtree(first.path)
    first = data.examples(ws, "pref", tok, "train", cfg, tmp_path / "cache")
    assert not first.reused and [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == [first.path.name]
    files = {p: p.stat().st_mtime_ns for p in first.path.rglob("*")}

    def no_read(*a, **k):
        raise AssertionError("a warm start must not build the examples again")

    monkeypatch.setattr(data, "pair_frame", no_read)
    again = data.examples(ws, "pref", tok, "train", cfg, tmp_path / "cache")
    assert again.reused and again.path == first.path and again.truncated == first.truncated
    assert {p: p.stat().st_mtime_ns for p in first.path.rglob("*")} == files  # untouched
    assert again.dataset["chosen_ids"][:] == first.dataset["chosen_ids"][:]
    # what changes the examples makes a new entry: the length, the label options, the tokenizer
    monkeypatch.undo()
    other = [data.examples(ws, "pref", tok, "train", _cfg("bt", max_length=40), tmp_path / "cache").path,
             data.examples(ws, "pref", tok, "train", _cfg("bt", max_length=48, ties="half"), tmp_path / "cache").path,
             data.examples(ws, "pref", train_bpe(["other words"] * 5, vocab_size=300), "train", cfg, tmp_path / "cache").path]
    assert len({first.path, *other}) == 4


def test_two_builders_at_once_build_one_entry(ws, tok, tmp_path, monkeypatch):
    """Under torchrun every rank asks for the same entry: one builds it, the others wait on its
    lock and map the finished files."""
    calls = []
    real = data.pair_frame

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(data, "pair_frame", counted)
    cfg = _cfg("bt", max_length=56)
    got = [None, None]

    def rank(i):
        got[i] = data.examples(ws, "pref", tok, "train", cfg, tmp_path / "cache")

    threads = [threading.Thread(target=rank, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(g.reused for g in got) == [False, True] and got[0].path == got[1].path
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp-")]


def _weights(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


def test_eval_during_training_keeps_the_best_checkpoint(ws, capsys):
    """--eval_strategy steps logs eval_accuracy on the validation split to metrics.jsonl; with
    --load_best_model_at_end the run's weights are those of the best evaluated checkpoint. A second
    run with the same data and tokenizer reuses the tokenized examples."""
    common = ["train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--max_length", "64", "--max_steps", "8",
              "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "1",
              "--logging_steps", "2", "--learning_rate", "0.003", "--load_best_model_at_end", "true"]
    assert run_cli(*common, "--out", "best") == 0
    assert "wrote tokenized examples" in capsys.readouterr().err
    run = ws / "runs" / "best"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval_accuracy"] for r in rows if "eval_accuracy" in r}
    assert sorted(evals) == [2, 4, 6, 8]
    assert all("eval_loss" in r for r in rows if "eval_accuracy" in r) and not any("eval_accuracy" in r and "accuracy" in r for r in rows)
    state = json.loads(next(run.glob("checkpoint-*/trainer_state.json")).read_text())
    best = Path(state["best_model_checkpoint"])
    assert state["best_metric"] == max(evals.values()) and int(best.name.split("-")[1]) == min(s for s, v in evals.items() if v == max(evals.values()))
    final, kept = _weights(run), _weights(best)
    assert final.keys() == kept.keys() and all(np.array_equal(final[k], kept[k]) for k in final)
    assert run_cli(*common[:-2], "--out", "again") == 0
    assert "reused tokenized examples" in capsys.readouterr().err


def test_regression_eval_logs_mae_per_attribute_and_picks_the_lowest(ws):
    assert run_cli("train", "--workspace", ws, "--name", "hs2", "--objective", "regression", "--backbone", "tiny", "--max_length", "64",
                   "--max_steps", "6", "--eval_strategy", "steps", "--eval_steps", "3", "--save_strategy", "steps", "--save_steps", "3",
                   "--logging_steps", "3", "--load_best_model_at_end", "true", "--out", "reg-best") == 0
    run = ws / "runs" / "reg-best"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "eval_mae" in x]
    assert [r["step"] for r in rows] == [3, 6]
    attrs = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    for r in rows:
        assert r["eval_mae"] == pytest.approx(np.mean([r[f"eval_mae_{a}"] for a in attrs]))
        assert 0 < r["eval_mae"] < 4  # on the 0-4 rating scale, not z-scores
    state = json.loads(next(run.glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["best_metric"] == min(r["eval_mae"] for r in rows)


def test_eval_and_pipeline_option_errors(ws, tmp_path):
    from rm_training.train import run_training

    f = write_jsonl(ws.parent / "in" / "pairs.jsonl", [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(4)])  # (no split in its path)
    assert run_cli("ingest", f, "--workspace", ws, "--name", "nosplit") == 0
    with pytest.raises(UsageError, match=r"^--eval_strategy steps evaluates on the validation \(or test\) split, and dataset 'nosplit' has neither; "
                                         rf"run `helpsteer split --workspace {ws} --name nosplit`$"):
        run_training(ws, "nosplit", "bt", out=str(tmp_path / "r"), overrides=["--backbone", "tiny", "--eval_strategy", "steps"])
    assert not (tmp_path / "r").exists()  # refused before any work
    with pytest.raises(UsageError, match=r"^--load_best_model_at_end needs --eval_strategy steps or epoch"):
        _cfg("bt", load_best_model_at_end="true")
    with pytest.raises(UsageError, match=r"^--load_best_model_at_end with --eval_strategy steps needs --save_strategy steps or best \(a checkpoint at every evaluation, "
                                         r"or at every better one\), got --save_strategy epoch$"):
        _cfg("bt", load_best_model_at_end="true", eval_strategy="steps")
    with pytest.raises(UsageError, match=r"^--load_best_model_at_end needs --save_steps \(5\) to be a multiple of --eval_steps \(2\)$"):
        _cfg("bt", load_best_model_at_end="true", eval_strategy="steps", save_strategy="steps", save_steps=5, eval_steps=2)
    with pytest.raises(UsageError, match=r"^--dataset_num_proc 0: must be an integer >= 1 \(processes\)$"):
        _cfg("bt", dataset_num_proc=0)
    cfg = _cfg("regression", load_best_model_at_end="true", eval_strategy="epoch")
    assert (cfg.metric_for_best_model, cfg.greater_is_better) == ("eval_mae", False)
    # a per-attribute error is an error too: the lowest is the best
    cfg = _cfg("regression", load_best_model_at_end="true", eval_strategy="epoch", metric_for_best_model="eval_mae_helpfulness")
    assert cfg.greater_is_better is False
    assert _cfg("bt", load_best_model_at_end="true", eval_strategy="epoch", save_strategy="best").greater_is_better is True
    cfg = _cfg("bt", load_best_model_at_end="true", eval_strategy="epoch")
    assert (cfg.metric_for_best_model, cfg.greater_is_better) == ("eval_accuracy", True)


def test_eval_accuracy_leaves_ties_out_and_reads_soft_labels():
    """Pairwise eval_accuracy: a tie (label 0.5) favours neither side; a soft label favours the
    side it gives more than one half."""
    from types import SimpleNamespace

    import numpy as np

    from rm_training.trainer import RewardTrainer

    me = SimpleNamespace(reward_args=SimpleNamespace(objective="bt"))
    pred = SimpleNamespace(predictions=np.array([[[2.0], [1.0]], [[0.0], [1.0]], [[3.0], [0.0]], [[0.0], [1.0]]]),
                           label_ids=np.array([1.0, 1.0, 0.5, 0.2]))
    # right: pair 0 (chosen higher), pair 3 (label 0.2 favours the rejected, which scores higher); wrong: pair 1; tie left out
    assert RewardTrainer.reward_metrics(me, pred) == {"accuracy": 2 / 3}
