"""Shared fixtures: one real build of both archives per session, and a real TorchServe."""

from __future__ import annotations

import contextlib
import json
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from models.registry import SPECS
from tsforge.packaging import build
from tsforge.paths import EXAMPLES
from tsforge.server import torchserve
from tsforge.server.client import CONTENT_TYPES


@dataclass
class Built:
    store: Path
    artifacts: Path

    def archive(self, name: str) -> Path:
        return self.store / f"{name}.mar"

    def exported(self, model: str, runtime: str = "torchscript") -> Path:
        """The gated file an archive ships (artifacts/<model>/<runtime>/...)."""
        return build.exported_file(SPECS[model], self.artifacts / model, runtime)

    def unpacked(self, name: str, into: Path) -> Path:
        """The archive extracted as TorchServe's worker sees it."""
        with zipfile.ZipFile(self.archive(name)) as z:
            z.extractall(into)
        return into


def example(spec) -> tuple[bytes, str]:
    """A model's declared example request: (body, Content-Type)."""
    path = EXAMPLES / spec.example
    return path.read_bytes(), CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


# Every (model, format) pair the registered models declare: what the archive tests run over.
SERVED_PAIRS = [(name, runtime) for name, spec in SPECS.items() for runtime in spec.formats]


def served_name(model: str, runtime: str) -> str:
    """What `runtime`'s archive of `model` is served as (the plain name is the shipped runtime's)."""
    return build.served_name(SPECS[model], runtime)


# Served name -> its runtime: digits-torchscript -> torchscript.
RUNTIME_OF = {served_name(model, runtime): runtime for model, runtime in SERVED_PAIRS}


# The recommender's example history (examples/movielens.json): movie ids.
HISTORY = json.loads((EXAMPLES / "movielens.json").read_text())["history"]


def row_shape(spec) -> tuple[int, ...]:
    """One input row's shape, from the model's contract (a text is one BYTES element)."""
    if spec.contract.kind == "text":
        return ()
    if spec.contract.kind == "image":
        return spec.contract.pixel_shape
    if spec.contract.kind == "audio":  # one recording of any length: a chunk's worth here
        return (spec.contract.chunk,)
    if spec.contract.kind == "recommendation":  # a history of any length: the example's five ids
        return (len(HISTORY),)
    return (len(spec.contract.features),)


def protocol_rows(spec, rows: int) -> int:
    """Rows an Open Inference Protocol request of this model carries: audio takes one recording."""
    return 1 if spec.contract.kind == "audio" else rows


def v2_request(spec, rows: int, request_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """An Open Inference Protocol request of `rows` inputs the model takes: (body, headers).
    Numbers go in JSON while a few hundred thousand fit; more (colour images) as a binary
    tensor, the protocol's extension that tritonclient uses by default."""
    if spec.contract.kind == "text":
        tensor = {"name": "text", "shape": [rows], "datatype": "BYTES", "data": [f"text {i}" for i in range(rows)]}
    elif spec.contract.kind == "recommendation":  # item ids, not values: the example's history
        data = np.asarray([HISTORY] * rows, np.int64)
        tensor = {"name": "history", "shape": list(data.shape), "datatype": "INT64", "data": data.ravel().tolist()}
    else:
        data = np.full((protocol_rows(spec, rows), *row_shape(spec)), 0.25, np.float32)
        tensor = {"name": "x", "shape": list(data.shape), "datatype": "FP32", "data": data.ravel().tolist()}
    doc = {"inputs": [tensor], **({"id": request_id} if request_id else {})}
    if spec.contract.kind == "text" or data.size <= 65536:
        return json.dumps(doc).encode(), {"Content-Type": "application/json"}
    del tensor["data"]
    tensor["parameters"] = {"binary_data_size": data.nbytes}
    header = json.dumps(doc).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + data.tobytes(), headers


def same_answer(a: dict, b: dict, tolerance: float = 1e-5) -> bool:
    """Two answers to one input agree: the same label, values within `tolerance`."""
    if isinstance(a, list):  # a recommender's top k: the same items in order, scores within tolerance
        return [x["item"] for x in a] == [x["item"] for x in b] and all(
            x["score"] == pytest.approx(y["score"], abs=max(tolerance, 1e-4)) for x, y in zip(a, b, strict=True)
        )
    if "segments" in a:  # speech: the same segments (to the millisecond) and share
        return a["segments"] == b["segments"] and a["speech_share"] == pytest.approx(b["speech_share"], abs=1e-3)
    if "embedding" in a:
        return a["truncated"] == b["truncated"] and np.allclose(a["embedding"], b["embedding"], atol=tolerance)
    if "label" in a:
        return a["label"] == b["label"] and a["probabilities"] == pytest.approx(b["probabilities"], abs=tolerance)
    return a["prediction"] == pytest.approx(b["prediction"], abs=max(tolerance, 1e-4))


def metrics_until(server: torchserve.Server, done, timeout: float = 15.0) -> str:
    """The Prometheus page once `done(text)` holds: workers send their batch figures and
    monitoring counts once a second (handlers.base.FLUSH_SECONDS), not with each answer."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        text = requests.get(f"{server.metrics_url}/metrics", timeout=10).text
        if done(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


@pytest.fixture(scope="session", autouse=True)
def derived_files() -> None:
    """The files contracts name that a build derives from data (the recommender's catalogue),
    written once: a codec test needs no build first."""
    for spec in SPECS.values():
        spec.make_files()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Every registered model trained once, then exported, gated and archived in both formats."""
    # TSFORGE_TEST_BUILDS=DIR keeps the builds between local runs: build() redoes only what
    # changed (by fingerprint). CI leaves it unset and builds everything from scratch.
    cached = os.environ.get("TSFORGE_TEST_BUILDS")
    root = Path(cached) if cached else tmp_path_factory.mktemp("build")
    result = Built(store=root / "model_store", artifacts=root / "artifacts")
    for spec in SPECS.values():
        for runtime in spec.formats:
            build.build(spec, store=result.store, artifacts=result.artifacts, progress=False, runtime=runtime)
    return result


def build_other_digits(store: Path, artifacts: Path, **kwargs) -> Path:
    """digits trained with another seed for 5 epochs: a model that answers differently and still
    passes the gate (0.98), built in about 18 s instead of 100. `artifacts` is its own folder:
    another model must not replace the shared build's files."""
    digits = SPECS["digits"]
    other = replace(digits, train=replace(digits.train, seed=7, epochs=5))
    return build.build(other, store=store, artifacts=artifacts, progress=False, **kwargs)[0]


@contextlib.contextmanager
def running_torchserve(store: Path, run_dir: Path, models: list[str] | None = None) -> Iterator[torchserve.Server]:
    """A real TorchServe on free loopback ports in `run_dir`; always stopped on exit."""
    ports = {key: torchserve.free_port() for key in torchserve.PORT_KEYS}
    try:
        # request_log: tests read the batch sizes from the frontend's log (test_audio_served).
        yield torchserve.start(models or [], run_dir=run_dir, model_store=store, ports=ports, request_log=True)
    finally:
        torchserve.stop(run_dir)


@pytest.fixture(scope="session")
def served(built, tmp_path_factory):
    """One TorchServe for the integration tests, every archive registered over the API."""
    import requests

    with running_torchserve(built.store, tmp_path_factory.mktemp("ts")) as srv:
        for name in build.SERVED:
            r = requests.post(
                f"{srv.management_url}/models",
                params={"url": f"{name}.mar", "initial_workers": 1, "synchronous": "true"},
                headers=srv.headers("management"),
                timeout=120,
            )
            assert r.status_code == 200, r.text
        yield srv
