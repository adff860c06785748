"""`make bench QUICK=1` end to end: real hey load on a real TorchServe, report, JSON and plots."""

import json
import re

import pytest

from bench import run
from bench import served as served_points
from bench.worst_cases import worst_cases
from models.registry import SPECS
from tests.conftest import served_name
from tsforge.packaging import build

pytestmark = pytest.mark.integration


def test_quick_bench_writes_report_json_and_plots(built, tmp_path, monkeypatch):
    # The bench builds into the repository's store; point it at the session's built archives.
    for module in (run, served_points):
        monkeypatch.setattr(module, "MODEL_STORE", built.store)
        monkeypatch.setattr(module, "ARTIFACTS", built.artifacts)
    monkeypatch.setattr(run.build, "build", lambda spec, runtime, **kw: (built.archive(spec.name), False))
    monkeypatch.setattr(run, "CONCURRENCY", (1, 32))
    out = run.run(quick=True, out_root=tmp_path)
    data = json.loads((out / "results.json").read_text())
    stages = {(p["stage"], p["model"], p["concurrency"]) for p in data["points"]}
    assert ("defaults", "digits", 32) in stages  # a quick run's baselines: digits only
    for model in ("digits", "diabetes"):
        assert {("shipped", model, 1), ("shipped", model, 32)} <= stages
        other = served_name(model, "torchscript" if SPECS[model].formats[0] != "torchscript" else "onnx")
        assert {("shipped", other, 1), ("shipped", other, 32)} <= stages
    # The baselines of issue #16, measured in the same run: the floor handler and the LitServe peer.
    for stage, model in (("floor", "digits-floor"), ("peer", "digits")):
        assert {(stage, model, 1), (stage, model, 32)} <= stages
    served = [p for p in data["points"] if p["stage"] != "in-process"]
    ours = [p for p in served if p["stage"] not in run.report.BASELINE_STAGES]
    assert all(p["errors"] == 0 and p["throughput"] > 0 for p in ours)
    torchserve = [p for p in served if p["stage"] != "peer"]
    assert all(p["torchserve_ms"] > 0 for p in torchserve)
    # Where the time goes: every TorchServe point split; the shipped digits point down to the stages.
    assert all(p["breakdown"]["queue_and_batch_wait"] >= 0 for p in torchserve)
    shipped = next(p for p in torchserve if (p["stage"], p["model"], p["concurrency"]) == ("shipped", "digits", 32))
    assert all(shipped["breakdown"][k] > 0 for k in ("decode", "inference", "encode", "batch_size"))
    assert all(v > 0 for v in data["preprocess"].values())
    report = (out / "report.md").read_text()
    for p in served:  # a baseline's failures are in the report, not hidden by the run passing
        if p["errors"]:
            assert f"{p['stage']} {p['model']} at concurrency {p['concurrency']}: {p['errors']} of" in report
    verdicts = re.findall(
        r"= \*\*([-+\d.]+)(×| ms)?\*\*.*?\(target (≥|≤) ([-\d.]+)(?:×| ms)?\): \*\*(met|missed)\*\*", report
    )
    assert len(verdicts) == 8, verdicts
    for value, _, way, target, said in verdicts:  # each verdict recomputed from its printed figures
        ok = float(value) >= float(target) if way == "≥" else float(value) <= float(target)
        assert said == ("met" if ok else "missed"), (value, way, target, said)
    point = {(p["stage"], p["model"], p["concurrency"]): p for p in data["points"]}
    ratio = point["shipped", "digits", 32]["throughput"] / point["floor", "digits-floor", 32]["throughput"]
    assert f"= **{ratio:.2f}×** (target ≥ 1.0×)" in report  # the figure is this run's, not a typed one
    for section in ("## Baselines (digits)", "## Where the time goes", "## TorchServe settings", "## maxBatchDelay = 0",
                    "## Shipped configuration"):  # fmt: skip
        assert section in report
    baselines = report.split("## Baselines (digits)")[1].split("## Where the time goes")[0]
    for label in ("| shipped", "| floor", "| peer (LitServe)", "| TorchServe defaults", "| in process"):
        assert label in baselines
    assert "ModelManager.java" in report.split("## maxBatchDelay = 0")[1]
    # The runtime comparison: two runtimes and a ratio row per model, every figure measured.
    section = report.split("## TorchScript vs ONNX Runtime")[1].split("## Results")[0]
    rows = [r for r in section.splitlines() if r.startswith(("| digits", "| diabetes"))]
    ratio = "**onnx / torchscript**"
    runtimes = {m: [r.split(" | ")[1] for r in rows if r.startswith(f"| {m} |")] for m in ("digits", "diabetes")}
    assert runtimes == {m: [*SPECS[m].formats, ratio] for m in runtimes}  # the shipped runtime first
    assert all(float(c.strip(" *×|")) > 0 for r in rows for c in r.split(" | ")[2:])
    memory = report.split("## Memory per worker")[1].split("## Worst case")[0]
    assert all(f"| {name} | " in memory for name in build.SERVED)
    assert all(p["worker_rss_mib"] > 50 for p in data["points"] if p["stage"] == "shipped")
    text = [r.split(" | ")[1] for r in section.splitlines() if r.startswith("| minilm")]
    assert text == [*SPECS["minilm"].formats, "**onnx / torchscript**", "**int8 / onnx**"]
    # The worst case of every input class, answered as documented, its cost measured.
    costs = {c["case"]: c for c in data["worst_cases"]}
    assert set(costs) == {case.name for case in worst_cases()}
    assert all(c["status"] == c["expected"] for c in costs.values())
    assert costs["png_at_decode_limit"]["cpu_ms"] > 0  # a 16 MiB decode is not free: the meter reads
    assert "## Worst case per input class" in report and "| png_at_decode_limit | digits |" in report
    # The speech section (the README's Speech block): both runtimes' gates, audio points in
    # process and served, and the audio worst cases, from this run's own points and costs.
    speech_figures = data["speech"]
    assert [g["runtime"] for g in speech_figures["gates"]] == list(SPECS["silero_vad"].formats)
    assert all(g["quality_value"] >= g["quality_threshold"] for g in speech_figures["gates"])
    assert {(p["stage"], p["model"]) for p in speech_figures["points"]} >= {
        ("in-process", "silero_vad"), *(("shipped", served_name("silero_vad", r)) for r in ("torchscript", "onnx"))}  # fmt: skip
    assert {c["case"] for c in speech_figures["worst_cases"]} == {
        c.name for c in worst_cases() if c.model == "silero_vad"
    }
    # The recommendation section: gates, HR/NDCG against popularity, points, its worst cases.
    rec = data["recommendation"]
    assert all(g["quality_value"] >= g["quality_threshold"] for g in rec["gates"])
    assert rec["metrics"]["hr_at_10"] > rec["metrics"]["popularity_hr_at_10"]
    assert {c["case"] for c in rec["worst_cases"]} == {c.name for c in worst_cases() if c.model == "movielens"}
    # Heavy beside light, per kind: nothing failed, the light request always answered.
    fair = {r["model"]: r for r in data["heavy_beside_light"]}
    assert {SPECS[m].contract.kind for m in fair} == {spec.contract.kind for spec in SPECS.values()}
    for r in fair.values():
        assert not r["errors"] and set(r["light_statuses"]) == {"200"}, r
        assert set(r["heavy_statuses"]) <= {"200", "429"} and r["heavy_statuses"].get("200", 0) > 0, r
    assert "## Heavy beside light" in report and "| minilm |" in report.split("## Heavy beside light")[1]
    # What monitoring costs: the served A/B measured, and every model's handler in process.
    monitoring = data["monitoring"]
    assert all(v > 0 for v in monitoring["served"]["monitored"] + monitoring["served"]["unmonitored"])
    assert {c["model"] for c in monitoring["in_process"]} == set(SPECS)
    assert all(0 < c["counting_ms"] < c["monitored_ms"] for c in monitoring["in_process"])
    assert "## Monitoring cost" in report
    # What provenance costs: every served archive signed and verified, beside hashing it once.
    signed = {c["archive"]: c for c in data["provenance"]["archives"]}
    assert set(signed) == {f"{name}.mar" for name in build.SERVED}
    assert all(0 < c["hash_ms"] and 0 < c["sign_ms"] and 0 < c["verify_ms"] for c in signed.values())
    assert "## Provenance cost" in report and "| minilm.mar |" in report
    # The budgets' cost: every served archive's worst pass, timed, beside its declared budgets.
    budgets = {b["model"]: b for b in data["budgets"]}
    assert set(budgets) == set(build.SERVED) and all(b["pass_ms"] > 0 for b in budgets.values())
    assert budgets["minilm"]["max_pass_cost"] == dict(SPECS["minilm"].serving.limits)["max_pass_cost"]
    assert "## Budgets" in report
    for png in ("throughput.png", "latency.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
