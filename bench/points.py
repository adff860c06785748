"""What one benchmark point measured, and the settings every part of the benchmark shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from training.specs import ServingConfig

CONCURRENCY = (1, 8, 32, 64)
# TorchServe's own defaults: batch size 1, maxBatchDelay 100 ms, one worker per core, and
# PyTorch's default thread count in each worker (threads 0 = leave it alone).
TORCHSERVE_DEFAULTS = ServingConfig(batch_size=1, max_batch_delay_ms=100, workers=2, threads_per_worker=0)


@dataclass
class Point:
    stage: str  # "in-process", "shipped", "floor", "peer", "defaults", "settings", "sweep"
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
