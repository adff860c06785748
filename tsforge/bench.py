"""`make bench`: what the served models deliver against the in-process limit and TorchServe's
defaults, and TorchScript against ONNX Runtime, measured in one run with a real HTTP load
generator (hey), on loopback only.

    tsforge bench            # ~10 s per point, plus a tuning sweep for digits
    tsforge bench --quick    # ~1 s per point, no sweep (the smoke test runs this)

Writes bench/results/<date>/{report.md,results.json,throughput.png,latency.png}.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil
import yaml

from training.registry import SPECS
from training.specs import ServingConfig
from tsforge import archive, bench_worst, build, serve
from tsforge.client import CONTENT_TYPES
from tsforge.paths import ARTIFACTS, EXAMPLES, MODEL_STORE, ROOT

CONCURRENCY = (1, 8, 32, 64)
# Each model's request body is its declared example (examples/<file>).
BODIES = {
    name: (EXAMPLES / spec.example, CONTENT_TYPES.get(Path(spec.example).suffix.lower(), "application/octet-stream"))
    for name, spec in SPECS.items()
}
# TorchServe's own defaults: batch size 1, maxBatchDelay 100 ms, one worker per core, and
# PyTorch's default thread count in each worker (threads 0 = leave it alone).
TORCHSERVE_DEFAULTS = ServingConfig(batch_size=1, max_batch_delay_ms=100, workers=2, threads_per_worker=0)
# Served name -> the model (and request body) behind it: digits-onnx -> digits.
BASE = build.MODEL_OF
# Settings tried for digits at concurrency 32 (full mode): (workers, threads, batch, delay ms).
SWEEP = [(1, 1, 8, 1), (1, 2, 8, 1), (2, 1, 8, 5), (2, 1, 8, 1), (2, 1, 16, 5), (2, 1, 1, 1), (2, 1, 8, 0)]


@dataclass
class Point:
    stage: str  # "in-process", "shipped", "defaults", "sweep"
    model: str
    setting: str
    concurrency: int
    requests: int
    throughput: float  # samples (requests) per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    # Where the time goes (served points), per request from TorchServe's own counters:
    # waiting in its queue (includes maxBatchDelay) and its whole frontend-measured latency.
    queue_ms: float = 0.0
    torchserve_ms: float = 0.0
    # Resident memory of the model's largest worker after the point (served points).
    worker_rss_mib: float = 0.0


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def in_process(model: str, store: Path, batch: int, seconds: float) -> Point:
    """The served code path without the server: the real handler on real bodies, in a loop."""
    from ts.context import Context, RequestProcessor

    from handlers.handler import Handler

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(store / f"{model}.mar") as z:
            z.extractall(tmp)
        manifest = json.loads((Path(tmp) / "MAR-INF" / "MANIFEST.json").read_text())
        config = yaml.safe_load((Path(tmp) / "model-config.yaml").read_text())
        ctx = Context(model, tmp, manifest, batch, None, "0.12.0", model_yaml_config=config)
        handler = Handler()
        handler.initialize(ctx)
        path, content_type = BODIES[BASE[model]]
        requests = [{"body": path.read_bytes()} for _ in range(batch)]
        headers = {"body": {"content-type": content_type}}
        latencies = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(latencies) < 20:
            ctx.request_processor = [RequestProcessor(headers) for _ in requests]
            started = time.perf_counter()
            handler.handle(requests, ctx)
            latencies.append(time.perf_counter() - started)
    total = sum(latencies)
    ms = [x * 1000 for x in latencies]
    return Point("in-process", model, f"batch {batch}", 1, len(ms) * batch, len(ms) * batch / total,
                 percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), 0)  # fmt: skip


def hey(url: str, body: Path, content_type: str, key: str, concurrency: int, seconds: float) -> tuple[list[float], int]:
    """Latencies (ms) of the answered requests and the count of errors, from hey's CSV."""
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", content_type, "-D", str(body),
           "-H", f"Authorization: Bearer {key}", "-o", "csv", url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"hey failed: {proc.stderr.strip()[:500]}")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    errors = sum(1 for r in rows if r["status-code"] != "200")
    return [float(r["response-time"]) * 1000 for r in rows if r["status-code"] == "200"], errors


def variant_store(root: Path, serving: ServingConfig | None) -> Path:
    """The built archives, or the same TorchScript models and handlers with other settings."""
    if serving is None:
        return MODEL_STORE
    store = root / "store"
    for name, spec in SPECS.items():
        exported = build.exported_file(spec, ARTIFACTS / name, "torchscript")
        card = json.loads((exported.parent / build.MODEL_CARD).read_text())
        archive.build_archive(replace(spec, serving=serving), exported, card, store)
    return store


def served(
    stage: str, setting: str, serving: ServingConfig | None, models: list[str], concurrencies, seconds: float, log
) -> list[Point]:
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        store = variant_store(Path(tmp), serving)
        ports = {k: serve.free_port() for k in serve.PORT_KEYS}
        server = serve.start([f"{m}.mar" for m in models], run_dir=Path(tmp) / "run", model_store=store, ports=ports)
        try:
            key = server.keys()["inference"]
            for model in models:
                path, content_type = BODIES[BASE[model]]
                url = f"{server.inference_url}/predictions/{model}"
                hey(url, path, content_type, key, 4, 1)  # warm-up: first requests load lazily
                for c in concurrencies:
                    log(f"{stage} {setting}: {model} at concurrency {c}")
                    before = ts_counters(server, model)
                    ms, errors = hey(url, path, content_type, key, c, seconds)
                    after = ts_counters(server, model)
                    n = max(1.0, after["ts_inference_requests_total"] - before["ts_inference_requests_total"])
                    queue = (
                        (after["ts_queue_latency_microseconds"] - before["ts_queue_latency_microseconds"]) / n / 1000
                    )
                    total = (
                        (after["ts_inference_latency_microseconds"] - before["ts_inference_latency_microseconds"])
                        / n
                        / 1000
                    )
                    rss = max(psutil.Process(pid).memory_info().rss for pid in bench_worst.worker_pids(server, model))
                    points.append(Point(stage, model, setting, c, len(ms) + errors, len(ms) / seconds, percentile(ms, 50),
                                        percentile(ms, 90), percentile(ms, 99), errors, queue, total, rss / 2**20))  # fmt: skip
        finally:
            serve.stop(Path(tmp) / "run")
    return points


COUNTERS = ("ts_inference_requests_total", "ts_queue_latency_microseconds", "ts_inference_latency_microseconds")


def ts_counters(server: serve.Server, model: str) -> dict[str, float]:
    """TorchServe's own per-model counters from the Prometheus endpoint, summed over labels."""
    import requests

    totals = dict.fromkeys(COUNTERS, 0.0)
    for line in requests.get(f"{server.metrics_url}/metrics", timeout=10).text.splitlines():
        name = line.split("{", 1)[0]
        if name in totals and f'model_name="{model}"' in line:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def worst_case_costs(repeats: int) -> list[bench_worst.Cost]:
    """The shipped TorchScript archives on their own server, one worst-case body at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        ports = {k: serve.free_port() for k in serve.PORT_KEYS}
        models = [f"{name}.mar" for name in SPECS]
        server = serve.start(models, run_dir=Path(tmp) / "run", model_store=MODEL_STORE, ports=ports)
        try:
            return bench_worst.measure(server, repeats)
        finally:
            serve.stop(Path(tmp) / "run")


def ensure_tools() -> None:
    if shutil.which("hey") is None:
        raise SystemExit("hey is missing: scripts/bootstrap.sh installs it (apt-get install hey)")


def run(quick: bool = False, out_root: Path = ROOT / "bench" / "results") -> Path:
    from tsforge.bench_report import write_report

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
        for batch in (1, SPECS[BASE[model]].serving.batch_size):
            log(f"in-process {model} batch {batch}")
            points.append(in_process(model, MODEL_STORE, batch, seconds))
    points += served("shipped", "shipped", None, build.SERVED, CONCURRENCY, seconds, log)
    points += served("defaults", "TorchServe defaults", TORCHSERVE_DEFAULTS, list(SPECS), CONCURRENCY, seconds, log)
    log("worst case of each input class, through a served worker")
    costs = worst_case_costs(repeats=1 if quick else 3)
    if not quick:
        for workers, threads, batch, delay in SWEEP:
            setting = f"{workers} workers x {threads} threads, batch {batch}, delay {delay} ms"
            cfg = ServingConfig(batch_size=batch, max_batch_delay_ms=delay, workers=workers, threads_per_worker=threads)
            points += served("sweep", setting, cfg, ["digits"], (1, 32), seconds, log)
    out = out_root / time.strftime("%Y-%m-%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(
            {
                "quick": quick,
                "seconds_per_point": seconds,
                "points": [asdict(p) for p in points],
                "worst_cases": [asdict(c) for c in costs],
            },
            indent=2,
        )
    )
    write_report(points, out, quick, seconds, costs)
    log(f"report: {out / 'report.md'}")
    failed = [p for p in points if p.errors]
    if failed:
        raise SystemExit(f"{len(failed)} served points had errors (see {out / 'report.md'}): the run fails")
    wrong = [c.case for c in costs if c.status != c.expected]
    if wrong:
        raise SystemExit(f"worst cases answered other than documented: {', '.join(wrong)}: the run fails")
    return out
