"""One TorchServe run of archives under hey: a point per model and concurrency, with where its time
went (TorchServe's counters and log) and its worker's memory. The shipped archives, the same
files with other settings (bench.tuning's sweep, the settings table), and the floor."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import baselines, breakdown, worst
from bench.baselines import FLOOR
from bench.inprocess import BODIES, MODEL_BEHIND
from bench.points import Point, hey, hey_point
from handlers.base import FLUSH_SECONDS
from models.registry import SPECS
from training.specs import ServingConfig
from tsforge.packaging import archive, build
from tsforge.paths import ARTIFACTS, CONFIG, MODEL_STORE
from tsforge.server import torchserve

# A server's warm-up at full load, in points' durations (bench.points: seconds per point).
WARM_POINTS = 2
# A breakdown point's window opens and closes this long after any load: the workers send their
# batch sums once every FLUSH_SECONDS, and the frontend logs what they send a moment later.
SETTLE_S = FLUSH_SECONDS + 0.5


def knobs(shipped: ServingConfig, variant: ServingConfig | None) -> ServingConfig:
    """TorchServe's knobs from the variant; the model's own limits and pass cost stay (they are
    the handler's, not TorchServe's: without them a recording would get a row model's budget)."""
    if variant is None:
        return shipped
    return replace(shipped, batch_size=variant.batch_size, max_batch_delay_ms=variant.max_batch_delay_ms,
                   workers=variant.workers, threads_per_worker=variant.threads_per_worker)  # fmt: skip


def variant_store(
    root: Path,
    serving: ServingConfig | None,
    handler: Path = archive.HANDLER,
    every_runtime: bool = False,
    only: tuple[str, ...] | None = None,
) -> Path:
    """The built archives, or the same exported files (and handler) with other settings: each
    model's shipped runtime under its plain name, or `every_runtime` under its served names;
    every model, or `only` those (the built store holds them all)."""
    if serving is None and handler == archive.HANDLER:  # the shipped archives, as built
        return MODEL_STORE
    store = root / "store"
    for name, spec in SPECS.items():
        if only is not None and name not in only:
            continue
        for runtime in spec.formats if every_runtime else spec.formats[:1]:
            exported = build.exported_file(spec, ARTIFACTS / name, runtime)
            card = json.loads((exported.parent / build.MODEL_CARD).read_text())
            archive.build_archive(replace(spec, serving=knobs(spec.serving, serving)), exported, card, store,
                                  model_name=build.served_name(spec, runtime), handler=handler)  # fmt: skip
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
    with_breakdown: bool = True,
) -> list[Point]:
    """Every model of `models` under hey at each concurrency, on a TorchServe of its own.

    `store(tmp)` builds the archives (default: the shipped ones, or `serving` applied to
    them); `config`, `log_variant` and `registrations` (archive -> management API settings,
    instead of --models) are the settings variants' knobs. `with_breakdown` turns on the
    frontend's per-request log lines the breakdown reads: they cost the frontend CPU on every
    request, so a point that compares configurations (the sweep) runs without them, as shipped.
    """
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        # Only the models it serves: archiving the others (minilm's, 90 MB) would cost seconds each.
        only = tuple(sorted({MODEL_BEHIND[m] for m in models}))
        store_dir = store(Path(tmp)) if store else variant_store(Path(tmp), serving, only=only)
        ports = {k: torchserve.free_port() for k in torchserve.PORT_KEYS}
        run_dir = Path(tmp) / "run"
        startup = [] if registrations else [f"{m}.mar" for m in models]
        with baselines.log_config(log_variant, Path(tmp) / "log4j2.xml"):
            # The breakdown reads the frontend's per-request lines, off as shipped (log4j2.xml).
            server = torchserve.start(startup, run_dir=run_dir, model_store=store_dir, base_config=config, ports=ports,
                                      request_log=with_breakdown)  # fmt: skip
        try:
            for archive_name, params in (registrations or {}).items():
                baselines.register(server, archive_name, **params)
            key = server.keys()["inference"]
            # The frontend's JVM, just started, spends several times the CPU a request it will
            # once compiled (bench/deployments.py): without this the first model of each server
            # was measured cold and the next ones warm, and a sweep preferred whatever came second.
            path, content_type = BODIES[MODEL_BEHIND[models[0]]]
            hey(f"{server.inference_url}/predictions/{models[0]}", path, content_type, key, max(concurrencies),
                WARM_POINTS * seconds)  # fmt: skip
            for model in models:
                path, content_type = BODIES[MODEL_BEHIND[model]]
                url = f"{server.inference_url}/predictions/{model}"
                hey(url, path, content_type, key, 4, 1)  # warm-up: first requests load lazily
                if with_breakdown:  # the warm-ups' batch sums are sent before a point's window opens
                    time.sleep(SETTLE_S)
                for c in concurrencies:
                    log(f"{stage} {setting}: {model} at concurrency {c}")
                    before, offset = ts_counters(server, model), breakdown.log_offset(server.log_file)
                    point = hey_point(stage, model, setting, url, path, content_type, key, c, seconds)
                    after = ts_counters(server, model)
                    n = max(1.0, after["ts_inference_requests_total"] - before["ts_inference_requests_total"])
                    point.queue_ms = (after[COUNTERS[1]] - before[COUNTERS[1]]) / n / 1000
                    point.torchserve_ms = (after[COUNTERS[2]] - before[COUNTERS[2]]) / n / 1000
                    if with_breakdown:  # the log lines exist only then; this load's sums, once sent
                        time.sleep(SETTLE_S)  # (so the next point's window opens after them too)
                        with open(server.log_file, "rb") as f:
                            f.seek(offset)
                            logged = breakdown.parse(f.read().decode(errors="replace"), model)
                        point.breakdown = breakdown.breakdown(point.mean_ms, point.torchserve_ms, point.queue_ms,
                                                              logged)  # fmt: skip
                    point.worker_rss_mib = worst.largest_rss(worst.worker_pids(server, model)) / 2**20
                    points.append(point)
        finally:
            torchserve.stop(run_dir)
    return points


def floor(concurrencies, seconds: float, log, runtime: str | None = None, serving=None,
          with_breakdown: bool = True) -> list[Point]:  # fmt: skip
    """The minimal TorchServe handler on the same exported digits file, same settings (the
    shipped ones, or `runtime`'s file with `serving`'s knobs)."""
    spec = SPECS["digits"]
    exported = build.exported_file(spec, ARTIFACTS / "digits", runtime or spec.formats[0])

    def store(tmp: Path) -> Path:
        return baselines.floor_archive(exported, serving or spec.serving, tmp / "store").parent

    return served("floor", "minimal TorchServe handler", [FLOOR], concurrencies, seconds, log, store=store,
                  with_breakdown=with_breakdown)  # fmt: skip


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
