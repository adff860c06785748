"""The handler's per-batch figures, summed in the worker and sent to the frontend in bulk.

TorchServe's worker prints a metric as a log line the moment it is added, and the frontend
parses every line: the four lines a batch used to cost (its size and three stage timers) were
a tenth of a small model's worker CPU under load (py-spy, movielens at concurrency 32) and
about 0.16 ms of a lone digits request in the worker. So `handle()` only adds to these sums,
and handlers.base's metrics thread sends them with the monitoring counts every FLUSH_SECONDS.

Sent as counters labelled by batch size (so a mean per batch, or per request, is a division):
- HandlerBatches{BatchSize}: batches of that size formed;
- HandlerPreprocessMs / HandlerInferenceMs / HandlerPostprocessMs {BatchSize}: milliseconds
  spent in that stage, summed over those batches.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

BATCHES = "HandlerBatches"
STAGES = ("HandlerPreprocessMs", "HandlerInferenceMs", "HandlerPostprocessMs")


class BatchTally:
    """Batches and stage milliseconds by batch size since the last `take()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # handle() adds on the worker's thread, the metrics thread takes
        self._batches: Counter[int] = Counter()
        self._ms: defaultdict[tuple[str, int], float] = defaultdict(float)

    def add(self, size: int, stage_seconds: tuple[float, float, float]) -> None:
        with self._lock:
            self._batches[size] += 1
            for stage, seconds in zip(STAGES, stage_seconds, strict=True):
                self._ms[stage, size] += seconds * 1000.0

    def take(self) -> list[tuple[str, int, float]]:
        """(metric, batch size, increment) for every size seen since the last take, then zero."""
        with self._lock:
            batches, ms = self._batches, self._ms
            self._batches, self._ms = Counter(), defaultdict(float)
        return [(BATCHES, size, float(n)) for size, n in sorted(batches.items())] + [
            (stage, size, total) for (stage, size), total in sorted(ms.items())
        ]
