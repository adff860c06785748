"""The benchmark's baselines and setting variants, each run beside the shipped archives.

- floor: the same exported digits TorchScript file behind a minimal TorchServe handler
  (bench/floor_handler.py), same serving settings: what our handler's guarantees cost;
- peer: LitServe on the same exported file and codec (bench/peer.py), on a free loopback port;
- variants of the TorchServe setup (config.properties keys, the logging config, a handler
  that emits no metrics, a model registered over the management API) for the settings table.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import yaml

from bench import codec_model
from training.specs import ServingConfig
from tsforge.packaging import signing
from tsforge.paths import CONFIG, LOG_CONFIG, ROOT
from tsforge.server import torchserve

FLOOR = "digits-floor"
FLOOR_HANDLER = ROOT / "bench" / "floor_handler.py"
# The shipped handler with its per-batch metrics (batch size, stage timings) switched off.
QUIET_HANDLER = ROOT / "bench" / "quiet_handler.py"


def floor_archive(exported: Path, serving: ServingConfig, store: Path) -> Path:
    """digits-floor.mar in `store`: the exported file, the floor handler, the shipped settings."""
    stage = store / f".{FLOOR}-build"
    stage.mkdir(parents=True, exist_ok=True)
    config = stage / "model-config.yaml"
    s = serving
    config.write_text(yaml.safe_dump({"minWorkers": s.workers, "maxWorkers": s.workers, "batchSize": s.batch_size,
                                      "maxBatchDelay": s.max_batch_delay_ms, "responseTimeout": s.timeout_s,
                                      "handler": {"threads": s.threads_per_worker}}))  # fmt: skip
    cmd = [str(Path(sys.executable).with_name("torch-model-archiver")), "--model-name", FLOOR, "--version", "1.0",
           "--serialized-file", str(exported), "--handler", str(FLOOR_HANDLER), "--config-file", str(config),
           "--export-path", str(store), "--force"]  # fmt: skip
    # The archiver scratches in $TMPDIR/<model name>: a private one, as tsforge.packaging.archive does.
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(stage)})
    if proc.returncode != 0:
        raise RuntimeError(f"torch-model-archiver failed for {FLOOR}:\n{proc.stderr or proc.stdout}")
    signing.sign(store / f"{FLOOR}.mar")  # served by the same verifying `torchserve.start`
    return store / f"{FLOOR}.mar"


def peer_body(example: Path, content_type: str, out: Path) -> Path:
    """The peers read JSON: the same example body, base64 (bench.codec_model.peer_body)."""
    out.write_text(codec_model.peer_body(example.read_bytes(), content_type))
    return out


def wait_until_ready(proc: subprocess.Popen, url: str, name: str, log_file: Path, timeout: float) -> None:
    """Until `url` answers 2xx; an error naming the log if the peer exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log_file}:\n{torchserve.tail(log_file)}")
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} was not ready after {timeout:.0f} s; see {log_file}")
        time.sleep(0.5)


@contextlib.contextmanager
def peer_server(model_dir: Path, serving: ServingConfig, log_file: Path, timeout: float = 120.0) -> Iterator[str]:
    """LitServe (bench/peer.py) on an unpacked archive with `serving`'s workers, threads and
    batching, on a free loopback port; yields its /predict URL and always stops it."""
    port = torchserve.free_port()
    cmd = [sys.executable, "-m", "bench.peer", "--model-dir", str(model_dir), "--port", str(port),
           "--workers", str(serving.workers), "--threads", str(serving.threads_per_worker),
           "--batch", str(serving.batch_size), "--timeout-ms", str(max(serving.max_batch_delay_ms, 1))]  # fmt: skip
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}/health", "LitServe", log_file, timeout)
        yield f"http://127.0.0.1:{port}/predict"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def config_variant(overrides: dict[str, str], out: Path) -> Path:
    """config.properties with `overrides` set (replaced where present, appended otherwise)."""
    text = CONFIG.read_text()
    for key, value in overrides.items():
        text, found = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", text)
        text += "" if found else f"\n{key}={value}\n"
    out.write_text(text)
    return out


# Logging variants: the shipped log4j2.xml with one level changed.
# Each variant: (text of log4j2.xml, its replacement) pairs. "Frontend at WARN" covers the
# per-request loggers too, whatever TSFORGE_REQUEST_LOG the bench starts TorchServe with.
LOG_VARIANTS = {
    "access log off": (('<Logger name="ACCESS_LOG" level="info"', '<Logger name="ACCESS_LOG" level="off"'),),
    "frontend log at WARN": (('<Root level="info">', '<Root level="warn">'),
                             ('level="${env:TSFORGE_REQUEST_LOG:-warn}"', 'level="warn"')),
}  # fmt: skip


@contextlib.contextmanager
def log_config(variant: str | None, out: Path) -> Iterator[None]:
    """Start TorchServe with a logging variant: tsforge.server.torchserve takes its log config from the
    module (no parameter), so it is swapped for the duration of the start only."""
    if variant is None:
        yield
        return
    text = LOG_CONFIG.read_text()
    for old, new in LOG_VARIANTS[variant]:
        if old not in text:
            raise RuntimeError(f"{LOG_CONFIG} has no {old!r}: the {variant!r} variant needs updating")
        text = text.replace(old, new)
    out.write_text(text)
    saved, torchserve.LOG_CONFIG = torchserve.LOG_CONFIG, out
    try:
        yield
    finally:
        torchserve.LOG_CONFIG = saved


def register(server: torchserve.Server, archive: str, **params: int) -> None:
    """Register `archive` over the management API with explicit settings (batch_size,
    max_batch_delay, initial_workers): the one road on which a 0 ms delay stays 0."""
    r = requests.post(f"{server.management_url}/models", headers=server.headers("management"), timeout=300,
                      params={"url": archive, "synchronous": "true", **params})  # fmt: skip
    if r.status_code != 200:
        raise RuntimeError(f"registering {archive} with {params} failed: {r.status_code} {r.text[:300]}")
