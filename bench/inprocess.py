"""The served code path without the server: an archive's real handler in TorchServe's real
Context, fed its model's example request. Shared by the in-process points (bench.run) and the
monitoring cost (bench.monitoring_cost)."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.baselines import FLOOR
from bench.points import Point, percentile
from models.registry import SPECS
from tsforge.packaging import build
from tsforge.paths import EXAMPLES
from tsforge.server.client import CONTENT_TYPES

# Each model's request body is its declared example (examples/<file>).
BODIES = {
    name: (EXAMPLES / spec.example, CONTENT_TYPES.get(Path(spec.example).suffix.lower(), "application/octet-stream"))
    for name, spec in SPECS.items()
}
# Served name -> the model (and request body) behind it: digits-onnx -> digits.
MODEL_BEHIND = {**build.MODEL_OF, FLOOR: "digits"}


@dataclass
class Loaded:
    handler: Any
    context: Any
    requests: list[dict[str, bytes]]  # one worker call: `batch` copies of the example request
    headers: dict[str, dict[str, str]]

    def call(self) -> None:
        from ts.context import RequestProcessor

        self.context.request_processor = [RequestProcessor(self.headers) for _ in self.requests]
        self.handler.handle(self.requests, self.context)


@contextlib.contextmanager
def loaded(model: str, store: Path, batch: int) -> Iterator[Loaded]:
    """The archive `store/<model>.mar` unpacked and initialised, with a batch of its example."""
    from ts.context import Context

    from handlers.handler import Handler

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(store / f"{model}.mar") as z:
            z.extractall(tmp)
        manifest = json.loads((Path(tmp) / "MAR-INF" / "MANIFEST.json").read_text())
        config = yaml.safe_load((Path(tmp) / "model-config.yaml").read_text())
        ctx = Context(model, tmp, manifest, batch, None, "0.12.0", model_yaml_config=config)
        handler = Handler()
        handler.initialize(ctx)
        path, content_type = BODIES[MODEL_BEHIND[model]]
        yield Loaded(
            handler, ctx, [{"body": path.read_bytes()} for _ in range(batch)], {"body": {"content-type": content_type}}
        )


def point(model: str, store: Path, batch: int, seconds: float) -> Point:
    """The served code path without the server: the real handler on real bodies, in a loop."""
    latencies = []
    with loaded(model, store, batch) as run_:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(latencies) < 20:
            started = time.perf_counter()
            run_.call()
            latencies.append(time.perf_counter() - started)
    total = sum(latencies)
    ms = [x * 1000 for x in latencies]
    return Point("in-process", model, f"batch {batch}", 1, len(ms) * batch, len(ms) * batch / total,
                 percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), 0)  # fmt: skip
