"""`make bench`: what the served models deliver against the in-process limit and TorchServe's
defaults, and TorchScript against ONNX Runtime, measured in one run with a real HTTP load
generator (hey), on loopback only.

    tsforge bench            # ~10 s per point, plus every model's tuning sweep and the peers'
    tsforge bench --quick    # ~1 s per point, no sweep (the smoke test runs this)

Writes bench/results/<date>/{report.md,results.json,throughput.png,latency.png}.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench import (
    baselines,
    budgets,
    deployments,
    inprocess,
    limits,
    model_sections,
    monitoring_cost,
    preprocess,
    provenance,
    report,
    tuning,
    worst,
)
from bench.inprocess import BODIES, MODEL_BEHIND
from bench.points import CONCURRENCY, TORCHSERVE_DEFAULTS, Point
from bench.served import floor, served, variant_store
from models.registry import SPECS
from training.files import write_json
from tsforge.packaging import archive, build
from tsforge.paths import ARTIFACTS, MODEL_STORE, ROOT

# What each served name was, recorded in the results (bench.points.name_of).
SERVED_AS = {build.served_name(spec, fmt): [name, fmt] for name, spec in SPECS.items() for fmt in spec.formats}


# What TorchServe settings cost or save (full mode, digits alone, c=1 and 32): each a variant of
# the shipped setup. The 0 ms delay can only be had over the management API (report, "maxBatchDelay").
SETTINGS: list[tuple[str, dict]] = [
    ("as shipped", {}),
    ("access log off", {"log_variant": "access log off"}),
    ("frontend log at WARN", {"log_variant": "frontend log at WARN"}),
    ("async_logging=true", {"overrides": {"async_logging": "true"}}),
    ("number_of_netty_threads=1", {"overrides": {"number_of_netty_threads": "1"}}),
    ("netty_client_threads=1", {"overrides": {"netty_client_threads": "1"}}),
    ("job_queue_size=1000", {"overrides": {"job_queue_size": "1000"}}),
    ("handler metrics off", {"handler": baselines.QUIET_HANDLER}),
    ("maxBatchDelay 0 (management API)", {"register": {"batch_size": 8, "max_batch_delay": 0, "initial_workers": 2}}),
]


def settings(concurrencies, seconds: float, log) -> list[Point]:
    points = []
    for name, knobs in SETTINGS:
        with tempfile.TemporaryDirectory() as tmp:
            config = baselines.config_variant(knobs.get("overrides", {}), Path(tmp) / "config.properties")
            handler = knobs.get("handler", archive.HANDLER)
            points += served("settings", name, ["digits"], concurrencies, seconds, log, config=config,
                             store=lambda t, h=handler: variant_store(t, None, h), log_variant=knobs.get("log_variant"),
                             registrations={"digits.mar": knobs["register"]} if "register" in knobs else None)  # fmt: skip
    return points


def ensure_tools() -> None:
    if shutil.which("hey") is None:
        raise SystemExit("hey is missing: scripts/bootstrap.sh installs it (apt-get install hey)")


def model_alone(name: str, seconds: float, log) -> dict:
    """A model section's points and worst cases (bench.model_sections), measured for it alone."""
    section = model_sections.SECTIONS[name]
    batch = SPECS[section.model].serving.batch_size
    points = [inprocess.point(m, MODEL_STORE, b, seconds) for m in section.served for b in (1, batch)]
    points += served("shipped", "shipped", list(section.served), (1, 8), seconds, log)
    return model_sections.figures(name, points, worst.costs(MODEL_STORE, 3, (section.model,)), ARTIFACTS)


def deployments_alone(log) -> dict:  # noqa: ANN001
    """`tsforge bench --deployments`: the full run's deployment points alone."""
    path, content_type = BODIES[deployments.MODEL]
    points = deployments.measure(path, content_type, 10.0, log)
    return deployments.figures(points, time.strftime("%Y-%m-%d"), report.machine())


def section_only(name: str, out_root: Path = ROOT / "bench" / "results") -> Path:
    """`tsforge bench --monitoring`, `--tune`, `--speech`, ...: that section alone (full-run settings), in its own
    results.json, which `--publish` merges into the published run."""
    started = time.time()

    def log(stage: str) -> None:
        print(f"[bench {time.time() - started:5.0f} s] {stage}", flush=True)

    for spec in SPECS.values():
        for runtime in spec.formats:
            build.build(spec, progress=False, runtime=runtime)
    module, measure = {
        "monitoring": (monitoring_cost, lambda: monitoring_cost.measure(10.0, monitoring_cost.ROUNDS, log)),
        "provenance": (provenance, lambda: provenance.measure(MODEL_STORE)),
        "tuning": (tuning, lambda: tuning.measure(log)),
        "deployments": (deployments, lambda: deployments_alone(log)),
        "limits": (limits, lambda: limits.measure(log)),
    }.get(name) or (None, lambda: model_alone(name, 10.0, log))
    figures = measure()
    out = out_root / (time.strftime("%Y-%m-%d-%H%M%S") + f"-{name}")
    results = {"date": time.strftime("%Y-%m-%d"), "machine": report.machine(), "quick": False, name: figures}
    write_json(out / "results.json", results)
    if name == "limits":  # a failed request beside the heavy ones fails the run, as in a full one
        limits.fail_if_unfair(limits.figures(results)[1])
    if name == "tuning":  # what the sweep chose is what the next build ships
        log(f"chosen settings: {tuning.record(figures, results['date'], results['machine'])}")
        log(f"plot: {tuning.plot(figures, out)}")
    if module is deployments:
        print("\n".join(deployments.block(results)))
    else:
        print("\n".join(module.table(figures) if module else model_sections.table(name, figures)))
    log(f"results: {out / 'results.json'}")
    return out


def run(quick: bool = False, out_root: Path = ROOT / "bench" / "results") -> Path:
    ensure_tools()
    seconds = 1.0 if quick else 10.0
    started = time.time()

    def log(stage: str) -> None:
        print(f"[bench {time.time() - started:5.0f} s] {stage}", flush=True)

    for spec in SPECS.values():
        for runtime in spec.formats:
            log(f"build {spec.name} ({runtime}; skipped when up to date)")
            build.build(spec, progress=False, runtime=runtime)
    points: list[Point] = []
    for model in build.SERVED:
        for batch in (1, SPECS[MODEL_BEHIND[model]].serving.batch_size):
            log(f"in-process {model} batch {batch}")
            points.append(inprocess.point(model, MODEL_STORE, batch, seconds))
    points += served("shipped", "shipped", build.SERVED, CONCURRENCY, seconds, log)
    points += floor(CONCURRENCY, seconds, log)
    for model in ["digits"] if quick else list(SPECS):  # LitServe at its sweep-found settings
        points += tuning.peer("litserve", "peer", model, [tuning.peer_setting(model)], CONCURRENCY, seconds, log,
                              MODEL_STORE)  # fmt: skip
    if not quick:  # Triton (PyTriton, its own venv) for digits, at its sweep-found settings
        setting = [tuning.peer_setting("digits", "triton")]
        points += tuning.peer("triton", "triton", "digits", setting, CONCURRENCY, seconds, log, MODEL_STORE)
    # A quick run's baselines are digits' only, the headline ratios' model (as for LitServe above).
    points += served("defaults", "TorchServe defaults", ["digits"] if quick else list(SPECS), CONCURRENCY, seconds,
                     log, serving=TORCHSERVE_DEFAULTS)  # fmt: skip
    log("in-process digits preprocessing, before and after")
    preprocess_figures = preprocess.measure(seconds)
    log("worst case of each input class, through a served worker")
    costs = worst.costs(MODEL_STORE, repeats=1 if quick else 3)
    heavy_light = limits.heavy_beside_light(max(seconds, 5.0), log, MODEL_STORE)
    log("each model's worst forward pass within its budget, in process")
    budget_costs = budgets.measure(ARTIFACTS)
    monitoring = monitoring_cost.measure(seconds, 1 if quick else monitoring_cost.ROUNDS, log, MODEL_STORE, ARTIFACTS)
    log("signing and verifying each archive")
    provenance_figures = provenance.measure(MODEL_STORE, 1 if quick else provenance.REPEATS)
    if not quick:  # the deployments build images and start compose and a swarm: full runs only
        path, content_type = BODIES[deployments.MODEL]
        points += deployments.measure(path, content_type, seconds, log)
        points += settings((1, 32), seconds, log)
    # Every model's sweep and the peers' (issue #28's targets), as `tsforge bench --tune` runs it;
    # only --tune records the choice in models/tuned.json.
    tuning_figures = None if quick else tuning.measure(log)
    out = out_root / time.strftime("%Y-%m-%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": report.machine(),
        "quick": quick,
        "seconds_per_point": seconds,
        "points": [asdict(p) for p in points],
        "worst_cases": [asdict(c) for c in costs],
        "preprocess": preprocess_figures,
        "heavy_beside_light": [asdict(r) for r in heavy_light],
        "budgets": [asdict(b) for b in budget_costs],
        "monitoring": monitoring,
        "provenance": provenance_figures,
        **{name: model_sections.figures(name, points, costs, ARTIFACTS) for name in model_sections.SECTIONS},
        "served_as": SERVED_AS,
        "tuning": tuning_figures,
    }
    write_json(out / "results.json", results)
    report.write_report(
        points,
        out,
        quick,
        seconds,
        costs,
        preprocess_figures,
        heavy_light,
        budget_costs,
        monitoring,
        provenance_figures,
        SERVED_AS,
        tuning_figures,
    )
    log(f"report: {out / 'report.md'}")
    failed = [p for p in points if p.errors and p.stage not in report.BASELINE_STAGES]
    if failed:
        raise SystemExit(f"{len(failed)} served points had errors (see {out / 'report.md'}): the run fails")
    limits.fail_if_unfair(heavy_light)
    wrong = [c.case for c in costs if c.status != c.expected]
    if wrong:
        raise SystemExit(f"worst cases answered other than documented: {', '.join(wrong)}: the run fails")
    return out
