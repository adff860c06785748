"""Where the time of a served request goes, from TorchServe's own accounting.

Three sources, all per request (a request in a batch of b waits for the whole batch, so
per-batch times are weighted by b):
- the Prometheus counters (`ts_inference_latency_microseconds`: the frontend's whole time;
  `ts_queue_latency_microseconds`: arrival to batch assembled, so it includes the batch wait);
- the frontend's log of each batch (`Backend response time: N` ms per worker round trip, and
  one `Sending response` line per request of that batch);
- the worker's metric lines the frontend echoes in its log (`PredictionTime`: the whole
  handle() call, one line a batch naming the batch's request ids; `HandlerPreprocessMs` /
  `HandlerInferenceMs` / `HandlerPostprocessMs`: the handler's own stage milliseconds, summed by
  batch size, and `HandlerBatches` counted by size, sent once a second: handlers/batch_metrics.py).
The log lines are read from `logs/torchserve.out` between two byte offsets (it never rolls); a
point waits for the workers' next send before it takes either offset (bench.served).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from handlers.batch_metrics import BATCHES, STAGES

# name, value, dimensions, and the request ids the line was sent under (a batch's, joined by commas)
METRIC = re.compile(
    r"\[METRICS\](\w+)\.\w+:([-\d.eE+]+)\|#([^|]*)\|#type:\w+\|#hostname:[^,]*,\d+,([\w-]+(?:,[\w-]+)*)"
)  # fmt: skip
BACKEND = re.compile(r" (W-\d+-(.+?)_[\w.]+) org\.pytorch\.serve\.wlm\.WorkerThread - Backend response time: (\d+)")
SENT = re.compile(r" (W-\d+-(.+?)_[\w.]+) org\.pytorch\.serve\.wlm\.BatchAggregator - Sending response for jobId")
STAGE_PARTS = dict(zip(STAGES, ("decode", "inference", "encode"), strict=True))
# The rows of the breakdown table, in the order a request meets them.
PARTS = ("client_and_http", "queue_and_batch_wait", "frontend_other", "worker_ipc", "decode", "inference",
         "encode", "handler_other")  # fmt: skip


def log_offset(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def parse(text: str, model: str) -> dict[str, float]:
    """Per-request means (ms) of the worker round trip, the handle() call and its stages."""
    handle_calls: list[tuple[float, int]] = []  # (ms, batch size)
    stage_ms: dict[str, float] = defaultdict(float)  # stage -> sum over batches of ms x size
    batched = 0.0  # requests in the batches those sums cover
    pending: dict[str, int] = defaultdict(int)
    trips: list[tuple[float, int]] = []
    for line in text.splitlines():
        if m := SENT.search(line):
            if m.group(2) == model:
                pending[m.group(1)] += 1
        elif m := BACKEND.search(line):
            if m.group(2) == model:
                trips.append((float(m.group(3)), max(1, pending.pop(m.group(1), 1))))
        elif (m := METRIC.search(line)) and f"ModelName:{model}," in m.group(3) + ",":
            name, value, dims, request_ids = m.groups()
            if name == "PredictionTime":
                handle_calls.append((float(value), request_ids.count(",") + 1))
            elif name == BATCHES or name in STAGES:
                size = int(dict(d.split(":", 1) for d in dims.split(","))["BatchSize"])
                if name == BATCHES:
                    batched += float(value) * size
                else:  # a request in a batch of `size` waits for the whole batch's stage
                    stage_ms[name] += float(value) * size
    out = {}
    if trips:
        out["worker_round_trip"] = sum(t * b for t, b in trips) / sum(b for _, b in trips)
        out["batch_size"] = sum(b * b for _, b in trips) / sum(b for _, b in trips)  # as a request sees it
    if handle_calls:
        out["handle_call"] = sum(t * b for t, b in handle_calls) / sum(b for _, b in handle_calls)
    if batched:
        out.update({STAGE_PARTS[name]: total / batched for name, total in stage_ms.items()})
    return out


def breakdown(mean_ms: float, torchserve_ms: float, queue_ms: float, logged: dict[str, float]) -> dict[str, float]:
    """The request's mean latency split into PARTS (ms); what a source lacks stays out."""
    trip = logged.get("worker_round_trip", 0.0)
    handle = logged.get("handle_call", 0.0)
    parts = {
        "client_and_http": mean_ms - torchserve_ms,
        "queue_and_batch_wait": queue_ms,
        "frontend_other": torchserve_ms - queue_ms - trip,
        "worker_ipc": trip - handle if trip and handle else 0.0,
    }
    stages = {k: logged[k] for k in STAGE_PARTS.values() if k in logged}
    parts.update(stages)
    if handle:
        parts["handler_other"] = handle - sum(stages.values())
    parts["batch_size"] = logged.get("batch_size", 0.0)
    return parts


def table(rows: list[tuple[str, dict[str, float], float]]) -> list[str]:
    """One row per served point: (label, parts, mean ms)."""
    head = ["| point | mean ms | batch (per request) | " + " | ".join(p.replace("_", " ") for p in PARTS) + " |",
            "|---|" + "---:|" * (len(PARTS) + 2)]  # fmt: skip
    for label, parts, mean in rows:
        cells = " | ".join(f"{parts[p]:.2f}" if p in parts else "–" for p in PARTS)
        head.append(f"| {label} | {mean:.2f} | {parts.get('batch_size', 0):.1f} | {cells} |")
    return head
