"""Every figure of the README's generated blocks is the committed run's: rendered again from
bench/published/results.json with the report's own functions, they must match to the byte."""

import json

from tsforge import bench_publish


def test_the_readmes_benchmark_figures_are_the_published_runs():
    readme = bench_publish.README.read_text()
    results = json.loads(bench_publish.PUBLISHED.read_text())
    names = [m.group(2) for m in bench_publish.BLOCK.finditer(readme)]
    assert set(names) == set(bench_publish.blocks(results)), names
    assert bench_publish.render(readme, results) == readme, "run `tsforge bench --publish <run>`: the README differs"
    assert not results["quick"] and results["date"] in readme


def test_a_changed_figure_is_caught():
    readme = bench_publish.README.read_text()
    results = json.loads(bench_publish.PUBLISHED.read_text())
    results["worst_cases"][0]["cpu_ms"] += 1000
    assert bench_publish.render(readme, results) != readme
