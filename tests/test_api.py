"""The scoring API: in-process checks of every route, limit and error with the real app and a tiny
trained checkpoint; a real uvicorn process with concurrent clients (results equal direct scoring,
requests merged into micro-batches), OpenRLHF's exact payload, graceful SIGTERM; schemathesis
fuzzing from the OpenAPI schema with zero 5xx; `helpsteer score` files."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import polars as pl
import pytest
from conftest import ROOT, run_cli, synthetic_workspace, write_jsonl
from fastapi.testclient import TestClient
from serve_process import Server

from rm_training.api import RewardClient
from rm_training.api.app import create_app
from rm_training.api.settings import Settings
from rm_training.data import truncate_left
from rm_training.scoring import Item, Scorer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    ws = synthetic_workspace(root, seed=5, n_prompts=80, datasets=("pref", "hs2"))
    common = ["--backbone", "tiny", "--num_train_epochs", "1", "--max_length", "64", "--save_strategy", "no"]
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", *common, "--out", "bt") == 0
    assert run_cli("train", "--workspace", ws, "--name", "hs2", "--objective", "regression", *common, "--out", "reg") == 0
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "meanvar", *common, "--out", "mv") == 0
    assert run_cli("train", "--workspace", ws, "--name", "hs2", "--objective", "principle", *common, "--out", "prin") == 0
    return {"ws": ws, "bt": ws / "runs" / "bt", "regression": ws / "runs" / "reg", "meanvar": ws / "runs" / "mv", "principle": ws / "runs" / "prin",
            "syn": root / "syn"}


def client(run, **kw) -> TestClient:
    return TestClient(create_app(Settings(model=str(run), **kw)))


ITEMS = [{"prompt": "What is the capital of France?", "response": "Paris is the capital of France."},
         {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "response": "4"},
         {"prompt": "Say hi", "response": "hi " * 200}]  # longer than max_length 64: truncated


def direct(run, items) -> list[dict]:
    sc = Scorer(run)
    conv = [Item(it["messages"] if "messages" in it else [{"role": "user", "content": it["prompt"]}], it["response"]) for it in items]
    return sc.score(conv)


@pytest.mark.parametrize("objective", ["bt", "regression"])
def test_score_equals_direct_scoring_and_reads_the_objective(runs, objective):
    with client(runs[objective]) as c:
        r = c.post("/v1/score", json={"items": ITEMS})
        assert r.status_code == 200
        body = r.json()
        assert body["model"] == runs[objective].name and len(body["scores"]) == 3
        want = direct(runs[objective], ITEMS)
        for got, exp in zip(body["scores"], want):
            assert got["reward"] == pytest.approx(exp["reward"], abs=1e-5)
        assert [s["truncated"] for s in body["scores"]] == [False, False, True]
        if objective == "regression":
            cfg = json.loads((runs[objective] / "config.json").read_text())
            for s in body["scores"]:
                attrs = s["attributes"]
                assert list(attrs) == cfg["reward_attributes"]
                # the scalar reward is the weighted attributes (Nemotron-4-340B-Reward weights)
                assert s["reward"] == pytest.approx(sum(w * attrs[a] for a, w in zip(cfg["reward_attributes"], cfg["reward_weights"])), abs=1e-6)
        else:
            assert all(s["attributes"] is None and s["uncertainty"] is None for s in body["scores"])
        m = c.get("/v1/models").json()["data"][0]
        assert m["objective"] == objective and m["max_length"] == 64 and m["backbone"] == "nemotron_h"


def test_meanvar_and_principle_models_through_every_endpoint(runs):
    from scipy.stats import norm

    with client(runs["meanvar"]) as c:
        s = c.post("/v1/score", json={"items": ITEMS[:2]}).json()["scores"]
        assert all(x["uncertainty"] > 0 and x["attributes"] is None for x in s)
        r = c.post("/v1/compare", json={"items": [{"prompt": ITEMS[0]["prompt"], "response_a": ITEMS[0]["response"], "response_b": "Berlin."}]}).json()["results"][0]
        b = c.post("/v1/score", json={"items": [{"prompt": ITEMS[0]["prompt"], "response": "Berlin."}]}).json()["scores"][0]
        want = norm.cdf((s[0]["reward"] - b["reward"]) / np.sqrt(s[0]["uncertainty"] ** 2 + b["uncertainty"] ** 2))
        assert r["p_a_better"] == pytest.approx(want, abs=1e-6)
        assert c.post("/get_reward", json={"query": ["x"]}).status_code == 200
        assert c.get("/v1/models").json()["data"][0]["attributes"] == ["mean", "log_var"]
    with client(runs["principle"]) as c:
        body = {"items": [{"prompt": "Hi", "response": "Hello.", "principles": ["The response is helpful.", "The response is verbose."]}]}
        res = c.post("/v1/principles", json=body).json()["results"][0]["principles"]
        assert [x["principle"] for x in res] == body["items"][0]["principles"]
        direct = Scorer(runs["principle"]).score([Item([{"role": "user", "content": "Hi"}], "Hello.", p) for p in body["items"][0]["principles"]])
        assert [x["probability"] for x in res] == pytest.approx([d["probability"] for d in direct], abs=1e-6)
        # /v1/score without a principle uses the model's default one
        s = c.post("/v1/score", json={"items": [{"prompt": "Hi", "response": "Hello."}]}).json()["scores"][0]
        assert s["probability"] == pytest.approx(res[0]["probability"], abs=1e-6)


def test_compare_and_get_reward(runs):
    with client(runs["bt"]) as c:
        r = c.post("/v1/compare", json={"items": [{"prompt": ITEMS[0]["prompt"], "response_a": "Paris.", "response_b": "Berlin."}]}).json()
        res = r["results"][0]
        assert res["p_a_better"] == pytest.approx(1 / (1 + np.exp(-(res["reward_a"] - res["reward_b"]))), abs=1e-9)
        s = c.post("/v1/score", json={"items": [{"prompt": ITEMS[0]["prompt"], "response": "Paris."}]}).json()["scores"][0]
        assert s["reward"] == pytest.approx(res["reward_a"], abs=1e-6)
        # OpenRLHF: query = prompt + response as the policy rendered it; the prompt prefix is split off
        prompt = "What is the capital of France?"
        g = c.post("/get_reward", json={"query": [prompt + "Paris.", "no prompt here"], "prompts": [prompt, "other"], "labels": ["", ""]})
        assert g.status_code == 200
        got = g.json()
        assert got["rewards"][0] == pytest.approx(res["reward_a"], abs=1e-6)
        # scores: the BT probability of beating a response at the run's mean reward
        mean = json.loads((runs["bt"] / "config.json").read_text())["reward_mean"]
        assert got["scores"] == pytest.approx([1 / (1 + np.exp(-(r - mean))) for r in got["rewards"]], abs=1e-9)
        assert c.post("/get_reward", json={"query": []}).json() == {"rewards": [], "scores": [], "extra_logs": {}}


def test_bad_input_is_4xx_with_one_sentence(runs):
    with client(runs["bt"], max_items=4, max_body_bytes=4096) as c:
        cases = [
            ({"items": []}, 422, "at least 1 item"),
            ({"items": [{"response": "x"}]}, 422, "give prompt or messages"),
            ({"items": [{"prompt": "a", "response": "x", "bogus": 1}]}, 422, "items.0.bogus: unknown field"),
            ({"items": [{"prompt": 3, "response": "x"}]}, 422, "items.0.prompt"),
            ({"items": "nope"}, 422, "items"),
            ({"items": [{"prompt": "a", "response": "b"}] * 5}, 413, "at most 4 items"),
            ({"items": [{"prompt": "a", "response": "b" * 5000}]}, 413, "exceeds the limit of 4096 bytes"),
        ]
        for body, status, text in cases:
            r = c.post("/v1/score", json=body)
            assert r.status_code == status and text in r.json()["detail"], (body, r.text)
        r = c.post("/v1/score", content=b'{"items": [', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
        assert c.post("/v1/principles", json={"items": [{"prompt": "a", "response": "b", "principles": ["p"]}]}).status_code == 400
        assert c.post("/get_reward", json={"query": "not a list"}).status_code == 422
        assert c.post("/v1/compare", json={"items": [{"prompt": "a", "response_a": "b"}] * 1}).status_code == 422
        assert c.get("/nope").status_code == 404


def test_api_keys(runs):
    with client(runs["bt"], api_key="k1, k2") as c:
        assert c.get("/healthz").status_code == 200 and c.get("/openapi.json").status_code == 200 and c.get("/docs").status_code == 200
        body = {"items": [ITEMS[0]]}
        assert c.post("/v1/score", json=body).status_code == 401
        assert c.post("/v1/score", json=body, headers={"Authorization": "Bearer k3"}).status_code == 401
        assert c.post("/v1/score", json=body, headers={"Authorization": "Basic k1"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        for k in ("k1", "k2"):
            assert c.post("/v1/score", json=body, headers={"Authorization": f"Bearer {k}"}).status_code == 200
        assert c.post("/get_reward", json={"query": ["x"]}).status_code == 401


def test_metrics_count_requests_errors_and_batches(runs):
    with client(runs["bt"]) as c:
        c.post("/v1/score", json={"items": ITEMS})
        c.post("/v1/score", json={"items": []})
        text = c.get("/metrics").text
    assert 'helpsteer_requests_total{route="/v1/score",status="200"} 1.0' in text
    assert 'helpsteer_request_errors_total{route="/v1/score",status="422"} 1.0' in text
    assert "helpsteer_batch_size_sum 3.0" in text and "helpsteer_queue_depth 0.0" in text
    assert 'helpsteer_request_latency_seconds_count{route="/v1/score"} 2.0' in text


@pytest.mark.slow
def test_real_server_concurrent_clients_openrlhf_and_graceful_stop(runs, tmp_path):
    """A real uvicorn process: 48 concurrent clients get exactly the rewards of direct scoring,
    the batcher merges their requests, OpenRLHF's own payload (no Authorization) is answered,
    and SIGTERM ends the process cleanly (exit 0)."""
    rng = np.random.default_rng(0)
    words = "the a cat dog runs quickly answer paris france water blue".split()
    items = [{"prompt": " ".join(rng.choice(words, 5)), "response": " ".join(rng.choice(words, int(rng.integers(1, 40))))} for _ in range(48)]
    want = [s["reward"] for s in direct(runs["bt"], items)]
    srv = Server(runs["bt"], "--max-wait-ms", "20", log=tmp_path / "serve.log").wait()
    try:
        with ThreadPoolExecutor(48) as pool:
            got = list(pool.map(lambda it: httpx.post(srv.url + "/v1/score", json={"items": [it]}, timeout=120).json()["scores"][0]["reward"], items))
        assert np.allclose(got, want, atol=1e-5)
        metrics = httpx.get(srv.url + "/metrics").text
        n = float(next(x.split()[-1] for x in metrics.splitlines() if x.startswith("helpsteer_batch_requests_count")))
        assert n < 48, "concurrent requests were not merged into micro-batches"
        # exactly what OpenRLHF's remote_rm_fn posts: json={"query", "prompts", "labels"}, Content-Type only
        payload = {"query": [items[0]["prompt"] + items[0]["response"]], "prompts": [items[0]["prompt"]], "labels": [""]}
        r = httpx.post(srv.url + "/get_reward", json=payload, headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["rewards"][0] == pytest.approx(want[0], abs=1e-5)
        with RewardClient(srv.url) as rc:
            assert rc.rewards(items[:3]) == pytest.approx(want[:3], abs=1e-5)
            assert rc.models()[0]["objective"] == "bt"
        # SIGTERM while a large request is in flight: it is answered before the process ends
        big = {"items": [{"prompt": "p", "response": "long answer " * 30}] * 256}
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(httpx.post, srv.url + "/v1/score", json=big, timeout=120)
            deadline = time.time() + 30
            while time.time() < deadline and "helpsteer_queue_depth 256.0" not in httpx.get(srv.url + "/metrics").text:
                time.sleep(0.005)
            code = srv.stop()
            r = fut.result()
        assert r.status_code == 200 and len(r.json()["scores"]) == 256
    finally:
        code = srv.stop()
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown: -15 with a clean log
    assert code in (0, -15) and "Traceback" not in (tmp_path / "serve.log").read_text()


@pytest.mark.slow
def test_schemathesis_fuzzing_finds_no_server_error(runs, tmp_path):
    srv = Server(runs["regression"], log=tmp_path / "serve.log").wait()
    try:
        st = [sys.executable, "-m", "schemathesis.cli", "run", srv.url + "/openapi.json", "--checks", "not_a_server_error",
              "--max-examples", "40", "--phases", "examples,coverage,fuzzing", "--workers", "2", "--request-timeout", "60"]
        p = subprocess.run(st, cwd=ROOT, capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            # schemathesis' own example generator can crash inside CPython 3.11's compile()
            # ("SystemError: AST constructor recursion depth mismatch"): not a finding against the
            # server, so then every generated case must have passed and no check may have failed
            m = re.search(r"(\d+) generated, (\d+) passed", p.stdout)
            assert "AST constructor recursion depth mismatch" in p.stdout and m and m.group(1) == m.group(2) and "Failures:" not in p.stdout, p.stdout[-4000:] + p.stderr[-2000:]
        five = [x for x in httpx.get(srv.url + "/metrics").text.splitlines() if x.startswith("helpsteer_requests_total") and 'status="5' in x]
        assert not five, five
    finally:
        srv.stop()


def test_score_command_pairs_and_responses(runs, tmp_path):
    out = tmp_path / "scored.parquet"
    pref = runs["syn"] / "helpsteer2" / "preference" / "preference.jsonl.gz"
    assert run_cli("score", "--model", runs["bt"], "--data", pref, "--out", out) == 0
    df = pl.read_parquet(out)
    assert {"pair_id", "reward_a", "reward_b", "p_a_better", "label", "response_a", "response_b", "truncated_a"} <= set(df.columns)
    assert np.allclose(df["p_a_better"].to_numpy(), 1 / (1 + np.exp(-(df["reward_a"] - df["reward_b"]).to_numpy())))
    # the same numbers as the API for one of the pairs
    row = df.row(0, named=True)
    with client(runs["bt"]) as c:
        s = c.post("/v1/score", json={"items": [{"messages": row["context"], "response": row["response_a"]}]}).json()["scores"][0]
    assert s["reward"] == pytest.approx(row["reward_a"], abs=1e-5)
    f = write_jsonl(tmp_path / "resp.jsonl", [{"prompt": "a", "response": "b", "helpfulness": 3, "correctness": 3, "coherence": 4, "complexity": 1, "verbosity": 1}])
    out2 = tmp_path / "r.parquet"
    assert run_cli("score", "--model", runs["regression"], "--data", f, "--out", out2) == 0
    df2 = pl.read_parquet(out2)
    assert df2.height == 1 and {"reward", "helpfulness", "verbosity", "truncated"} <= set(df2.columns)
    assert run_cli("score", "--model", runs["bt"], "--data", f, "--out", tmp_path / "x.csv") == 2
    assert run_cli("score", "--model", tmp_path, "--data", f, "--out", out2) == 2
    assert run_cli("score", "--model", runs["bt"], "--data", f, "--out", tmp_path / "y.parquet", "--level", "pairs") == 2


def test_a_model_failure_is_503_and_the_server_keeps_serving(runs):
    class Flaky(Scorer):
        fail = True

        def logits(self, ids):
            if Flaky.fail:
                raise RuntimeError("CUDA error: device-side assert (simulated)")
            return super().logits(ids)

    sc = Flaky(runs["bt"])
    with TestClient(create_app(Settings(model=str(runs["bt"])), scorer=sc)) as c:
        r = c.post("/v1/score", json={"items": [ITEMS[0]]})
        assert r.status_code == 503 and "RuntimeError" in r.json()["detail"]
        Flaky.fail = False
        assert c.post("/v1/score", json={"items": [ITEMS[0]]}).status_code == 200
        assert 'helpsteer_request_errors_total{route="/v1/score",status="503"} 1.0' in c.get("/metrics").text


@pytest.mark.parametrize("flag, value, message", [
    ("--port", "99999", "--port 99999: must be <= 65535"),
    ("--max-length", "-5", "--max-length -5: must be >= 0"),
    ("--max-items", "0", "--max-items 0: must be >= 1"),
    ("--max-batch-size", "0", "--max-batch-size 0: must be >= 1"),
    ("--max-wait-ms", "-1", "--max-wait-ms -1: must be >= 0"),
    ("--timeout-keep-alive", "0", "--timeout-keep-alive 0: must be > 0"),
    ("--timeout-header", "-1", "--timeout-header -1: must be > 0"),
    ("--timeout-body", "nan", "--timeout-body nan: must be > 0"),
])
def test_bad_server_settings_exit_2_with_one_line_before_loading(tmp_path, capsys, flag, value, message):
    # checked before the model: a missing run directory is not what is reported
    assert run_cli("serve", "--model", tmp_path / "no-run", flag, value) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {message}" and "Traceback" not in err


def test_an_api_key_of_only_blanks_and_commas_refuses_to_start(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HELPSTEER_API_KEY", " , ")
    assert run_cli("serve", "--model", tmp_path / "no-run") == 2
    assert capsys.readouterr().err.strip() == (
        "error: HELPSTEER_API_KEY=' , ' holds no key (only blanks and commas): set one or more keys, "
        "comma-separated, or unset it to serve without authentication")


def test_docs_render_offline_from_local_assets():
    """/docs and /redoc reference only this server's own scripts, styles and icons (no CDN), each
    served 200 with its content type, with no API key needed even when keys are set."""
    c = TestClient(create_app(Settings(model="unused", api_key="k1")))  # no lifespan: the pages need no model
    seen = set()
    for page in ("/docs", "/redoc"):
        html = c.get(page).text
        assert "http://" not in html and "https://" not in html and "//cdn" not in html, page
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith("/docs-assets/") for u in urls), urls
        seen |= set(urls)
    assert seen == {"/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/docs-assets/favicon.png", "/docs-assets/redoc.standalone.js"}
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for u in sorted(seen):
        r = c.get(u)
        assert r.status_code == 200 and r.headers["content-type"].split(";")[0] == types[u[u.rindex("."):]] and len(r.content) > 1000, u
    # Swagger UI 5 reads the OpenAPI 3.1 schema FastAPI writes (4.x cannot render 3.1)
    assert c.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert re.search(rb'"5\.\d+\.\d+"', c.get("/docs-assets/swagger-ui-bundle.js").content)
    assert c.get("/docs-assets/nope.js").status_code == 404


def _until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket error after 60 s if it never does)."""
    s.settimeout(60)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


@pytest.mark.slow
def test_real_server_timeouts_and_a_client_that_leaves_mid_body(runs, tmp_path):
    """A real uvicorn process with 1 s timeouts: an idle connection (before any request and after
    one) is closed, a client that stalls in its headers or its body gets 408 and a closed
    connection, and a client that closes mid-body is counted as 499 in /metrics, never as a 5xx."""
    srv = Server(runs["bt"], "--timeout-keep-alive", "1", "--timeout-header", "1", "--timeout-body", "1", log=tmp_path / "serve.log").wait()
    addr = ("127.0.0.1", srv.port)
    post = b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    try:
        with socket.create_connection(addr) as s:  # connects, never sends
            assert _until_closed(s) == b""
        with socket.create_connection(addr) as s:  # one request, then idle on the kept-alive connection
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = _until_closed(s)
            assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b'"status":"ok","model":"bt"}')
        with socket.create_connection(addr) as s:  # stalls in the headers
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")
            got = _until_closed(s)
            assert got.startswith(b"HTTP/1.1 408 Request Timeout") and got.endswith(b"the request line and headers were not received within 1 s")
        with socket.create_connection(addr) as s:  # stalls in the body
            s.sendall(post + b'{"items": [')
            got = _until_closed(s)
            assert got.startswith(b"HTTP/1.1 408 Request Timeout") and b"connection: close" in got.lower()
            assert json.loads(got.split(b"\r\n\r\n", 1)[1]) == {"detail": "the request body was not received within 1 s"}
        with socket.create_connection(addr) as s:  # leaves mid-body
            s.sendall(post + b'{"items": [')
        deadline = time.time() + 60
        while time.time() < deadline and 'status="499"' not in (text := httpx.get(srv.url + "/metrics").text):
            time.sleep(0.05)
        assert 'helpsteer_requests_total{route="/v1/score",status="499"} 1.0' in text
        assert 'helpsteer_requests_total{route="/v1/score",status="408"} 1.0' in text
        assert not re.search(r'status="5\d\d"', text), text
        # the server still serves
        assert httpx.post(srv.url + "/v1/score", json={"items": [ITEMS[0]]}).status_code == 200
    finally:
        srv.stop()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def _status_kb(pid: int, field: str) -> int:
    return next(int(x.split()[1]) for x in open(f"/proc/{pid}/status") if x.startswith(field + ":"))


@pytest.mark.slow
def test_real_server_memory_stays_bounded_with_megabyte_texts(runs, tmp_path):
    """16 concurrent clients with a 1 MB response each: the server's peak RSS (VmHWM) stays within
    1.5x of its RSS after a short request (tokenizing the whole texts took it to ~5x), and the
    rewards are those of tokenizing each whole text and keeping its last max_length tokens."""
    rng = np.random.default_rng(3)
    words = ["the", "a", "cat", "dog", "runs", "quickly", "answer", "paris", "france", "water", "blue"]
    texts = [" ".join(rng.choice(words, 200_000)) for _ in range(16)]
    assert min(len(t) for t in texts) > 1_000_000
    sc = Scorer(runs["bt"])
    full = sc.tokenizer([sc.text(Item([{"role": "user", "content": "p"}], t)) for t in texts[:2]], add_special_tokens=False)["input_ids"]
    want = sc.rewards(sc.logits(truncate_left(full, sc.max_length)[0]))
    srv = Server(runs["bt"], log=tmp_path / "serve.log").wait()
    try:
        assert httpx.post(srv.url + "/v1/score", json={"items": [ITEMS[0]]}).status_code == 200
        base = _status_kb(srv.proc.pid, "VmRSS")
        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(lambda t: httpx.post(srv.url + "/v1/score", json={"items": [{"prompt": "p", "response": t}]}, timeout=300), texts))
        peak = _status_kb(srv.proc.pid, "VmHWM")
    finally:
        srv.stop()
    assert [r.status_code for r in got] == [200] * 16 and all(r.json()["scores"][0]["truncated"] for r in got)
    assert [r.json()["scores"][0]["reward"] for r in got[:2]] == pytest.approx(want.tolist(), abs=1e-5)
    assert peak < 1.5 * base, f"peak RSS {peak / 1024:.0f} MB, {peak / base:.2f}x the {base / 1024:.0f} MB after a short request"
