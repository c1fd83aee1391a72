"""The store's guarantees, tested with real processes: a commit killed at any step leaves the old
dataset or the new one, whole; two writers of one dataset take turns (or the second exits 2); a
reader sees one version throughout; a source that changes while it is read is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, manifest, run_cli, table, write_jsonl

from helpsteer import store

GOOD = {"prompt": "q", "response": "r", "helpfulness": 3, "correctness": 3, "coherence": 3, "complexity": 1, "verbosity": 1}


def rows(tag: str, n: int) -> list[dict]:
    return [dict(GOOD, prompt=f"{tag}q{i}", response=f"{tag}r{i}") for i in range(n)]


def cli(*args, env: dict | None = None, wait: bool = True):
    """`helpsteer ARGS` in a new process (a real one, so it can be killed or run beside others)."""
    cmd = [sys.executable, "-c", "import sys; from helpsteer.cli import main; sys.exit(main(sys.argv[1:]))", *map(str, args)]
    e = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True)


def whole(ws: Path, name: str) -> str:
    """Which source the dataset holds ('a' or 'b'), after checking that its manifest and tables agree."""
    m = manifest(ws, name)
    resp = table(ws, name, "responses")
    assert m["tables"]["responses"] == resp.height
    assert m["tables"]["ratings"] == table(ws, name, "ratings").height
    tags = {r[0] for r in resp["response"].to_list()}
    assert len(tags) == 1 and len(m["sources"]) == 1
    assert Path(m["sources"][0]["path"]).parent.name == tags.pop()
    return Path(m["sources"][0]["path"]).parent.name


def leftovers(ws: Path) -> list[str]:
    root = ws / "datasets"
    return sorted(str(p.relative_to(root)) for p in [*root.glob(".tmp-*"), *root.glob(".link-*"), *root.glob(".trash-*"),
                                                     *root.glob(".versions/*/.tmp-*"), *root.glob(".versions/*/.trash-*"), *root.glob(".versions/.trash-*")])


@pytest.fixture
def two(tmp_path):
    a = write_jsonl(tmp_path / "in" / "a" / "train.jsonl", rows("a", 5))
    b = write_jsonl(tmp_path / "in" / "b" / "train.jsonl", rows("b", 7))
    return a, b


@pytest.mark.parametrize("step, holds", [("staged", "a"), ("versioned", "a"), ("linked", "b"), ("gc", "b")])
def test_a_replace_killed_at_each_commit_step_leaves_one_whole_version(ws, two, step, holds):
    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    store.refresh()  # this process no longer reads (pins) that version, so the writer may remove it
    proc = cli("ingest", b, "--workspace", ws, "--name", "d", "--replace", env={"HELPSTEER_KILL_AT": step})
    assert proc.returncode == -9, proc.stderr
    store.refresh()
    assert whole(ws, "d") == holds  # before the commit point (the link swap) the old version, after it the new one
    # the next write of any dataset finishes or rolls back what the kill left
    assert run_cli("ingest", a, "--workspace", ws, "--name", "other") == 0
    assert run_cli("ingest", b, "--workspace", ws, "--name", "d", "--replace") == 0
    store.refresh()
    assert whole(ws, "d") == "b"
    assert leftovers(ws) == []
    assert len(list((ws / "datasets" / ".versions" / "d").iterdir())) == 1  # old versions are removed once unread


@pytest.mark.parametrize("step, present", [("staged", False), ("versioned", False), ("linked", True)])
def test_a_first_ingest_killed_at_each_step(ws, two, step, present):
    a, _ = two
    proc = cli("ingest", a, "--workspace", ws, "--name", "d", env={"HELPSTEER_KILL_AT": step})
    assert proc.returncode == -9
    assert store.exists(ws, "d") is present
    if present:  # past the commit point (the link)
        assert whole(ws, "d") == "a"
        assert run_cli("ingest", a, "--workspace", ws, "--name", "d", "--append") == 0
    else:
        assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    store.refresh()
    assert whole(ws, "d") == "a" and leftovers(ws) == []


def test_a_delete_killed_midway_stays_deleted(ws, two):
    a, _ = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    proc = cli("datasets", "--workspace", ws, "--delete", "d", env={"HELPSTEER_KILL_AT": "deleted"})
    assert proc.returncode == -9
    store.refresh()
    assert not store.exists(ws, "d")
    assert store.names(ws) == []
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0  # the name is free again
    store.refresh()
    assert whole(ws, "d") == "a" and leftovers(ws) == []


def test_a_workspace_from_before_versions_is_migrated_on_its_next_write_even_if_killed(ws, two):
    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    # rebuild the old layout: datasets/d a plain folder
    link = ws / "datasets" / "d"
    version = link.resolve()
    link.unlink()
    os.rename(version, link)
    (ws / "datasets" / ".versions").rename(ws / "datasets" / ".gone")
    store.refresh()
    assert whole(ws, "d") == "a"
    proc = cli("ingest", b, "--workspace", ws, "--name", "d", "--replace", env={"HELPSTEER_KILL_AT": "migrated"})
    assert proc.returncode == -9
    store.refresh()
    assert whole(ws, "d") == "a"  # exchanged for its link, the old folder not yet removed: still read
    assert run_cli("ingest", b, "--workspace", ws, "--name", "d", "--replace") == 0
    store.refresh()
    assert whole(ws, "d") == "b" and (ws / "datasets" / "d").is_symlink()


def test_the_old_two_rename_commit_killed_between_renames_is_recovered(ws, two):
    """What the previous layout's kill left (only .trash-d-* and .tmp-d-*): the next write of any
    dataset restores the old one instead of deleting both."""
    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    root = ws / "datasets"
    link = root / "d"
    version = link.resolve()
    link.unlink()
    os.rename(version, root / ".trash-d-0123abcd")
    (root / ".tmp-d-999999-89abcdef").mkdir()
    assert run_cli("ingest", b, "--workspace", ws, "--name", "other") == 0
    store.refresh()
    assert whole(ws, "d") == "a"
    assert leftovers(ws) == []


def paused(args, step: str, tmp_path: Path, extra_env: dict | None = None):
    """Start `helpsteer ARGS` and wait until it stands still at STEP (store.fault_point)."""
    flag = tmp_path / f"pause-{step}-{time.monotonic_ns()}"
    proc = cli(*args, env={"HELPSTEER_PAUSE_AT": step, "HELPSTEER_PAUSE_FILE": str(flag), **(extra_env or {})}, wait=False)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc, flag


def test_a_second_writer_exits_2_at_once_or_waits_its_turn_with_wait(ws, two, tmp_path):
    a, b = two
    c = write_jsonl(tmp_path / "in" / "c" / "train.jsonl", rows("c", 3))
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    first, flag = paused(["ingest", b, "--workspace", ws, "--name", "d", "--append"], "staged", tmp_path)
    second = cli("ingest", c, "--workspace", ws, "--name", "d", "--append")
    assert second.returncode == 2
    assert second.stderr.strip().splitlines()[-1] == (
        f"error: dataset 'd' in {ws} is being written by another process (pid {first.pid}); wait for it, or pass --wait to queue behind it")
    waiting = cli("ingest", c, "--workspace", ws, "--name", "d", "--append", "--wait", wait=False)
    time.sleep(1.0)
    assert waiting.poll() is None  # queued behind the lock
    flag.unlink()
    assert first.wait(60) == 0 and waiting.wait(60) == 0, waiting.communicate()
    store.refresh()
    m = manifest(ws, "d")
    assert [Path(s["path"]).parent.name for s in m["sources"]] == ["a", "b", "c"]  # no source lost
    assert table(ws, "d", "responses").height == 5 + 7 + 3


def test_parallel_appends_with_wait_lose_no_source(ws, tmp_path):
    sources = [write_jsonl(tmp_path / "in" / f"s{i}" / "train.jsonl", rows(f"s{i}", 20 + i)) for i in range(4)]
    procs = [cli("ingest", s, "--workspace", ws, "--name", "d", "--append" if i else "--append", "--wait", wait=False) for i, s in enumerate(sources)]
    # the first may find no dataset yet: --append onto nothing creates it
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    store.refresh()
    m = manifest(ws, "d")
    assert sorted(Path(s["path"]).parent.name for s in m["sources"]) == ["s0", "s1", "s2", "s3"]
    assert table(ws, "d", "responses").height == 20 + 21 + 22 + 23


def test_two_plain_ingests_of_one_new_name_cannot_both_win(ws, two, tmp_path):
    a, b = two
    first, flag = paused(["ingest", a, "--workspace", ws, "--name", "d"], "staged", tmp_path)
    second = cli("ingest", b, "--workspace", ws, "--name", "d", "--wait", wait=False)
    time.sleep(0.5)
    flag.unlink()
    assert first.wait(60) == 0
    out, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert err.strip().splitlines()[-1] == f"error: dataset 'd' already exists in {ws}; pass --append to add sources or --replace to swap it"
    store.refresh()
    assert whole(ws, "d") == "a"


READER = """
import sys, time
from pathlib import Path
import polars as pl
from helpsteer import store
ws, stop = Path(sys.argv[1]), Path(sys.argv[2])
checks = 0
while not stop.exists() or checks < 5:
    store.refresh()
    m = store.read_manifest(ws, "d")
    time.sleep(0.01)  # a writer may commit between the reads below: they must still agree
    resp = store.load_table(ws, "d", "responses")
    rat = store.load_table(ws, "d", "ratings")
    tags = {r[0] for r in resp["response"].to_list()}
    src = Path(m["sources"][0]["path"]).parent.name
    assert m["tables"]["responses"] == resp.height and m["tables"]["ratings"] == rat.height, (m["tables"], resp.height)
    assert tags == {src}, (tags, src)
    checks += 1
print(checks)
"""


def test_a_reader_sees_one_version_while_a_writer_replaces_it(ws, two, tmp_path):
    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(ws), str(stop)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for i in range(6):
        assert cli("ingest", b if i % 2 == 0 else a, "--workspace", ws, "--name", "d", "--replace").returncode == 0
    stop.touch()
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    assert int(out) >= 5
    store.refresh()
    assert whole(ws, "d") == "a"


def test_a_pinned_version_outlives_a_commit_until_its_reader_exits(ws, two):
    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    store.refresh()
    old = store.require(ws, "d")  # this process now reads that version
    assert cli("ingest", b, "--workspace", ws, "--name", "d", "--replace").returncode == 0
    assert old.exists() and store.load_table(ws, "d", "responses").height == 5  # still ours: a
    store.refresh()
    assert store.load_table(ws, "d", "responses").height == 7
    assert cli("ingest", a, "--workspace", ws, "--name", "d", "--replace").returncode == 0
    assert not old.exists()  # unpinned, so the next commit removed it


def test_a_source_that_changes_while_it_is_read_is_refused_and_nothing_is_kept(ws, two, tmp_path):
    a, _ = two
    proc, flag = paused(["ingest", a, "--workspace", ws, "--name", "d"], "read", tmp_path)
    with open(a, "a") as f:  # the file grows while ingest reads it
        f.write(json.dumps(dict(GOOD, prompt="late", response="alate")) + "\n")
    flag.unlink()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    grew = a.stat().st_size
    assert err.strip().splitlines()[-1] == (f"error: {a}: changed while it was being read (size {grew - len(json.dumps(dict(GOOD, prompt='late', response='alate'))) - 1}"
                                            f" -> {grew} bytes); nothing was written, ingest it again once it is complete")
    store.refresh()
    assert not store.exists(ws, "d") and leftovers(ws) == []
    # and no sha256 of a half-read file was recorded: the complete file goes in whole
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d", "--append") == 0
    store.refresh()
    assert table(ws, "d", "responses").height == 6


def test_same_size_rewrite_while_read_is_caught_by_the_hash(ws, two, tmp_path):
    a, _ = two
    proc, flag = paused(["ingest", a, "--workspace", ws, "--name", "d"], "read", tmp_path)
    st = a.stat()
    data = a.read_bytes().replace(b"aq0", b"aq9", 1)
    a.write_bytes(data)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only the sha256 tells
    flag.unlink()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1] == (f"error: {a}: changed while it was being read (same size and time, different sha256); "
                                            "nothing was written, ingest it again once it is complete")


def test_strict_stops_at_the_first_bad_record_in_file_order(ws, tmp_path):
    lines = [json.dumps(GOOD), json.dumps(dict(GOOD, prompt="q2", helpfulness=9)), json.dumps(dict(GOOD, prompt="q3", response=5))]
    path = tmp_path / "in" / "x" / "train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    proc = cli("ingest", path, "--workspace", ws, "--name", "d", "--format", "helpsteer2", "--strict")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}:2: ") and last.endswith("(--strict: nothing was written)"), last
    assert "helpfulness" in last
    assert not store.exists(ws, "d")


def test_analyze_and_split_write_new_versions_under_the_lock(ws, synth_dir, tmp_path):
    assert run_cli("ingest", synth_dir / "helpsteer2" / "disagreements" / "disagreements.jsonl.gz", "--workspace", ws, "--name", "d") == 0
    first, flag = paused(["split", "--workspace", ws, "--name", "d"], "staged", tmp_path)
    busy = cli("analyze", "--workspace", ws, "--name", "d", "--bootstrap", "0")
    assert busy.returncode == 2 and "is being written by another process" in busy.stderr
    flag.unlink()
    assert first.wait(60) == 0
    assert cli("analyze", "--workspace", ws, "--name", "d", "--bootstrap", "0").returncode == 0
    store.refresh()
    folder = store.require(ws, "d")
    assert (folder / "analysis" / "agreement.json").exists()
    assert set(pl.read_parquet(folder / "responses.parquet")["split"].unique()) == {"train", "validation"}
    assert leftovers(ws) == []


def read_only(ws: Path, *args) -> subprocess.CompletedProcess:
    """`helpsteer ARGS` with WS mounted read-only (a private mount namespace: as root, file modes
    alone do not stop writes); skips where mount namespaces are not allowed."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {ws} {ws}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount read-only here (unshare -m: {probe.stderr.decode().strip()[:80]})")
    cmd = " ".join(["exec", sys.executable, "-m", "helpsteer.cli", *map(str, args)])
    return subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind -o ro {ws} {ws} && {cmd}"], cwd=ROOT, capture_output=True, text=True)


def test_a_read_only_workspace_is_read_but_not_written(ws, two):
    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    before = sorted(str(p) for p in ws.rglob("*"))
    for args in (["ingest", b, "--workspace", ws, "--name", "d", "--append"], ["split", "--workspace", ws, "--name", "d"],
                 ["analyze", "--workspace", ws, "--name", "d", "--bootstrap", "0"], ["datasets", "--workspace", ws, "--delete", "d"]):
        proc = read_only(ws, *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == f"error: workspace {ws}: cannot write there (Read-only file system); nothing was written"
        assert "Traceback" not in proc.stderr
    listed = read_only(ws, "datasets", "--workspace", ws, "--json")
    assert listed.returncode == 0 and [m["name"] for m in json.loads(listed.stdout)] == ["d"]
    assert sorted(str(p) for p in ws.rglob("*")) == before


def test_a_failed_first_write_does_not_remove_another_writers_work(ws, two, tmp_path):
    """Two first writes into a new workspace: the one that fails leaves the other's staging alone."""
    a, _ = two
    bad = write_jsonl(tmp_path / "in" / "bad" / "train.jsonl", [dict(GOOD, helpfulness=9)])
    failing, flag_a = paused(["ingest", bad, "--workspace", ws, "--name", "bad"], "read", tmp_path)
    good, flag_b = paused(["ingest", a, "--workspace", ws, "--name", "good"], "read", tmp_path)
    flag_a.unlink()
    assert failing.wait(60) == 2
    flag_b.unlink()
    out, err = good.communicate(timeout=60)
    assert good.returncode == 0, err
    store.refresh()
    assert store.names(ws) == ["good"] and whole(ws, "good") == "a"
    assert not (ws / "datasets" / ".versions" / "bad").exists()  # the failed one left no folder of its name


def test_a_reader_in_another_pid_namespace_keeps_its_version(ws, two):
    """Pins are flocks, not pids: a reader in a container (its own pid namespace, pids that mean
    nothing to the writer) keeps the version it reads while a writer commits a new one."""
    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    store.refresh()
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a pid namespace here ({probe.stderr.decode().strip()[:80]})")
    code = ("import sys, time; from pathlib import Path; from helpsteer import store\n"
            "ws = Path(sys.argv[1]); n1 = store.load_table(ws, 'd', 'responses').height\n"
            "print('pinned', flush=True); sys.stdin.readline()\n"
            "print(n1, store.load_table(ws, 'd', 'responses').height, flush=True)\n")
    reader = subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-c", code, str(ws)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "pinned"
    assert cli("ingest", b, "--workspace", ws, "--name", "d", "--append").returncode == 0
    out, err = reader.communicate("go\n", timeout=60)
    assert out.split() == ["5", "5"], err  # still the first version, not 5 + 7
    store.refresh()
    assert store.load_table(ws, "d", "responses").height == 12


def test_threads_keep_their_own_pins(ws, two):
    """The dashboard serves each session from a thread of one process: one session's refresh does
    not move another session's reads to a newer version mid-run."""
    import threading

    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    store.refresh()
    seen, go, pinned = [], threading.Event(), threading.Event()

    def session_b():
        seen.append(store.load_table(ws, "d", "responses").height)
        pinned.set()
        go.wait(60)
        seen.append(store.load_table(ws, "d", "responses").height)
        store.refresh()

    t = threading.Thread(target=session_b)
    t.start()
    pinned.wait(60)
    store.refresh()  # session A's new run
    assert cli("ingest", b, "--workspace", ws, "--name", "d", "--append").returncode == 0
    assert store.load_table(ws, "d", "responses").height == 12  # A sees the new version
    go.set()
    t.join(60)
    assert seen == [5, 5]  # B kept its version to the end of its run
    store.refresh()


def test_a_dataset_deleted_while_read_is_an_error_not_another_version(ws, two):
    a, b = two
    assert run_cli("ingest", a, "--workspace", ws, "--name", "d") == 0
    store.refresh()
    assert store.load_table(ws, "d", "responses").height == 5
    assert cli("datasets", "--workspace", ws, "--delete", "d").returncode == 0
    assert cli("ingest", b, "--workspace", ws, "--name", "d").returncode == 0
    with pytest.raises(store.UsageError, match=r"^dataset 'd' in .* was deleted while this command read it; run it again$"):
        store.load_table(ws, "d", "responses")
    store.refresh()
    assert store.load_table(ws, "d", "responses").height == 7
