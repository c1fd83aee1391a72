"""`helpsteer analyze`: agreement, annotator quality, aggregation and diverging preferences of a dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ._app import app


def _fmt(s: dict | None) -> str:
    if not isinstance(s, dict):
        return "-"
    if s.get("value") is None:
        return "n/a"
    if s.get("ci_low") is None:
        return f"{s['value']:.3f}"
    return f"{s['value']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def print_summary(res: dict, workspace: Path, name: str) -> None:
    from rich.table import Table

    from ..console import console

    con = console()
    if res["ratings"]:
        t = Table(title=f"rating agreement: {name} (95% bootstrap CI)")
        for c in ("attribute", "items", "annotators", "kappa (quadratic)", "alpha (interval)", "alpha (ordinal)", "Fleiss", "Spearman"):
            t.add_column(c)
        for attr, r in res["ratings"].items():
            t.add_row(attr, str(r["n_items"]), str(r["n_annotators"]), _fmt(r["kappa_quadratic"]), _fmt(r["alpha_interval"]),
                      _fmt(r["alpha_ordinal"]), _fmt(r["fleiss_kappa"]), _fmt(r["spearman"]))
        con.print(t)
        reasons = {r["kappa_quadratic"].get("reason") for r in res["ratings"].values() if r["kappa_quadratic"].get("value") is None}
        for why in sorted(x for x in reasons if x):
            con.print(f"  kappa n/a: {why}")
    p = res["preferences"]
    if p.get("n_pairs"):
        t = Table(title=f"preferences: {name}")
        for c in ("pairs", "with 2+ votes", "diverging", "unanimous", "diverging (ties count)", "diverging (|s|>=2 both sides)", "alpha (interval)"):
            t.add_column(c)
        t.add_row(str(p["n_pairs"]), str(p["n_annotated_pairs"]), _fmt(p["diverging_rate"]), _fmt(p["unanimous_rate"]),
                  _fmt(p.get("diverging_rate_ties")), _fmt(p.get("diverging_rate_strong")), _fmt(p.get("alpha_interval")))
        con.print(t)
        if p.get("by_cue"):
            con.print("  diverging rate by cue: " + ", ".join(f"{k} {v['diverging_rate']:.2f} (n={v['n_annotated_pairs']})" for k, v in p["by_cue"].items()))
        if len(p.get("by_domain", {})) > 1:
            con.print("  diverging rate by domain: " + ", ".join(f"{k} {v['diverging_rate']:.2f}" for k, v in p["by_domain"].items()))
    a = res["annotators"]
    if a["available"]:
        import polars as pl

        from .. import store

        tab = pl.read_parquet(store.require(workspace, name) / "analysis" / "annotators.parquet")
        t = Table(title=f"annotators, worst first ({a['n_flagged']} of {a['n_annotators']} flagged as noise)")
        for c in ("annotator", "items", "offset", "agreement", "flagged"):
            t.add_column(c)
        for r in tab.head(8).iter_rows(named=True):
            ag = "n/a" if r["agreement"] is None else f"{r['agreement']:.3f}"
            t.add_row(r["annotator_id"], str(r["n_items"]), f"{r['offset']:+.2f}", ag, "yes" if r["flagged"] else "")
        con.print(t)
    else:
        con.print(f"annotator table: not available ({a.get('reason')})")
    if "aggregation" in res:
        g = res["aggregation"]
        extra = ""
        if g["method"] == "helpsteer2":
            extra = (f"; removed {g['removed_items_few_annotators']} items with < min annotators, "
                     f"{g['removed_annotations_outliers']} outlier annotations")
        con.print(f"aggregation ({g['method']}): {g['labelled_items']} labelled items from {g['annotations']} annotations{extra}")
    print(f"analysis written to {workspace / 'datasets' / name / 'analysis'}", file=sys.stderr)


@app.command()
def analyze(
    workspace: Path = typer.Option(..., "--workspace", help="Workspace folder."),
    name: str = typer.Option(..., "--name", help="Dataset name."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples (over items) for every confidence interval."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    min_shared: int = typer.Option(5, "--min-shared", help="Items two annotators must share for their kappa / Spearman to count."),
    aggregation: str = typer.Option("helpsteer2", "--aggregation", help="Item labels: helpsteer2 (k most-agreeing of >= 3, outliers dropped), mean or median."),
    min_annotators: int = typer.Option(3, "--min-annotators", help="helpsteer2: items with fewer annotations get no label."),
    max_distance: float = typer.Option(2.0, "--max-distance", help="helpsteer2: drop annotations farther than this from the item's median."),
    k: int = typer.Option(3, "--k", help="helpsteer2: label = mean of the k most-agreeing annotations."),
    rounding: str = typer.Option("none", "--rounding", help="Item labels: none or nearest (integer labels like HelpSteer's)."),
    derive_attribute: str = typer.Option("helpfulness", "--derive-attribute", help="Attribute that ratings -> pairs compares."),
    json_out: bool = typer.Option(False, "--json", help="Print agreement.json instead of tables."),
    wait: bool = typer.Option(False, "--wait", help="If another process is writing this dataset, wait for it instead of exiting 2 at once."),
) -> None:
    """Annotator agreement, annotator quality, aggregation and diverging preferences of a dataset."""
    from ..analyze import AnalysisConfig, run_analysis
    from ..errors import UsageError

    if bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {bootstrap}")
    if aggregation not in ("helpsteer2", "mean", "median"):
        raise UsageError(f"--aggregation must be helpsteer2, mean or median, got {aggregation!r}")
    if rounding not in ("none", "nearest"):
        raise UsageError(f"--rounding must be none or nearest, got {rounding!r}")
    cfg = AnalysisConfig(n_bootstrap=bootstrap, seed=seed, min_shared=min_shared, aggregation=aggregation, min_annotators=min_annotators,
                         max_distance=max_distance, k=k, rounding=rounding, derive_attribute=derive_attribute)
    res = run_analysis(workspace, name, cfg, wait=wait)
    if json_out:
        import orjson

        print(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode())
    else:
        print_summary(res, workspace, name)
