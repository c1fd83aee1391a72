"""The dashboard on a workspace of real data: all seven datasets of ../shared/data ingested (whole
folders, --format auto) and analysed, plus a run evaluated on two of them. Every page renders
for every dataset in AppTest, and every page renders in headless Chromium."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA, run_cli
from test_dashboard import PAGES, TITLES, app, browse_every_page

DATASETS = {
    "hh-rlhf": "hh-rlhf-harmless-test",
    "pandalm": "pandalm-testset",
    "llmfao": "llmfao-crowd",
    "llmbar": "llmbar",
    "squality": "squality-human-eval",
    "wqrm": "wqrm-writing-rankings",
    "ttcw": "ttcw-creativity",
}


@pytest.fixture(scope="module")
def real_ws(tmp_path_factory):
    if not SHARED_DATA.exists():
        pytest.skip(f"real datasets not available: {SHARED_DATA} (../shared/data is absent)")
    ws = tmp_path_factory.mktemp("real") / "ws"
    for name, folder in DATASETS.items():
        assert run_cli("ingest", SHARED_DATA / folder, "--workspace", ws, "--name", name) == 0, name
        assert run_cli("analyze", "--workspace", ws, "--name", name) == 0, name
    assert run_cli("split", "--workspace", ws, "--name", "hh-rlhf", "--eval-fraction", "0.2", "--seed", "0") == 0
    assert run_cli("train", "--workspace", ws, "--name", "hh-rlhf", "--objective", "bt", "--backbone", "tiny", "--max_steps", "4",
                   "--max_length", "64", "--save_strategy", "no", "--out", "hh-bt") == 0
    for name in ("hh-rlhf", "llmbar"):
        assert run_cli("eval", "--model", ws / "runs" / "hh-bt", "--workspace", ws, "--name", name) == 0
    return ws


def test_the_workspace_holds_all_seven_and_two_evaluations(real_ws):
    names = {p.name for p in (real_ws / "datasets").iterdir() if not p.name.startswith(".")}  # .versions, .locks: the store's
    assert names == set(DATASETS)
    formats = [json.loads((real_ws / "datasets" / n / "manifest.json").read_text())["format"] for n in DATASETS]
    assert any(isinstance(f, list) for f in formats) and any(isinstance(f, str) for f in formats)  # the mix that crashed the Datasets page
    evals = {json.loads(p.read_text())["dataset"] for p in (real_ws / "runs" / "hh-bt" / "eval").glob("*.json")}
    assert evals == {"hh-rlhf", "llmbar"}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_real_data(real_ws, monkeypatch, page):
    at = app(real_ws, monkeypatch, page)
    assert not at.exception, at.exception
    assert at.title[0].value == TITLES[page]


@pytest.mark.parametrize("page", ["datasets", "agreement", "diverging", "items"])
def test_every_dataset_on_the_data_pages(real_ws, monkeypatch, page):
    at = app(real_ws, monkeypatch, page)
    box = at.selectbox[0] if page == "datasets" else (at.sidebar.selectbox[0] if at.sidebar.selectbox else None)
    if box is None:  # (a page with nothing to choose says what to run)
        assert at.info
        return
    for name in box.options:
        box.set_value(name).run()
        assert not at.exception, (name, at.exception)
        box = at.selectbox[0] if page == "datasets" else at.sidebar.selectbox[0]


def test_evaluation_page_offers_both_datasets(real_ws, monkeypatch):
    at = app(real_ws, monkeypatch, "evaluation")
    assert set(at.selectbox[1].options) == {"hh-rlhf", "llmbar"}
    for ds in ("hh-rlhf", "llmbar"):
        at.selectbox[1].set_value(ds).run()
        assert not at.exception
        ev = json.loads((real_ws / "runs" / "hh-bt" / "eval" / f"{ds}.json").read_text())
        assert {m.label: m.value for m in at.metric}["pairwise accuracy"] == f"{ev['accuracy']:.3f}"
        assert any(f"evaluated on dataset `{ds}`" in c.value for c in at.caption)


def test_agreement_opens_on_real_annotators(real_ws, monkeypatch):
    at = app(real_ws, monkeypatch, "agreement")
    from dashboards import data  # noqa: F401  (the same rule the page used)

    chosen = at.sidebar.selectbox[0].value
    import polars as pl

    ids = pl.concat([pl.read_parquet(real_ws / "datasets" / chosen / f"{t}.parquet", columns=["annotator_id"])
                     for t in ("ratings", "preferences") if (real_ws / "datasets" / chosen / f"{t}.parquet").exists()])
    assert ids.filter(pl.col("annotator_id").is_not_null() & ~pl.col("annotator_id").str.starts_with("anon:")).height > 0


@pytest.mark.slow
def test_every_page_in_a_real_browser_on_real_data(real_ws, tmp_path):
    browse_every_page(real_ws, tmp_path, "dashboard-real")
