"""The README's benchmark figures, generated from one committed results file.

`tsforge bench --publish RUN_DIR` copies a full run's results.json to bench/published/ and
rewrites every block of the README between `<!-- bench:NAME -->` and `<!-- /bench -->` from
it, with the report's own table functions. tests/test_readme_figures.py renders them again
from the committed file and compares, so no figure in those blocks can be typed by hand or
go stale beside a newer run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from bench import (
    budgets,
    deployments,
    fairness,
    limits,
    model_sections,
    monitoring_cost,
    provenance,
    report,
    sections,
    tuning,
    worst,
)
from bench.points import Point
from training.files import write_text
from tsforge.paths import ROOT

PUBLISHED = ROOT / "bench" / "published" / "results.json"
README = ROOT / "README.md"
# What a run of one section (`tsforge bench --monitoring`, `--provenance`, `--speech`, ...) holds.
PARTS = ("monitoring", "provenance", "tuning", "deployments", "limits", *model_sections.SECTIONS)
# The plots a published run carries into bench/published/ (the README shows them).
PLOTS = ("tuning.png",)
BLOCK = re.compile(r"(<!-- bench:(\w+) -->\n)(.*?)(<!-- /bench -->)", re.S)


def blocks(results: dict[str, Any]) -> dict[str, str]:
    """Every generated block, by name, from a results.json's content."""
    points = [Point(**p) for p in results["points"]]
    costs = [worst.Cost(**c) for c in results["worst_cases"]]
    limits_run, heavy_light, budget_costs = limits.figures(results)
    run = (
        f"Run of {results['date']} ({results['seconds_per_point']:g} s per served point), on "
        f"{results['machine']}; `bench/published/results.json`."
    )
    made = {
        "run": [run],
        "baselines": sections.baselines(points),
        "targets": [
            line
            for line in report.targets(points) + sections.targets(points, results["preprocess"])
            if line.startswith("- ")
        ],  # fmt: skip
        "runtimes": report.runtimes(points, results.get("served_as")),
        "worst_cases": worst.table(costs),
        "heavy_beside_light": [limits_run, "", *fairness.table(heavy_light)],
        "budgets": [limits_run, "", *budgets.table(budget_costs)],
        "monitoring": monitoring_cost.table(results.get("monitoring")),
        "provenance": provenance.table(results.get("provenance")),
        "tuning": tuning.table(results.get("tuning")),
        **{name: model_sections.table(name, results.get(name)) for name in model_sections.SECTIONS},
        "deployments": deployments.block(results),
    }
    return {name: "\n".join(lines) + "\n" for name, lines in made.items()}


def render(readme: str, results: dict[str, Any]) -> str:
    """`readme` with each generated block replaced; an unknown block name is an error."""
    made = blocks(results)
    unknown = {m.group(2) for m in BLOCK.finditer(readme)} - set(made)
    if unknown:
        raise KeyError(f"README blocks with no generator: {sorted(unknown)}")
    return BLOCK.sub(lambda m: m.group(1) + made[m.group(2)] + m.group(4), readme)


def publish(run_dir: Path) -> Path:
    """Copy `run_dir`/results.json to bench/published/ and regenerate the README from it. A
    `tsforge bench --monitoring`, `--provenance`, `--deployments`, `--speech`, ... run replaces only those figures of the
    published run."""
    text = (run_dir / "results.json").read_text()
    results = json.loads(text)
    if results.get("quick"):
        raise SystemExit("a quick run's figures are noise: publish a full `make bench` run")
    if "points" not in results:  # one section alone
        partial = {k: results[k] for k in PARTS if k in results}
        results = {**json.loads(PUBLISHED.read_text()), **partial}
        text = json.dumps(results, indent=2) + "\n"
    limits.fail_if_unfair(limits.figures(results)[1])  # a run that failed a request is not published
    write_text(PUBLISHED, text)
    for plot in PLOTS:  # a section's picture, beside the figures it was drawn from
        if (run_dir / plot).exists():
            shutil.copyfile(run_dir / plot, PUBLISHED.parent / plot)
    write_text(README, render(README.read_text(), results))
    return PUBLISHED
