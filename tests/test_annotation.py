"""Round trips with a real Label Studio server (started by the test from .venv-ls): push a dataset,
annotate as three users, pull, and the workspace dataset equals what was annotated, value for
value; re-push and re-pull change nothing. Also the configs, export-tasks and the error paths."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from annotation.configs import KINDS, labeling_config, validate_config
from conftest import ROOT, run_cli, write_jsonl
from helpsteer.ids import response_id

pytestmark = pytest.mark.slow

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
    rc, _, _ = _hs(["annotate", "pull", "--project", f"items-ratings", "--workspace", ws, "--name", "pulled", "--url", server.url, "--api-key", "helpsteer-test-token-0123456789"], capsys)
    assert rc == 0
    for t, df in before.items():
        assert pl.read_parquet(ws / "datasets" / "pulled" / f"{t}.parquet").sort(pl.all().exclude("context", "flags")).equals(df.sort(pl.all().exclude("context", "flags")))


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
            text = f"{email} on {task.data['pair_id']}"
            ls.annotations.create(id=task.id, completed_by=server.users[email], result=[
                {"from_name": "preference", "to_name": "response_a", "type": "choices", "value": {"choices": [s]}},
                {"from_name": "justification", "to_name": "response_a", "type": "textarea", "value": {"text": [text]}}])
            if n != 2:
                expected.add((task.data["pair_id"], email, float(s), text))
    rc, _, err = _hs(["annotate", "pull", "--project", str(pid), "--workspace", ws, "--name", "prefs-pulled"], capsys)
    assert rc == 0, err
    p = pl.read_parquet(ws / "datasets" / "prefs-pulled" / "preferences.parquet")
    assert set(p.select("pair_id", "annotator_id", "strength", "justification").iter_rows()) == expected
    orig_pairs = set(pl.read_parquet(ws / "datasets" / "prefs" / "preferences.parquet")["pair_id"])
    assert set(p["pair_id"]) <= orig_pairs  # the platform's pair ids survive the round trip
    q = [json.loads(line) for line in (ws / "datasets" / "prefs-pulled" / "quarantine.jsonl").read_text().splitlines()]
    assert len(q) == 1 and ("labeling config" in q[0]["reason"] or "-3..3" in q[0]["reason"])
    assert run_cli("analyze", "--workspace", ws, "--name", "prefs-pulled", "--bootstrap", "20") == 0


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
