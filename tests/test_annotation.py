"""Round trips with a real Label Studio server (started by the test from .venv-ls): push a dataset,
annotate as three users, pull, and the workspace dataset equals what was annotated, value for
value; re-push and re-pull change nothing; an invalid annotation quarantines only itself. Also the
configs, export-tasks, hostile export files (no server) and the error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, manifest, quarantine, run_cli, table, write_jsonl

from annotation.configs import KINDS, labeling_config, validate_config
from helpsteer.ids import response_id

ATTRS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
EMAILS = ["ann.one@example.com", "ann.two@example.com", "ann.three@example.com"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from labelstudio_server import start_server

    srv = start_server(tmp_path_factory.mktemp("ls"))
    srv.users = {e: srv.create_user(e) for e in EMAILS}
    yield srv
    srv.stop()


def _client(server):
    from label_studio_sdk import LabelStudio
    from labelstudio_server import TOKEN

    return LabelStudio(base_url=server.url, api_key=TOKEN)


def _hs(cli_args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = run_cli(*cli_args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _ratings_dataset(ws, tmp_path):
    multi = "Hi<extra_id_1>Assistant\nHello!\n<extra_id_1>User\nWhat is the capital of Peru?"
    rows = [{"prompt": p, "response": r, "helpfulness": 2, "correctness": 2, "coherence": 2, "complexity": 2, "verbosity": 2}
            for p, r in [("Capital of France?", "Paris."), ("Capital of France?", "Lyon."), (multi, "Lima."), ("2+2?", "4")]]
    f = write_jsonl(tmp_path / "train.jsonl", rows)
    assert run_cli("ingest", f, "--workspace", ws, "--name", "items") == 0


def test_labeling_configs_validate():
    for kind in KINDS:
        xml = labeling_config(kind)
        validate_config(xml)
        assert 'layout="dialogue"' in xml
    xml = labeling_config("ratings")
    assert all(f'name="{a}"' in xml for a in ATTRS) and '<Choice value="0"' in xml and '<Choice value="4"' in xml
    pref = labeling_config("preference")
    assert 'name="preference"' in pref and 'name="justification"' in pref and '<Choice value="-3"' in pref and 'required="true"' in pref


def test_export_tasks_file(ws, tmp_path):
    _ratings_dataset(ws, tmp_path)
    out = tmp_path / "tasks.json"
    assert run_cli("annotate", "export-tasks", "--workspace", ws, "--name", "items", "--kind", "ratings", "--out", out, "--config-out", tmp_path / "c.xml") == 0
    tasks = json.loads(out.read_text())
    assert len(tasks) == 4 and {"item_id", "response_id", "messages", "response"} <= set(tasks[0]["data"])
    lima = next(t for t in tasks if t["data"]["response"] == "Lima.")
    assert [m["role"] for m in lima["data"]["messages"]] == ["user", "assistant", "user"]
    assert run_cli("annotate", "export-tasks", "--workspace", ws, "--name", "items", "--kind", "preference", "--out", out) == 2


@pytest.mark.slow
def test_ratings_round_trip(server, ws, tmp_path, capsys):
    _ratings_dataset(ws, tmp_path)
    rc, out, err = _hs(["annotate", "push", "--workspace", ws, "--name", "items", "--kind", "ratings", "--url", server.url, "--api-key", "helpsteer-test-token-0123456789"], capsys)
    assert rc == 0, err
    pid = int(out.strip().splitlines()[-1])
    assert "helpsteer-test-token" not in out + err  # the key is never printed
    ls = _client(server)
    tasks = list(ls.tasks.list(project=pid, fields="all"))
    assert len(tasks) == 4
    expected = set()
    edited = None
    for n, task in enumerate(sorted(tasks, key=lambda t: t.id)):
        ctx = task.data["messages"]
        rid = response_id(ctx, task.data["response"])
        for u, email in enumerate(EMAILS):
            scores = {a: (n + u + i) % 5 for i, a in enumerate(ATTRS)}
            result = [{"from_name": a, "to_name": "response", "type": "choices", "value": {"choices": [str(v)]}} for a, v in scores.items()]
            ann = ls.annotations.create(id=task.id, result=result, completed_by=server.users[email])
            if n == 0 and u == 0:
                edited = (ann.id, rid, email)
                continue  # its values change below
            expected |= {(rid, email, a, float(v)) for a, v in scores.items()}
    # an edited annotation: the latest version is the one pulled
    ann_id, rid, email = edited
    new = {a: 4 for a in ATTRS}
    ls.annotations.update(id=ann_id, result=[{"from_name": a, "to_name": "response", "type": "choices", "value": {"choices": ["4"]}} for a in ATTRS])
    expected |= {(rid, email, a, 4.0) for a in new}
    # a cancelled (skipped) annotation is ignored
    ls.annotations.create(id=tasks[1].id, result=[], completed_by=server.users[EMAILS[0]], was_cancelled=True)

    rc, out, err = _hs(["annotate", "pull", "--project", str(pid), "--workspace", ws, "--name", "pulled", "--url", server.url, "--api-key", "helpsteer-test-token-0123456789"], capsys)
    assert rc == 0, err
    r = pl.read_parquet(ws / "datasets" / "pulled" / "ratings.parquet")
    got = set(r.select("response_id", "annotator_id", "attribute", "score").iter_rows())
    assert got == expected
    orig = pl.read_parquet(ws / "datasets" / "items" / "responses.parquet")
    pulled = pl.read_parquet(ws / "datasets" / "pulled" / "responses.parquet")
    assert set(pulled["response_id"]) == set(orig["response_id"])  # same ids: same conversations and texts
    # ready for analyze
    assert run_cli("analyze", "--workspace", ws, "--name", "pulled", "--bootstrap", "20", "--min-shared", "2") == 0

    # re-push creates no duplicates; re-pull gives the same dataset
    before = {t: pl.read_parquet(ws / "datasets" / "pulled" / f"{t}.parquet") for t in ("responses", "ratings")}
    rc, out, _ = _hs(["annotate", "push", "--workspace", ws, "--name", "items", "--kind", "ratings", "--url", server.url, "--api-key", "helpsteer-test-token-0123456789"], capsys)
    assert rc == 0 and int(out.strip().splitlines()[-1]) == pid
    assert len(list(ls.tasks.list(project=pid))) == 4
    rc, _, _ = _hs(["annotate", "pull", "--project", "items-ratings", "--workspace", ws, "--name", "pulled", "--url", server.url, "--api-key", "helpsteer-test-token-0123456789"], capsys)
    assert rc == 0
    for t, df in before.items():
        assert pl.read_parquet(ws / "datasets" / "pulled" / f"{t}.parquet").sort(pl.all().exclude("context", "flags")).equals(df.sort(pl.all().exclude("context", "flags")))


@pytest.mark.slow
def test_preference_round_trip_and_invalid_choice(server, ws, tmp_path, capsys, monkeypatch):
    rows = [{"split": "train", "prompt": f"Question {i}?", "response_1": f"answer {i} one", "response_2": f"answer {i} two", "preference_strength": 1,
             "preference_statement": "", "preference_elaboration": "", "all_preferences_unprocessed": []} for i in range(3)]
    f = write_jsonl(tmp_path / "preference.jsonl", rows)
    assert run_cli("ingest", f, "--workspace", ws, "--name", "prefs") == 0
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "helpsteer-test-token-0123456789")
    rc, out, err = _hs(["annotate", "push", "--workspace", ws, "--name", "prefs", "--kind", "preference", "--overlap", "3"], capsys)
    assert rc == 0, err
    pid = int(out.strip().splitlines()[-1])
    ls = _client(server)
    assert ls.projects.get(id=pid).maximum_annotations == 3
    expected = set()
    tasks = sorted(ls.tasks.list(project=pid, fields="all"), key=lambda t: t.id)
    for n, task in enumerate(tasks):
        for u, email in enumerate(EMAILS):
            s = str((n + 2 * u) % 7 - 3) if not (n == 2 and u == 2) else "7"  # one out-of-range choice
            if n == 0 and u == 1:
                s = "2.0"  # a number, but not one of the config's choices: only the labeling config catches it
            text = f"{email} on {task.data['pair_id']}"
            ann = ls.annotations.create(id=task.id, completed_by=server.users[email], result=[
                {"from_name": "preference", "to_name": "response_a", "type": "choices", "value": {"choices": [s]}},
                {"from_name": "justification", "to_name": "response_a", "type": "textarea", "value": {"text": [text]}}])
            if s == "7":
                bad = (ann.id, task.data["item_id"])
            elif s == "2.0":
                off_config = (ann.id, task.data["item_id"])
            else:  # issue 19 point 14: the other two annotations of the task with the bad one are kept
                expected.add((task.data["pair_id"], email, float(s), text))
    assert len(expected) == 7
    rc, _, err = _hs(["annotate", "pull", "--project", str(pid), "--workspace", ws, "--name", "prefs-pulled"], capsys)
    assert rc == 0, err
    assert f"project {pid} -> dataset 'prefs-pulled': 3 tasks, 0 quarantined, 2 annotations quarantined (responses 6, preferences 7)" in err
    p = pl.read_parquet(ws / "datasets" / "prefs-pulled" / "preferences.parquet")
    assert set(p.select("pair_id", "annotator_id", "strength", "justification").iter_rows()) == expected
    orig_pairs = set(pl.read_parquet(ws / "datasets" / "prefs" / "preferences.parquet")["pair_id"])
    assert set(p["pair_id"]) <= orig_pairs  # the platform's pair ids survive the round trip
    orig_responses = set(pl.read_parquet(ws / "datasets" / "prefs" / "responses.parquet")["response_id"])
    assert set(pl.read_parquet(ws / "datasets" / "prefs-pulled" / "responses.parquet")["response_id"]) == orig_responses  # all 3 tasks' responses
    source = f"{server.url}/projects/{pid}"  # issue 19 point 15: the project, not the temporary export file
    q = quarantine(ws, "prefs-pulled")
    assert [(e["source"], e["line"], e["reason"], e["record"]["id"], e["part"]) for e in q] == [
        (source, 1, f"task {off_config[1]}, annotation {off_config[0]} by {EMAILS[1]}: result 'preference': value {{'choices': ['2.0']}} does not fit "
                    "the project's labeling config (allowed: -3, -2, -1, 0, 1, 2, 3)", off_config[0], True),
        (source, 3, f"task {bad[1]}, annotation {bad[0]} by {EMAILS[2]}: result 'preference': choice '7' is not an integer in -3..3", bad[0], True)]
    src = manifest(ws, "prefs-pulled")["sources"][0]
    assert (src["path"], src["records"], src["ingested"], src["quarantined"], src["quarantined_parts"]) == (source, 3, 3, 0, 2)
    assert run_cli("analyze", "--workspace", ws, "--name", "prefs-pulled", "--bootstrap", "20") == 0

    # issue 19 point 15: a second pull of the unchanged project gives byte-identical tables and quarantine
    rc, _, err = _hs(["annotate", "pull", "--project", str(pid), "--workspace", ws, "--name", "prefs-pulled-2"], capsys)
    assert rc == 0, err
    one, two = ws / "datasets" / "prefs-pulled", ws / "datasets" / "prefs-pulled-2"
    data_files = sorted(f.name for f in one.iterdir() if f.is_file() and f.name != "manifest.json")
    assert data_files == sorted(f.name for f in two.iterdir() if f.is_file() and f.name != "manifest.json")
    assert {"quarantine.jsonl", "responses.parquet", "preferences.parquet"} <= set(data_files)
    for name in data_files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    m1, m2 = manifest(ws, "prefs-pulled"), manifest(ws, "prefs-pulled-2")
    assert m1["sources"] == m2["sources"]
    assert {k: v for k, v in m1.items() if k not in ("name", "created", "updated")} == {k: v for k, v in m2.items() if k not in ("name", "created", "updated")}


@pytest.mark.slow
def test_errors_exit_2_with_one_line(server, ws, tmp_path):
    _ratings_dataset(ws, tmp_path)
    from labelstudio_server import free_port

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "helpsteer.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT)

    dead = f"http://127.0.0.1:{free_port()}"
    p = cli("annotate", "push", "--workspace", ws, "--name", "items", "--kind", "ratings", "--url", dead, "--api-key", "k")
    assert p.returncode == 2 and "cannot reach Label Studio" in p.stderr and "Traceback" not in p.stderr
    p = cli("annotate", "pull", "--project", "1", "--workspace", ws, "--name", "x", "--url", server.url, "--api-key", "wrong-token-secret")
    assert p.returncode == 2 and "rejected the API key" in p.stderr and "wrong-token-secret" not in p.stderr
    p = cli("annotate", "pull", "--project", "no such project", "--workspace", ws, "--name", "x", "--url", server.url, "--api-key", "helpsteer-test-token-0123456789")
    assert p.returncode == 2 and "no project titled" in p.stderr
    p = cli("annotate", "pull", "--project", "99999", "--workspace", ws, "--name", "x", "--url", server.url, "--api-key", "helpsteer-test-token-0123456789")
    assert p.returncode == 2 and "99999" in p.stderr
    assert not (ws / "datasets" / "x").exists()
    p = cli("annotate", "push", "--workspace", ws, "--name", "items", "--kind", "ratings")
    assert p.returncode == 2 and "LABEL_STUDIO_URL" in p.stderr


# --- export files through `helpsteer ingest` (no server) ------------------------------------------
def _choice(name: str, value, to: str = "response") -> dict:
    return {"from_name": name, "to_name": to, "type": "choices", "value": {"choices": [str(value)]}}


def _ann(ann_id: int, email: str, result: list) -> dict:
    return {"id": ann_id, "completed_by": {"id": ann_id, "email": email}, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z", "result": result}


def _export(tmp_path, tasks) -> Path:
    f = tmp_path / "export.json"
    f.write_text(json.dumps(tasks))
    return f


def test_out_of_range_annotation_quarantines_only_that_annotation(ws, tmp_path, capsys):
    """Issue 19 point 14: the task's response and the other annotators' labels stay; the bad annotation
    alone goes to quarantine, naming the task's line, the annotator, the field, the value and the range."""
    bad_rating = _ann(12, EMAILS[1], [_choice("helpfulness", 7), _choice("correctness", 1)])
    bad_pref = _ann(22, EMAILS[1], [_choice("preference", 9, "response_a")])
    tasks = [
        {"id": 1, "data": {"item_id": "r1", "prompt": "Capital of France?", "response": "Paris."}, "annotations": [
            _ann(11, EMAILS[0], [_choice("helpfulness", 3), _choice("correctness", 4)]), bad_rating, _ann(13, EMAILS[2], [_choice("helpfulness", 0)])]},
        {"id": 2, "data": {"item_id": "p1", "pair_id": "p1", "prompt": "2+2?", "response_a": "4", "response_b": "5"}, "annotations": [
            _ann(21, EMAILS[0], [_choice("preference", -2, "response_a"), {"from_name": "justification", "to_name": "response_a", "type": "textarea", "value": {"text": ["4 is right"]}}]),
            bad_pref]},
        # every annotation of a task invalid: the task's response is still ingested
        {"id": 3, "data": {"item_id": "r2", "prompt": "Capital of Peru?", "response": "Lima."}, "annotations": [_ann(31, EMAILS[0], [_choice("coherence", -1)])]},
    ]
    f = _export(tmp_path, tasks)
    capsys.readouterr()
    assert run_cli("ingest", f, "--workspace", ws, "--name", "ls") == 0
    err = capsys.readouterr().err
    assert f"{f}: 3 records, 3 ingested, 0 quarantined, and 3 parts of ingested records (annotations)" in err
    paris, lima = response_id([{"role": "user", "content": "Capital of France?"}], "Paris."), response_id([{"role": "user", "content": "Capital of Peru?"}], "Lima.")
    four, five = (response_id([{"role": "user", "content": "2+2?"}], t) for t in ("4", "5"))
    assert set(table(ws, "ls", "responses")["response_id"]) == {paris, lima, four, five}
    assert sorted(table(ws, "ls", "ratings").select("response_id", "annotator_id", "attribute", "score").rows()) == sorted([
        (paris, EMAILS[0], "helpfulness", 3.0), (paris, EMAILS[0], "correctness", 4.0), (paris, EMAILS[2], "helpfulness", 0.0)])
    assert table(ws, "ls", "preferences").select("pair_id", "response_a_id", "response_b_id", "annotator_id", "strength", "justification").rows() == [
        ("p1", four, five, EMAILS[0], -2.0, "4 is right")]
    q = quarantine(ws, "ls")
    assert [(e["line"], e["reason"], e["record"], e["part"]) for e in q] == [
        (1, f"task r1, annotation 12 by {EMAILS[1]}: result 'helpfulness': choice '7' is out of range 0..4", bad_rating, True),
        (2, f"task p1, annotation 22 by {EMAILS[1]}: result 'preference': choice '9' is not an integer in -3..3", bad_pref, True),
        (3, f"task r2, annotation 31 by {EMAILS[0]}: result 'coherence': choice '-1' is out of range 0..4", tasks[2]["annotations"][0], True)]
    assert {e["source"] for e in q} == {str(f)}
    src = manifest(ws, "ls")["sources"][0]
    assert (src["records"], src["ingested"], src["quarantined"], src["quarantined_parts"]) == (3, 3, 0, 3)
    # --strict: the first invalid annotation is fatal, nothing written
    capsys.readouterr()
    assert run_cli("ingest", f, "--workspace", ws, "--name", "strict", "--strict") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {f}:1: task r1, annotation 12 by {EMAILS[1]}: result 'helpfulness': choice '7' is out of range 0..4 (--strict: nothing was written)")
    assert not (ws / "datasets" / "strict").exists()

    # the same in a JSON_MIN export (one element per annotation)
    mini = [{"id": 1, "item_id": "r1", "prompt": "Q", "response": "A", "helpfulness": "3", "annotator": EMAILS[0], "annotation_id": 11},
            {"id": 1, "item_id": "r1", "prompt": "Q", "response": "A", "helpfulness": "7", "annotator": EMAILS[1], "annotation_id": 12},
            {"id": 2, "item_id": "r2", "prompt": "Q", "response": "B", "helpfulness": "x", "annotator": EMAILS[1], "annotation_id": 21}]
    g = tmp_path / "min.json"
    g.write_text(json.dumps(mini))
    assert run_cli("ingest", g, "--workspace", ws, "--name", "lsmin", "--format", "label-studio") == 0
    assert sorted(table(ws, "lsmin", "responses")["response"]) == ["A", "B"]
    assert table(ws, "lsmin", "ratings").select("annotator_id", "attribute", "score").rows() == [(EMAILS[0], "helpfulness", 3.0)]
    assert [(e["line"], e["reason"], e["record"], e["part"]) for e in quarantine(ws, "lsmin")] == [
        (2, f"task r1, annotation 12 by {EMAILS[1]}: result 'helpfulness': choice '7' is out of range 0..4", mini[1], True),
        (3, f"task r2, annotation 21 by {EMAILS[1]}: result 'helpfulness': choice 'x' is out of range 0..4", mini[2], True)]
    src = manifest(ws, "lsmin")["sources"][0]
    assert (src["records"], src["ingested"], src["quarantined"], src["quarantined_parts"]) == (3, 3, 0, 2)


def test_from_name_object_and_non_object_annotation_are_quarantined(ws, tmp_path):
    """Issue 19 point 4: a result whose from_name is an object (today a TypeError traceback) and an
    annotation that is no object (today silently skipped) each give a quarantine entry; the rest stays."""
    odd = {"id": 42, "completed_by": 7, "result": [{"from_name": {"x": 1}, "to_name": "response", "type": "choices", "value": {"choices": ["3"]}}]}
    texty = {**_ann(12, EMAILS[1], [_choice("helpfulness", 4)]), "was_cancelled": "false"}  # neither cancelled nor kept silently
    tasks = [{"id": 1, "data": {"item_id": "r1", "prompt": "Q", "response": "A"}, "annotations": [_ann(11, EMAILS[0], [_choice("helpfulness", 2)]), odd, "junk", texty]},
             # a response that is no string: the task is unusable (today its repr became the response)
             {"id": 2, "data": {"item_id": "p1", "prompt": "Q", "response_a": {"x": 1}, "response_b": "B"}, "annotations": []}]
    f = _export(tmp_path, tasks)
    assert run_cli("ingest", f, "--workspace", ws, "--name", "ls", "--format", "label-studio") == 0
    assert table(ws, "ls", "ratings").select("annotator_id", "attribute", "score").rows() == [(EMAILS[0], "helpfulness", 2.0)]
    assert table(ws, "ls", "responses")["response"].to_list() == ["A"]
    assert [(e["line"], e["reason"], e["record"], e.get("part")) for e in quarantine(ws, "ls")] == [  # whole records first, then parts
        (2, "task p1: field 'data.response_a': expected a string, got dict", tasks[1], None),
        (1, "task r1, annotation 3 of the task: expected an object, got str", "junk", True),
        (1, "task r1, annotation 4 of the task: field 'was_cancelled': expected true or false, got 'false'", texty, True),
        (1, "task r1, annotation 42 by label-studio:7: field 'result.from_name' (item 1): expected the name of a control (a string), got {'x': 1}", odd, True)]
    src = manifest(ws, "ls")["sources"][0]
    assert (src["records"], src["ingested"], src["quarantined"], src["quarantined_parts"]) == (2, 1, 1, 3)


def test_export_nested_10000_deep(ws, tmp_path):
    """Issue 19 point 4: an export element nested 10,000 deep (today a RecursionError traceback) is
    quarantined and the other tasks are read; a file with nothing else exits 2 with one line."""
    deep = '{"id": 2, "data": {"prompt": "Q", "response": "B", "x": ' + "[" * 10_000 + '"]}"' + "]" * 10_000 + '}, "annotations": []}'
    good = [json.dumps({"id": i, "data": {"item_id": f"r{i}", "prompt": "Q", "response": t}, "annotations": [_ann(i, EMAILS[0], [_choice("helpfulness", i)])]})
            for i, t in ((1, "A"), (3, "C"))]
    f = tmp_path / "export.json"
    f.write_text("[" + ", ".join([good[0], deep, good[1]]) + "]")
    assert run_cli("ingest", f, "--workspace", ws, "--name", "ls", "--format", "label-studio") == 0
    assert table(ws, "ls", "ratings").select("attribute", "score").rows() == [("helpfulness", 1.0), ("helpfulness", 3.0)]
    (q,) = quarantine(ws, "ls")
    assert (q["line"], q["reason"], q["record"][:40]) == (2, "invalid JSON at element 2: nested too deep (depth limit exceeded)", deep[:40])
    src = manifest(ws, "ls")["sources"][0]
    assert (src["records"], src["ingested"], src["quarantined"]) == (3, 2, 1)

    only = tmp_path / "deep.json"
    only.write_text("[" + deep + "]")
    p = subprocess.run([sys.executable, "-m", "helpsteer.cli", "ingest", str(only), "--workspace", str(ws), "--name", "deep", "--format", "label-studio"],
                       check=False, capture_output=True, text=True, cwd=ROOT)
    assert (p.returncode, p.stderr.splitlines()) == (2, [f"error: {only}: no readable record to recognise its format (empty file, or nothing parses as JSON/CSV)"])
    assert not (ws / "datasets" / "deep").exists()
