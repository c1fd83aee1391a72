"""rm_training.runs, the run directory's owner: default names and their numbering, what is a run,
reading its records (missing and corrupt files), listing runs and attacks. Fixtures are written by
hand: a run here is a folder with the files the checks look at, not a trained model."""

import json
import logging
import struct

import pytest

from helpsteer.errors import UsageError
from rm_training import runs


def _safetensors(path, data_bytes=4, cut=0):
    """A minimal .safetensors file: one float32 tensor of data_bytes/4 values, `cut` bytes short."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [data_bytes // 4], "data_offsets": [0, data_bytes]}}).encode()
    blob = struct.pack("<Q", len(header)) + header + b"\0" * data_bytes
    path.write_bytes(blob[: len(blob) - cut])


def _finished_run(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    _safetensors(path / "model.safetensors")
    runs.write_run_config(path, {"objective": "bt", "seed": 7}, {"dataset": "d", "n_examples": 3})
    return path


def test_numbered_takes_the_first_free_name(tmp_path):
    base = tmp_path / "x"
    assert runs.numbered(base, lambda p: False) == base
    taken = {base, tmp_path / "x-2"}
    assert runs.numbered(base, lambda p: p in taken) == tmp_path / "x-3"


def test_run_path_numbers_finished_runs_and_resumes_unfinished_ones(tmp_path):
    ws = tmp_path / "ws"
    assert runs.run_path(ws, "d", "bt", None) == ws / "runs" / "d-bt"
    _finished_run(ws / "runs" / "d-bt")
    assert runs.run_path(ws, "d", "bt", None) == ws / "runs" / "d-bt-2"
    # an unfinished run (weights cut short) at -2 is resumed, not shadowed by -3
    _finished_run(ws / "runs" / "d-bt-2")
    _safetensors(ws / "runs" / "d-bt-2" / "model.safetensors", cut=2)
    assert runs.run_path(ws, "d", "bt", None) == ws / "runs" / "d-bt-2"
    # --out: a bare name under WS/runs/, a path as given
    assert runs.run_path(ws, "d", "bt", "mine") == ws / "runs" / "mine"
    assert runs.run_path(ws, "d", "bt", "a/b") == runs.Path("a/b")


def test_attack_path_numbers_by_attack_json(tmp_path):
    ws = tmp_path / "ws"
    assert runs.attack_path(ws, "d") == ws / "attacks" / "d"
    (ws / "attacks" / "d").mkdir(parents=True)
    assert runs.attack_path(ws, "d") == ws / "attacks" / "d"  # (an empty folder is not taken)
    runs.write_attack(ws / "attacks" / "d", {"rounds": []})
    assert runs.attack_path(ws, "d") == ws / "attacks" / "d-2"
    assert runs.attack_path(ws, "d", tmp_path / "o") == tmp_path / "o"


def test_is_run_and_finished(tmp_path):
    assert not runs.is_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert not runs.is_run(tmp_path / "empty")
    run = _finished_run(tmp_path / "r")
    assert runs.is_run(run) and runs.finished(run)
    (run / "run_config.json").unlink()  # weights whole, records not written: not finished
    assert runs.is_run(run) and not runs.finished(run)


def test_safetensors_damage_names_the_cut(tmp_path):
    p = tmp_path / "model.safetensors"
    assert runs.safetensors_damage(p) == "no model.safetensors"
    _safetensors(p)
    assert runs.safetensors_damage(p) is None
    _safetensors(p, cut=1)
    assert runs.safetensors_damage(p) == f"model.safetensors is cut short ({p.stat().st_size} of {p.stat().st_size + 1} bytes)"


def test_not_a_run_messages_are_todays(tmp_path):
    r = tmp_path / "nope"
    assert runs.not_a_run(r) == f"{r} is not a run directory (no config.json); train one with `helpsteer train`"
    assert runs.not_a_run(r, "--model") == f"--model {r}: not a run directory (no config.json); train one with `helpsteer train`"


def test_evaluate_and_attack_refuse_a_folder_that_is_not_a_run(tmp_path):
    from rm_training.attack import run_attack
    from rm_training.evaluate import evaluate
    from rm_training.scoring import Scorer

    r = tmp_path / "nope"
    with pytest.raises(UsageError, match=r"^--model .*nope: not a run directory \(no config.json\); train one with `helpsteer train`$"):
        run_attack(r, tmp_path, "d")
    with pytest.raises(UsageError, match=r"nope is not a run directory \(no config.json\)"):
        evaluate(r, tmp_path, "d")
    with pytest.raises(FileNotFoundError, match=r"nope is not a run directory \(no config.json\)"):
        Scorer(r)


def test_run_config_missing_and_corrupt(tmp_path):
    run = _finished_run(tmp_path / "r")
    assert runs.training_config(run) == {"objective": "bt", "seed": 7}
    assert runs.read_run_config(run)["run"] == {"dataset": "d", "n_examples": 3}
    assert runs.config_field(run, "seed") == 7 and runs.config_field(run, "nope") is None and runs.config_field(None, "seed") is None
    # missing: an empty config (a checkpoint from elsewhere has none)
    assert runs.read_run_config(tmp_path) == {} and runs.training_config(tmp_path) == {}
    # corrupt: json's own one-line error, as evaluate and attack raised it before (CLI: "error: JSONDecodeError: ...")
    (run / "run_config.json").write_text("")
    with pytest.raises(json.JSONDecodeError, match=r"^Expecting value: line 1 column 1 \(char 0\)$"):
        runs.training_config(run)
    assert runs.config_field(run, "seed") is None  # (lenient, as config.run_field is)
    assert runs.read_json(run / "run_config.json") is None


def test_attack_overrides_read_the_run_config(tmp_path):
    from rm_training.attack import _run_overrides

    run = _finished_run(tmp_path / "r")
    runs.write_run_config(run, {"backbone": "tiny", "max_length": 64, "seed": 1}, {})
    assert _run_overrides(run) == ["--backbone", "tiny", "--max_length", "64"]
    assert _run_overrides(tmp_path / "none") == []


def test_metrics_skip_a_cut_line(tmp_path):
    assert runs.read_metrics(tmp_path) == []
    runs.metrics_path(tmp_path).write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo\n')
    assert runs.read_metrics(tmp_path) == [{"step": 1, "loss": 0.5}]


def test_evaluations_per_dataset_and_the_old_single_file(tmp_path):
    run = _finished_run(tmp_path / "r")
    assert runs.evaluations(run) == {}
    (run / "eval.json").write_text(json.dumps({"dataset": "old"}))
    assert runs.evaluations(run) == {"old": run / "eval.json"}
    per, latest = runs.eval_targets(run, "a")
    assert (per, latest) == (run / "eval" / "a.json", run / "eval.json")
    per.parent.mkdir()
    per.write_text(json.dumps({"dataset": "a"}))
    (run / "eval" / "b.json").write_text("not json")  # unreadable: listed under its file name
    assert runs.evaluations(run) == {"a": per, "b": run / "eval" / "b.json"}
    assert runs.eval_detail_path(per, "pairs") == run / "eval" / "a_pairs.parquet"


def test_list_runs_and_attacks(tmp_path):
    ws = tmp_path / "ws"
    assert runs.list_runs(ws) == [] and runs.list_attacks(ws) == []
    _finished_run(ws / "runs" / "b")
    (ws / "runs" / "a").mkdir()
    (ws / "runs" / "a" / "config.json").write_text("{}")
    (ws / "runs" / "no-config").mkdir()
    (ws / "runs" / "stray.txt").write_text("")
    assert [p.name for p in runs.list_runs(ws)] == ["a", "b"]
    (ws / "attacks" / "x").mkdir(parents=True)
    runs.write_attack(ws / "attacks" / "x", {"rounds": [{"round": 0}]})
    (ws / "attacks" / "empty").mkdir()
    assert [p.name for p in runs.list_attacks(ws)] == ["x"]
    assert runs.read_attack(ws / "attacks" / "x") == {"rounds": [{"round": 0}]}
    assert runs.read_attack(ws / "attacks" / "empty") == {}


def test_complete_checkpoint_warns_through_the_log(tmp_path, caplog):
    from rm_training.train import complete_checkpoint

    (tmp_path / "checkpoint-2").mkdir()
    with caplog.at_level(logging.INFO, logger="rm_training.train"):
        assert complete_checkpoint(tmp_path, warn=logging.getLogger("rm_training.train").warning) is None
    assert caplog.messages == [f"warning: skipping damaged checkpoint {tmp_path / 'checkpoint-2'}: no trainer_state.json (the save was cut short) (removed)"]
    assert not (tmp_path / "checkpoint-2").exists()
