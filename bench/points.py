"""What one benchmark point measured, how a served point is measured (hey, its CSV, the
percentiles), and the settings every part of the benchmark shares."""

from __future__ import annotations

import csv
import io
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from training.specs import ServingConfig

CONCURRENCY = (1, 8, 32, 64)
# TorchServe's own defaults: batch size 1, maxBatchDelay 100 ms, one worker per core, and
# PyTorch's default thread count in each worker (threads 0 = leave it alone).
TORCHSERVE_DEFAULTS = ServingConfig(batch_size=1, max_batch_delay_ms=100, workers=2, threads_per_worker=0)


@dataclass
class Point:
    stage: str  # "in-process", "shipped", "floor", "peer", "triton", "defaults", "settings", "tune", "tune-peer", ...
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
    mean_ms: float = 0.0
    # Per request, ms: bench.breakdown.PARTS (TorchServe points only).
    breakdown: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


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


def hey_point(stage: str, model: str, setting: str, url: str, body: Path, content_type: str, key: str, c: int,
              seconds: float) -> Point:  # fmt: skip
    ms, errors = hey(url, body, content_type, key, c, seconds)
    if not ms:  # nothing answered (a baseline that times out): no latency to report
        nan = float("nan")
        return Point(stage, model, setting, c, errors, 0.0, nan, nan, nan, errors, mean_ms=nan)
    return Point(stage, model, setting, c, len(ms) + errors, len(ms) / seconds, percentile(ms, 50),
                 percentile(ms, 90), percentile(ms, 99), errors, mean_ms=statistics.fmean(ms))  # fmt: skip


def name_of(served_as: dict[str, list[str]] | None, model: str, runtime: str) -> str:
    """The name `runtime`'s archive of `model` was served under in a run, from its results'
    `served_as` (served name -> [model, runtime]). A run from before models/tuned.json has none:
    it served TorchScript under the plain name and the others as <name>-<runtime>."""
    if served_as is None:
        return model if runtime == "torchscript" else f"{model}-{runtime}"
    return next(name for name, (m, r) in served_as.items() if (m, r) == (model, runtime))
