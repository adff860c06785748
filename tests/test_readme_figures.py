"""Every figure of the README's generated blocks is the committed run's: rendered again from
bench/published/results.json with the report's own functions, they must match to the byte."""

import json
from dataclasses import replace

from bench import deployments, limits, publish
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


def test_a_limits_run_replaces_the_full_runs_budgets_and_fairness_and_names_its_own_date():
    results = json.loads(publish.PUBLISHED.read_text())
    full_run = {k: v for k, v in results.items() if k != "limits"}
    part = {
        "date": "2099-01-01",
        "machine": "another machine",
        "heavy_beside_light": [{**r, "light_p99_ms": 1.0} for r in full_run["heavy_beside_light"]],
        "budgets": [{**b, "pass_ms": 2.0} for b in full_run["budgets"]],
    }
    run, heavy_light, costs = limits.figures({**full_run, "limits": part})
    assert run == "Run of 2099-01-01 (`tsforge bench --limits`), on another machine."
    assert {r.light_p99_ms for r in heavy_light} == {1.0} and {c.pass_ms for c in costs} == {2.0}
    made = publish.blocks({**full_run, "limits": part})
    assert made["budgets"].startswith(run) and made["heavy_beside_light"].startswith(run)
    assert limits.figures(full_run)[0] == f"Run of {full_run['date']} (`make bench`)."
