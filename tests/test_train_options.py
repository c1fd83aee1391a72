"""`helpsteer train` option checks (issue 19, point 6): every bad value is one line naming the option
and what it must be, exit 2, before any work: no run directory is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, synthetic_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return synthetic_workspace(tmp_path_factory.mktemp("opts"), seed=4, n_prompts=40)


def _train(ws: Path, *extra) -> int:
    return run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--out", ws / "runs" / "r", *extra)


@pytest.mark.parametrize("args, message", [
    (["--learning_rate", "nan"], "--learning_rate nan: must be a finite number >= 0"),
    (["--learning_rate", "-1e-5"], "--learning_rate -1e-5: must be a finite number >= 0"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must be an integer >= 1"),
    (["--num_train_epochs", "0"], "--num_train_epochs 0: must be a finite number > 0"),
    (["--num_train_epochs", "-1"], "--num_train_epochs -1: must be a finite number > 0"),
    (["--max_length", "0"], "--max_length 0: must be an integer >= 8 (tokens)"),
    (["--max_length", "-5"], "--max_length -5: must be an integer >= 8 (tokens)"),
])
def test_out_of_range_options_exit_2_with_one_line_and_write_nothing(ws, capsys, args, message):
    assert _train(ws, *args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message}"
    assert not (ws / "runs" / "r").exists()


def test_config_file_errors_name_the_file_and_line(ws, tmp_path, capsys):
    bad = tmp_path / "cfg" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("learning_rate: 1e-4\n  seed: [\n")
    assert _train(ws, "--config", bad) == 2
    assert f"{bad}, line" in capsys.readouterr().err
    tag = tmp_path / "cfg" / "tag.yaml"
    tag.write_text("seed: !!python/object/apply:os.system ['true']\n")
    assert _train(ws, "--config", tag) == 2
    assert "is not allowed" in capsys.readouterr().err
    typed = tmp_path / "cfg" / "typed.yaml"
    typed.write_text("seed: 1\nper_device_train_batch_size: abc\n")
    assert _train(ws, "--config", typed) == 2
    assert f"{typed}, line 2: per_device_train_batch_size abc: must be an integer" in capsys.readouterr().err
    assert _train(ws, "--config", tmp_path / "cfg" / "missing.yaml") == 2
    assert "no such file" in capsys.readouterr().err
    assert not (ws / "runs" / "r").exists()


def test_missing_init_from_and_out_as_a_file(ws, tmp_path, capsys):
    assert _train(ws, "--init_from", tmp_path / "no-run") == 2
    assert f"--init_from {tmp_path / 'no-run'}: not a finished run" in capsys.readouterr().err
    f = tmp_path / "afile"
    f.write_text("x")
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--out", f) == 2
    assert "is a file" in capsys.readouterr().err
    assert not (ws / "runs" / "r").exists()


@pytest.mark.parametrize("damage", ["trainer_state.json", "model.safetensors"])
def test_rerun_skips_a_damaged_checkpoint_and_resumes_from_the_previous_one(ws, capsys, damage):
    """Point 7: a run killed while writing its last checkpoint (here: that file cut short by hand
    after a real run, with the final model removed) resumes from the checkpoint before it."""
    import json

    out = ws / "runs" / f"damaged-{damage.split('.')[0]}"
    common = ["train", "--workspace", ws, "--name", "pref", "--objective", "bt", "--backbone", "tiny", "--num_train_epochs", "2",
              "--max_length", "64", "--per_device_train_batch_size", "8", "--save_strategy", "steps", "--save_steps", "2",
              "--save_total_limit", "5", "--out", out]
    assert run_cli(*common) == 0
    steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert len(steps) >= 2
    last, previous = out / f"checkpoint-{steps[-1]}", steps[-2]
    (out / "model.safetensors").unlink()
    (out / "run_config.json").unlink(missing_ok=True)
    f = last / damage
    f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 2)])
    capsys.readouterr()
    assert run_cli(*common) == 0
    err = capsys.readouterr().err
    assert f"warning: skipping damaged checkpoint {last}: " in err
    assert f"resuming from {out / f'checkpoint-{previous}'}" in err
    assert (out / "model.safetensors").exists()
    state = json.loads((out / f"checkpoint-{steps[-1]}" / "trainer_state.json").read_text()) if (out / f"checkpoint-{steps[-1]}").exists() else None
    assert state is None or state["global_step"] == steps[-1]


def test_a_read_only_workspace_is_one_line_before_any_work(tmp_path):
    """As root, file modes do not stop writes: the workspace is mounted read-only in a private mount
    namespace (skipped where that is not allowed)."""
    import subprocess
    import sys

    from conftest import ROOT

    ws = tmp_path / "ro" / "ws"  # its own: the module's shared workspace has runs of other tests

    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mkdir -p {ws} && mount --bind -o ro {ws} {ws}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount read-only here (unshare -m: {probe.stderr.decode().strip()[:80]})")
    data = tmp_path / "in" / "x" / "train.jsonl"
    data.parent.mkdir(parents=True)
    row = {"prompt": "q", "response": "r", "helpfulness": 3, "correctness": 3, "coherence": 3, "complexity": 1, "verbosity": 1}
    data.write_text("\n".join(json.dumps(dict(row, prompt=f"q{i}", response=f"r{i}")) for i in range(4)) + "\n")
    assert run_cli("ingest", data, "--workspace", ws, "--name", "d") == 0
    cmd = f"exec {sys.executable} -m helpsteer.cli train --workspace {ws} --name d --objective regression"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {ws} {ws} && {cmd}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {ws}/runs/d-regression: not writable (Read-only file system); give --out a writable directory"
    assert not (ws / "runs").exists()
