"""`make bench`: what the served models deliver against the in-process limit and TorchServe's
defaults, and TorchScript against ONNX Runtime, measured in one run with a real HTTP load
generator (hey), on loopback only.

    tsforge bench            # ~10 s per point, plus a tuning sweep for digits
    tsforge bench --quick    # ~1 s per point, no sweep (the smoke test runs this)

Writes bench/results/<date>/{report.md,results.json,throughput.png,latency.png}.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path

from bench import (
    baselines,
    breakdown,
    budgets,
    deployments,
    fairness,
    inprocess,
    model_sections,
    monitoring_cost,
    preprocess,
    provenance,
    report,
    worst,
)
from bench.baselines import FLOOR
from bench.inprocess import BODIES, MODEL_BEHIND
from bench.points import CONCURRENCY, TORCHSERVE_DEFAULTS, Point, hey, hey_point
from models.registry import SPECS
from training.files import write_json
from training.specs import ServingConfig
from tsforge.packaging import archive, build
from tsforge.paths import ARTIFACTS, CONFIG, MODEL_STORE, ROOT
from tsforge.server import torchserve

# Settings tried for digits at concurrency 32 (full mode): (workers, threads, batch, delay ms).
SWEEP = [(1, 1, 8, 1), (1, 2, 8, 1), (2, 1, 8, 5), (2, 1, 8, 1), (2, 1, 16, 5), (2, 1, 1, 1), (2, 1, 8, 0)]


def knobs(shipped: ServingConfig, variant: ServingConfig | None) -> ServingConfig:
    """TorchServe's knobs from the variant; the model's own limits and pass cost stay (they are
    the handler's, not TorchServe's: without them a recording would get a row model's budget)."""
    if variant is None:
        return shipped
    return replace(shipped, batch_size=variant.batch_size, max_batch_delay_ms=variant.max_batch_delay_ms,
                   workers=variant.workers, threads_per_worker=variant.threads_per_worker)  # fmt: skip


def variant_store(root: Path, serving: ServingConfig | None, handler: Path = archive.HANDLER) -> Path:
    """The built archives, or the same TorchScript models (and handler) with other settings."""
    if serving is None and handler == archive.HANDLER:
        return MODEL_STORE
    store = root / "store"
    for name, spec in SPECS.items():
        exported = build.exported_file(spec, ARTIFACTS / name, "torchscript")
        card = json.loads((exported.parent / build.MODEL_CARD).read_text())
        archive.build_archive(
            replace(spec, serving=knobs(spec.serving, serving)), exported, card, store, handler=handler
        )
    return store


def served(
    stage: str,
    setting: str,
    models: list[str],
    concurrencies,
    seconds: float,
    log,
    serving: ServingConfig | None = None,
    store=None,
    config: Path = CONFIG,
    log_variant: str | None = None,
    registrations: dict[str, dict[str, int]] | None = None,
) -> list[Point]:
    """Every model of `models` under hey at each concurrency, on a TorchServe of its own.

    `store(tmp)` builds the archives (default: the shipped ones, or `serving` applied to
    them); `config`, `log_variant` and `registrations` (archive -> management API settings,
    instead of --models) are the settings variants' knobs.
    """
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = store(Path(tmp)) if store else variant_store(Path(tmp), serving)
        ports = {k: torchserve.free_port() for k in torchserve.PORT_KEYS}
        run_dir = Path(tmp) / "run"
        startup = [] if registrations else [f"{m}.mar" for m in models]
        with baselines.log_config(log_variant, Path(tmp) / "log4j2.xml"):
            server = torchserve.start(startup, run_dir=run_dir, model_store=store_dir, base_config=config, ports=ports)
        try:
            for archive_name, params in (registrations or {}).items():
                baselines.register(server, archive_name, **params)
            key = server.keys()["inference"]
            for model in models:
                path, content_type = BODIES[MODEL_BEHIND[model]]
                url = f"{server.inference_url}/predictions/{model}"
                hey(url, path, content_type, key, 4, 1)  # warm-up: first requests load lazily
                for c in concurrencies:
                    log(f"{stage} {setting}: {model} at concurrency {c}")
                    before, offset = ts_counters(server, model), breakdown.log_offset(server.log_file)
                    point = hey_point(stage, model, setting, url, path, content_type, key, c, seconds)
                    after = ts_counters(server, model)
                    with open(server.log_file, "rb") as f:
                        f.seek(offset)
                        logged = breakdown.parse(f.read().decode(errors="replace"), model)
                    n = max(1.0, after["ts_inference_requests_total"] - before["ts_inference_requests_total"])
                    point.queue_ms = (after[COUNTERS[1]] - before[COUNTERS[1]]) / n / 1000
                    point.torchserve_ms = (after[COUNTERS[2]] - before[COUNTERS[2]]) / n / 1000
                    point.breakdown = breakdown.breakdown(point.mean_ms, point.torchserve_ms, point.queue_ms, logged)
                    point.worker_rss_mib = worst.largest_rss(worst.worker_pids(server, model)) / 2**20
                    points.append(point)
        finally:
            torchserve.stop(run_dir)
    return points


def floor(concurrencies, seconds: float, log) -> list[Point]:
    """The minimal TorchServe handler on the same exported digits file, same settings."""
    spec = SPECS["digits"]
    exported = build.exported_file(spec, ARTIFACTS / "digits", "torchscript")

    def store(tmp: Path) -> Path:
        return baselines.floor_archive(exported, spec.serving, tmp / "store").parent

    return served("floor", "minimal TorchServe handler", [FLOOR], concurrencies, seconds, log, store=store)


def peer(concurrencies, seconds: float, log) -> list[Point]:
    """LitServe on the same exported digits file, same batching and workers, loaded by hey."""
    spec = SPECS["digits"]
    exported = build.exported_file(spec, ARTIFACTS / "digits", "torchscript")
    with tempfile.TemporaryDirectory() as tmp:
        body = baselines.peer_body(BODIES["digits"][0], Path(tmp) / "body.json")
        with baselines.peer_server(exported, spec.serving, Path(tmp) / "litserve.log") as url:
            setting = f"LitServe {version('litserve')}"
            hey(url, body, "application/json", "none", 4, 1)  # warm-up
            points = []
            for c in concurrencies:
                log(f"peer {setting}: digits at concurrency {c}")
                points.append(hey_point("peer", "digits", setting, url, body, "application/json", "none", c, seconds))
    return points


COUNTERS = ("ts_inference_requests_total", "ts_queue_latency_microseconds", "ts_inference_latency_microseconds")


def ts_counters(server: torchserve.Server, model: str) -> dict[str, float]:
    """TorchServe's own per-model counters from the Prometheus endpoint, summed over labels."""
    import requests

    totals = dict.fromkeys(COUNTERS, 0.0)
    for line in requests.get(f"{server.metrics_url}/metrics", timeout=10).text.splitlines():
        name = line.split("{", 1)[0]
        if name in totals and f'model_name="{model}"' in line:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


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


def heavy_beside_light(seconds: float, log) -> list[fairness.HeavyBesideLight]:
    """Per kind, the shipped TorchScript archive: its largest accepted request from eight
    clients beside its example request every 0.2 s (bench/fairness.py)."""
    from bench import worst_cases as w

    heavy = {
        "digits": (w.json_v2_at_limit(), "application/json", "v2 [64, 28, 28]: max_rows images"),
        "diabetes": (w.json_rows_at_limit(), "application/json", "64 named rows: max_rows"),
        "minilm": (w.text_request(w.text_rows_at_budget()), "application/json",
                   f"{w.text_rows_at_budget()} texts of ~16 KB, cut to 256 tokens: max_pass_cost"),
    }  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ports = {k: torchserve.free_port() for k in torchserve.PORT_KEYS}
        server = torchserve.start(
            [f"{m}.mar" for m in heavy], run_dir=Path(tmp) / "run", model_store=MODEL_STORE, ports=ports
        )
        try:
            for model, (data, content_type, what) in heavy.items():
                log(f"heavy beside light: {model}")
                light = fairness.Body(BODIES[model][0].read_bytes(), BODIES[model][1])
                body = fairness.Body(data, content_type)
                results.append(fairness.measure(server, model, body, light, what, seconds))
        finally:
            torchserve.stop(Path(tmp) / "run")
    return results


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


def section_only(name: str, out_root: Path = ROOT / "bench" / "results") -> Path:
    """`tsforge bench --monitoring`, `--provenance`, `--speech` or `--recommendation`: that section alone (full-run settings),
    in its own results.json, which `--publish` merges into the published run."""
    started = time.time()

    def log(stage: str) -> None:
        print(f"[bench {time.time() - started:5.0f} s] {stage}", flush=True)

    for spec in SPECS.values():
        for runtime in spec.formats:
            build.build(spec, progress=False, runtime=runtime)
    module, measure = {
        "monitoring": (monitoring_cost, lambda: monitoring_cost.measure(10.0, monitoring_cost.ROUNDS, log)),
        "provenance": (provenance, lambda: provenance.measure(MODEL_STORE)),
    }.get(name) or (None, lambda: model_alone(name, 10.0, log))
    figures = measure()
    out = out_root / (time.strftime("%Y-%m-%d-%H%M%S") + f"-{name}")
    results = {"date": time.strftime("%Y-%m-%d"), "machine": report.machine(), "quick": False, name: figures}
    write_json(out / "results.json", results)
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
    points += peer(CONCURRENCY, seconds, log)
    points += served(
        "defaults", "TorchServe defaults", list(SPECS), CONCURRENCY, seconds, log, serving=TORCHSERVE_DEFAULTS
    )
    log("in-process digits preprocessing, before and after")
    preprocess_figures = preprocess.measure(seconds)
    log("worst case of each input class, through a served worker")
    costs = worst.costs(MODEL_STORE, repeats=1 if quick else 3)
    heavy_light = heavy_beside_light(max(seconds, 5.0), log)
    log("each model's worst forward pass within its budget, in process")
    budget_costs = budgets.measure(ARTIFACTS)
    monitoring = monitoring_cost.measure(seconds, 1 if quick else monitoring_cost.ROUNDS, log, MODEL_STORE, ARTIFACTS)
    log("signing and verifying each archive")
    provenance_figures = provenance.measure(MODEL_STORE, 1 if quick else provenance.REPEATS)
    if not quick:  # the deployments build images and start compose and a swarm: full runs only
        path, content_type = BODIES[deployments.MODEL]
        points += deployments.measure(path, content_type, seconds, log)
        points += settings((1, 32), seconds, log)
        for workers, threads, batch, delay in SWEEP:
            setting = f"{workers} workers x {threads} threads, batch {batch}, delay {delay} ms"
            cfg = ServingConfig(batch_size=batch, max_batch_delay_ms=delay, workers=workers, threads_per_worker=threads)
            points += served("sweep", setting, ["digits"], (1, 32), seconds, log, serving=cfg)
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
    )
    log(f"report: {out / 'report.md'}")
    failed = [p for p in points if p.errors and p.stage not in report.BASELINE_STAGES]
    if failed:
        raise SystemExit(f"{len(failed)} served points had errors (see {out / 'report.md'}): the run fails")
    unfair = [r.model for r in heavy_light if r.errors or any(s >= 500 for s in (*r.heavy_statuses, *r.light_statuses))]
    if unfair:
        raise SystemExit(f"heavy beside light failed requests for {', '.join(unfair)}: the run fails")
    wrong = [c.case for c in costs if c.status != c.expected]
    if wrong:
        raise SystemExit(f"worst cases answered other than documented: {', '.join(wrong)}: the run fails")
    return out
