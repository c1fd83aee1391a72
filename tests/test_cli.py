"""The `helpsteer` command as a user runs it: a real process, --help everywhere, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, run_cli, write_jsonl

HS = [sys.executable, "-m", "helpsteer.cli"]


def sh(*args, **kw):
    return subprocess.run([*HS, *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kw)


@pytest.mark.parametrize("cmd", ["synth", "ingest", "datasets", "split", "export"])
def test_help_on_every_subcommand(cmd):
    p = sh(cmd, "--help")
    assert p.returncode == 0 and "Usage" in p.stdout


def test_bad_input_is_one_line_exit_2_without_traceback(tmp_path):
    p = sh("ingest", tmp_path / "nope.jsonl", "--workspace", tmp_path / "ws", "--name", "x")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope.jsonl'}: no such file"
    p = sh("ingest", tmp_path, "--workspace", tmp_path / "ws", "--name", "bad name!")
    assert p.returncode == 2 and "dataset name" in p.stderr
    p = sh("ingest", "--workspace", tmp_path)  # usage error from the parser
    assert p.returncode == 2


def test_datasets_list_and_delete(tmp_path, capsys):
    ws = tmp_path / "ws"
    f = write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    assert run_cli("ingest", f, "--workspace", ws, "--name", "one") == 0
    p = sh("datasets", "--workspace", ws, "--json")
    assert p.returncode == 0 and '"name": "one"' in p.stdout
    assert run_cli("datasets", "--workspace", ws, "--delete", "one") == 0
    assert not (ws / "datasets" / "one").exists()
    assert run_cli("datasets", "--workspace", ws, "--delete", "one") == 2


def test_synth_then_ingest_as_a_user(tmp_path):
    out = tmp_path / "syn"
    p = sh("synth", "--out", out, "--prompts", "30", "--seed", "2")
    assert p.returncode == 0 and "helpsteer2-disagreements" in p.stdout
    p = sh("ingest", out / "helpsteer2" / "disagreements" / "disagreements.jsonl.gz", "--workspace", tmp_path / "ws", "--name", "d")
    assert p.returncode == 0
    assert "format helpsteer2-disagreements (auto-detected)" in p.stderr
    assert "60 records, 60 ingested, 0 quarantined" in p.stderr
    assert p.stdout == ""  # results go to stderr; stdout stays clean for pipes


def test_tables_in_a_pipe_are_not_cut_and_unsplit_says_so(tmp_path):
    """Off a terminal rich would assume 80 columns and cut cells to '…'; a dataset without splits
    lists as unsplit (not None)."""
    import json

    ws = tmp_path / "ws"
    name = "a-dataset-with-a-long-name-" + "x" * 60
    f = write_jsonl(tmp_path / "in" / "data" / "pairs.jsonl", [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(3)])  # (a split is read off the last folders)
    assert run_cli("ingest", f, "--workspace", ws, "--name", name, "--format", "pairs") == 0
    assert json.loads((ws / "datasets" / name / "manifest.json").read_text())["splits"] == {"unsplit": 6}
    p = subprocess.run([sys.executable, "-m", "helpsteer.cli", "datasets", "--workspace", str(ws)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and name in p.stdout and "…" not in p.stdout and "unsplit=6" in p.stdout


def test_library_log_records_are_bare_stderr_lines(capsys):
    """Library code logs; the CLI shows the project's INFO records as the bare message on stderr
    (the lines `announce` callbacks printed before), once, whatever sys.stderr is at the time."""
    import logging

    from helpsteer.cli import show_library_logs

    show_library_logs()
    show_library_logs()  # idempotent: still one handler, one line per record
    logging.getLogger("rm_training.somewhere").info("hello")
    logging.getLogger("helpsteer.ingest").debug("not shown")
    logging.getLogger("urllib3").warning("another library's warning")  # not the CLI's to show
    captured = capsys.readouterr()
    assert captured.err == "hello\n" and captured.out == ""


def test_one_cli_package_and_the_layers_hold():
    """The five CLI files became helpsteer/cli/; import-linter's contract (pyproject.toml) holds:
    nothing below the CLI imports upward."""
    import helpsteer.cli as cli

    assert {c.name or c.callback.__name__ for c in cli.app.registered_commands} >= {"synth", "ingest", "analyze", "train", "eval", "serve", "dashboard"}
    assert [g.name for g in cli.app.registered_groups] == ["annotate"]
    from pathlib import Path

    p = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and "1 kept, 0 broken" in p.stdout, p.stdout[-2000:]


def test_serve_log_level_is_checked_before_the_model_loads(tmp_path):
    p = sh("serve", "--model", tmp_path, "--log-level", "bogus")
    assert (p.returncode, p.stderr.strip().splitlines()) == (
        2, ["error: --log-level must be critical, error, warning, info, debug or trace, got 'bogus'"])
