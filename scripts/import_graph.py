"""Print the import graph between the project's packages (and helpsteer's CLI), one edge per line.

Run: .venv/bin/python scripts/import_graph.py [--modules]
Each line `A -> B (N)` says N imports in package A name a module of package B; helpsteer.cli is counted
as its own node because it is the one entry layer allowed to import upward. --modules lists the
importing and imported modules of each edge."""

from __future__ import annotations

import sys
from collections import defaultdict

import grimp

PACKAGES = ("helpsteer", "rm_training", "annotation", "dashboards")


def node(module: str) -> str:
    """The graph node a module belongs to: its top package, or helpsteer.cli for the CLI."""
    if module == "helpsteer.cli" or module.startswith(("helpsteer.cli.", "helpsteer.cli_")):
        return "helpsteer.cli"
    if module.endswith(".cli") or ".cli." in module:  # a package's own CLI module (the old layout)
        return module.split(".")[0] + ".cli"
    return module.split(".")[0]


def main() -> int:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            a, b = node(importer), node(imported)
            if a != b:
                edges[a, b].append(f"{importer} -> {imported}")
    for (a, b), lines in sorted(edges.items()):
        print(f"{a} -> {b} ({len(lines)})")
        if "--modules" in sys.argv:
            for line in lines:
                print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
