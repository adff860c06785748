"""Every figure of the README's generated blocks is the committed run's: rendered again from
bench/published/results.json with the report's own functions, they must match to the byte."""

import json

from bench import publish


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
