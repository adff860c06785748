"""Every figure of the README's generated blocks is the committed run's: rendered again from
bench/published/results.json with the report's own functions, they must match to the byte."""

import json
from dataclasses import replace

from bench import deployments, publish
from bench.points import Point


def test_the_readmes_benchmark_figures_are_the_published_runs():
    readme = publish.README.read_text()
    results = json.loads(publish.PUBLISHED.read_text())
    names = [m.group(2) for m in publish.BLOCK.finditer(readme)]
    assert set(names) == set(publish.blocks(results)), names
    assert publish.render(readme, results) == readme, "run `tsforge bench --publish <run>`: the README differs"
    assert not results["quick"] and results["date"] in readme


def test_a_changed_figure_is_caught():
    readme = publish.README.read_text()
    results = json.loads(publish.PUBLISHED.read_text())
    results["worst_cases"][0]["cpu_ms"] += 1000
    assert publish.render(readme, results) != readme


def test_a_deployments_run_replaces_the_full_runs_points_and_names_its_own_date():
    results = json.loads(publish.PUBLISHED.read_text())
    full_run = {k: v for k, v in results.items() if k != "deployments"}
    points = [Point(**p) for p in full_run["points"] if p["stage"] == "deployment"]
    faster = [replace(p, throughput=p.throughput * 2) for p in points]
    part = deployments.figures(faster, "2099-01-01", "another machine")
    lines = deployments.block({**full_run, "deployments": part})
    assert lines[0] == "Run of 2099-01-01 (`tsforge bench --deployments`), on another machine."
    assert lines[2:] == deployments.table(faster) != deployments.block(full_run)[2:]
