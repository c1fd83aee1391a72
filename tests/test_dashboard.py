"""The dashboard: streamlit's AppTest renders every page on a small real workspace (datasets,
analysis, a trained and evaluated run, an attack record) and on an empty one, with no exception and
the analysis numbers shown; a real-browser test opens every page of `helpsteer dashboard` in headless
Chromium (Playwright) and keeps the screenshots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, run_cli, synthetic_workspace
from streamlit.testing.v1 import AppTest

APP = str(ROOT / "dashboards" / "app.py")
PAGES = ["datasets", "agreement", "diverging", "items", "runs", "evaluation", "adversarial", "playground"]
TITLES = {"datasets": "Datasets", "agreement": "Agreement", "diverging": "Diverging pairs", "items": "Item explorer", "runs": "Training runs",
          "evaluation": "Evaluation", "adversarial": "Adversarial", "playground": "Playground"}


@pytest.fixture(scope="module")
def dash_ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    ws = synthetic_workspace(root, seed=8, n_prompts=60, datasets=("hs2+val", "dis", "pref", "ls"))
    for n in ("dis", "pref", "ls"):
        assert run_cli("analyze", "--workspace", ws, "--name", n) == 0
    common = ["--backbone", "tiny", "--num_train_epochs", "1", "--max_length", "64", "--save_strategy", "no", "--logging_steps", "2"]
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "bt", *common) == 0
    assert run_cli("train", "--workspace", ws, "--name", "hs2", "--objective", "regression", *common) == 0
    assert run_cli("eval", "--model", ws / "runs" / "pref-bt", "--workspace", ws, "--name", "pref") == 0
    assert run_cli("eval", "--model", ws / "runs" / "hs2-regression", "--workspace", ws, "--name", "hs2") == 0
    assert run_cli("train", "--workspace", ws, "--name", "pref", "--objective", "meanvar", *common) == 0
    # an attack record in the contract's attack.json layout
    att = ws / "attacks" / "pref"
    att.mkdir(parents=True)
    (att / "attack.json").write_text(json.dumps({"rounds": [{"round": 0, "attack_success_rate": 0.4, "clean_accuracy": 0.7, "n_prompts": 10},
                                                           {"round": 1, "attack_success_rate": 0.1, "clean_accuracy": 0.7, "n_prompts": 10}],
                                                "examples": [{"round": 0, "prompt": "p", "original": "good", "attacked": "good good", "operators": ["repeat"],
                                                              "reward_delta": 0.5}]}))
    return ws


def app(ws: Path, monkeypatch, page: str | None = None) -> AppTest:
    monkeypatch.setenv("HELPSTEER_WORKSPACE", str(ws))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    return at


def text_of(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [str(m.value) for m in at.metric] + [i.value for i in at.info] + [c.value for c in at.caption]
    return "\n".join(map(str, parts))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_real_workspace(dash_ws, monkeypatch, page):
    at = app(dash_ws, monkeypatch, page)
    assert not at.exception, at.exception
    assert at.title[0].value == TITLES[page]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_what_to_run_on_an_empty_workspace(tmp_path, monkeypatch, page):
    at = app(tmp_path / "empty", monkeypatch, page)
    assert not at.exception, at.exception
    assert at.title[0].value == TITLES[page]
    if page != "playground":
        assert any("Run:" in i.value for i in at.info), [i.value for i in at.info]


def test_numbers_shown_equal_the_outputs(dash_ws, monkeypatch):
    at = app(dash_ws, monkeypatch, "datasets")
    man = json.loads((dash_ws / "datasets" / "dis" / "manifest.json").read_text())
    first = json.loads((dash_ws / "datasets" / "dis" / "manifest.json").read_text())  # selectbox default is the first dataset: dis
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["responses"] == f"{first['tables']['responses']:,}" and metrics["ratings"] == f"{man['tables']['ratings']:,}"
    at = app(dash_ws, monkeypatch, "agreement")
    at.sidebar.selectbox[0].set_value("pref").run()
    ag = json.loads((dash_ws / "datasets" / "pref" / "analysis" / "agreement.json").read_text())["preferences"]
    dr = ag["diverging_rate"]["value"] if isinstance(ag["diverging_rate"], dict) else ag["diverging_rate"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["diverging rate"] == f"{dr:.3f}" and metrics["pairs"] == str(ag["n_pairs"])
    at = app(dash_ws, monkeypatch, "evaluation")
    ev = json.loads((dash_ws / "runs" / "hs2-regression" / "eval.json").read_text())
    at.selectbox[0].set_value("pref-bt").run()
    ev = json.loads((dash_ws / "runs" / "pref-bt" / "eval.json").read_text())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["pairwise accuracy"] == f"{ev['accuracy']:.3f}"
    at = app(dash_ws, monkeypatch, "adversarial")
    assert not at.exception and at.dataframe[0].value["attack_success_rate"].tolist() == [0.4, 0.1]


def test_playground_scores_with_a_local_run(dash_ws, monkeypatch):
    from rm_training.scoring import Item, Scorer

    at = app(dash_ws, monkeypatch, "playground")
    at.sidebar.selectbox[0].set_value("pref-bt")
    at.button[0].click().run()
    assert not at.exception, at.exception
    want = Scorer(dash_ws / "runs" / "pref-bt").score([Item([{"role": "user", "content": "What is the capital of France?"}], "The capital of France is Paris.")])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["reward A"] == f"{want[0]['reward']:.4f}"


def _chromium() -> str | None:
    for c in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if c and os.path.exists(c):
            return c
    return None


@pytest.mark.slow
def test_every_page_in_a_real_browser(dash_ws, tmp_path):
    browse_every_page(dash_ws, tmp_path, "dashboard")


def browse_every_page(ws: Path, tmp_path: Path, shots_name: str) -> None:
    """`helpsteer dashboard` started on loopback, every page opened in headless Chromium with no
    exception shown, screenshots kept under test-artifacts/<shots_name>/, the server stopped by PID."""
    from serve_process import free_port

    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    shots = ROOT / "test-artifacts" / shots_name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "helpsteer.cli", "dashboard", "--workspace", str(ws), "--port", str(port)],
                            cwd=ROOT, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(url + "/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            pg = b.new_page(viewport={"width": 1400, "height": 1000})
            pg.goto(url)
            pg.wait_for_selector('[data-testid="stMain"] h1', timeout=90_000)
            links = pg.locator('[data-testid="stSidebarNav"] a')
            assert links.count() == len(PAGES)
            for i, page in enumerate(PAGES):
                pg.locator('[data-testid="stSidebarNav"] a').nth(i).click()
                pg.wait_for_selector(f'[data-testid="stMain"] h1:has-text("{TITLES[page]}")', timeout=90_000)
                pg.wait_for_timeout(1500)  # charts render after the title
                pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)
                assert pg.locator('[data-testid="stException"]').count() == 0, page
                pg.screenshot(path=str(shots / f"{i + 1}-{page}.png"), full_page=True)
            b.close()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert len(list(shots.glob("*.png"))) == len(PAGES)
    with pytest.raises(httpx.HTTPError):  # the PID was the server itself: nothing is left listening
        httpx.get(url + "/_stcore/health", timeout=2)


def _frames(at: AppTest) -> list:
    return [d.value for d in at.dataframe]


def test_playground_mean_variance_p_a_better_is_thurstonian(dash_ws, monkeypatch):
    """The same formula as /v1/compare: Phi((mu_A - mu_B) / sqrt(sigma_A^2 + sigma_B^2))."""
    from scipy.stats import norm

    from rm_training.scoring import Item, Scorer

    at = app(dash_ws, monkeypatch, "playground")
    at.sidebar.selectbox[0].set_value("pref-meanvar")
    at.text_area[2].set_value("Paris is the capital.")
    at.button[0].click().run()
    assert not at.exception, at.exception
    ctx = [{"role": "user", "content": "What is the capital of France?"}]
    a, b = Scorer(dash_ws / "runs" / "pref-meanvar").score([Item(ctx, "The capital of France is Paris."), Item(ctx, "Paris is the capital.")])
    want = norm.cdf((a["reward"] - b["reward"]) / (a["uncertainty"] ** 2 + b["uncertainty"] ** 2) ** 0.5)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["P(A better)"] == f"{want:.3f}"


def test_agreement_and_diverging_open_on_a_dataset_with_annotator_ids(dash_ws, monkeypatch):
    # dis and pref keep votes without identities (anon:...); the Label Studio export has emails
    at = app(dash_ws, monkeypatch, "agreement")
    assert at.sidebar.selectbox[0].value == "ls"


def test_single_category_chart_is_one_line_of_text(dash_ws, monkeypatch):
    at = app(dash_ws, monkeypatch, "diverging")
    assert not at.exception, at.exception
    import polars as pl

    assert at.sidebar.selectbox[0].value == "pref"
    domains = set(pl.read_parquet(dash_ws / "datasets" / "pref" / "responses.parquet")["domain"].fill_null("(none)").to_list())
    lines = [m.value for m in at.markdown if "Diverging rate by domain" in m.value]
    assert (len(lines) == 1) == (len(domains) == 1)


def test_item_explorer_shows_which_response_was_chosen(dash_ws, monkeypatch):
    import polars as pl

    at = app(dash_ws, monkeypatch, "items")
    at.sidebar.selectbox[0].set_value("pref").run()
    assert not at.exception, at.exception
    frames = [f for f in _frames(at) if "outcome" in f.columns]
    assert frames, "no pairs table"
    rid = at.selectbox[0].value
    labels = pl.read_parquet(dash_ws / "datasets" / "pref" / "preferences.parquet")
    row = frames[0].iloc[0]
    pair = labels.filter(pl.col("pair_id") == row["pair_id"])
    side = "A" if pair["response_a_id"][0] == rid else "B"
    assert row["this response is"] == side and row["outcome"] in ("this response chosen", "the other chosen", "tie")


def test_evaluation_page_names_the_dataset_of_every_figure(dash_ws, monkeypatch):
    at = app(dash_ws, monkeypatch, "evaluation")
    at.selectbox[0].set_value("pref-bt").run()
    assert at.selectbox[1].value == "pref"
    assert any("evaluated on dataset `pref`" in c.value for c in at.caption)


def test_attack_rounds_axis_has_integer_ticks(dash_ws, monkeypatch):
    at = app(dash_ws, monkeypatch, "adversarial")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["dtick"] == 1
