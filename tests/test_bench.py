"""`make bench QUICK=1` end to end: real hey load on a real TorchServe, report, JSON and plots."""

import json

import pytest

from tsforge import bench

pytestmark = pytest.mark.integration


def test_quick_bench_writes_report_json_and_plots(built, tmp_path, monkeypatch):
    # The bench builds into the repository's store; point it at the session's built archives.
    monkeypatch.setattr(bench, "MODEL_STORE", built.store)
    monkeypatch.setattr(bench, "ARTIFACTS", built.artifacts)
    monkeypatch.setattr(bench.build, "build", lambda spec, **kw: (built.archive(spec.name), False))
    monkeypatch.setattr(bench, "CONCURRENCY", (1, 32))
    out = bench.run(quick=True, out_root=tmp_path)
    data = json.loads((out / "results.json").read_text())
    stages = {(p["stage"], p["model"], p["concurrency"]) for p in data["points"]}
    for model in ("digits", "diabetes"):
        assert {("shipped", model, 1), ("shipped", model, 32), ("defaults", model, 32)} <= stages
    served = [p for p in data["points"] if p["stage"] != "in-process"]
    assert all(p["errors"] == 0 and p["throughput"] > 0 and p["p50_ms"] <= p["p99_ms"] for p in served)
    assert all(p["torchserve_ms"] > 0 for p in served)
    report = (out / "report.md").read_text()
    assert report.count("(target ") == 3 and ("**met**" in report or "**missed**" in report)
    for png in ("throughput.png", "latency.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
