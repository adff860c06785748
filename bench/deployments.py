"""The deployment as fast as the host: the same archives served directly by TorchServe on the
host, through the compose gateway and through the Swarm gateway (one replica, so each path
has one TorchServe on the same 2 cores), at one concurrency, in one run.

The direct server and each deployment are loaded in turn, in short rounds, so their ratio
does not depend on how this machine's speed drifts during the run. Everything listens
on loopback only; every container, network, volume, secret and the swarm (if this run made
it) is removed afterwards, even when a point fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import requests

from bench.points import Point, hey, percentile
from tsforge.deploy import containers
from tsforge.deploy.containers import docker
from tsforge.deploy.swarm import deployed_stack
from tsforge.paths import MODEL_STORE
from tsforge.server import torchserve

CONCURRENCY = 32
ROUNDS = 4
WARM_S = 15
MODEL = "digits"
ABOUT = (
    f"The same archives ({MODEL}'s example request, concurrency {CONCURRENCY}) served by TorchServe on the host, "
    "then through each deployment's gateway on loopback (compose: one replica behind Docker's published port; "
    "Swarm: one replica, the gateway in host mode), the direct server and the deployment loaded in turn, "
    f"{ROUNDS} rounds each "
    "(`bench/deployments.py`). The target: at least 0.9× direct."
)
PROJECT = "tsforge-bench"
STACK = "tsforgebench"


def measure(body: Path, content_type: str, seconds: float, log: Callable[[str], None]) -> list[Point]:
    """Per deployment, two points of `MODEL` at CONCURRENCY: served directly, and through it.

    The direct server and the deployment run side by side (the idle one costs little) and are
    loaded in turn, ROUNDS times each (A B B A ...): this machine's speed drifts by a third
    between 10 s points, and alternating short rounds takes that drift out of the ratio.
    """
    containers.ensure_engine()
    images, _ = containers.build_all(say=log)
    points = []
    with direct() as host:
        for stage, deployment in (("compose gateway", compose), ("swarm gateway", swarm)):
            log(f"deployment: {MODEL} served directly and through the {stage}, in turns")
            with deployment(images) as through:
                points += alternate({"direct": host, stage: through}, body, content_type, seconds / ROUNDS)
    return points


def alternate(paths: dict[str, tuple[str, str]], body: Path, content_type: str, seconds: float) -> list[Point]:
    """One point per path (name -> (url, key)): ROUNDS rounds of `seconds`, the paths in turn."""
    # Warm-up at full load: a just-started TorchServe's JVM spends the first seconds compiling
    # (its CPU a request fell from 0.7 ms to 0.2 ms within about 20 s here, measured), and the
    # direct server is warm from the previous pair while a deployment is new.
    for url, key in paths.values():
        hey(url, body, content_type, key, CONCURRENCY, WARM_S)
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    errors = dict.fromkeys(paths, 0)
    for round_ in range(ROUNDS):
        # In turns A B, then B A: a drift that slows the machine across a round costs each
        # path the same, where always measuring the deployment second would charge it to it.
        order = list(paths.items()) if round_ % 2 == 0 else list(paths.items())[::-1]
        for name, (url, key) in order:
            ms, failed = hey(url, body, content_type, key, CONCURRENCY, seconds)
            latencies[name] += ms
            errors[name] += failed
    total = seconds * ROUNDS
    return [
        Point(
            "deployment",
            MODEL,
            name,
            CONCURRENCY,
            len(ms) + errors[name],
            len(ms) / total,
            percentile(ms, 50),
            percentile(ms, 90),
            percentile(ms, 99),
            errors[name],
            mean_ms=statistics.fmean(ms),
        )  # fmt: skip
        for name, ms in latencies.items()
    ]


def figures(points: list[Point], date: str, machine: str) -> dict:
    """What `tsforge bench --deployments` keeps: the points, with their own date and machine
    (the published full run they are merged into may be older)."""
    return {"date": date, "machine": machine, "points": [asdict(p) for p in points]}


def block(results: dict) -> list[str]:
    """The README's and the report's lines for a results.json: the run they come from (a
    `--deployments` run's own when one was published, else the full run's) and the table."""
    if part := results.get("deployments"):
        run = f"Run of {part['date']} (`tsforge bench --deployments`), on {part['machine']}."
        points = [Point(**p) for p in part["points"]]
    else:
        run = f"Run of {results['date']} (`make bench`)."
        points = [Point(**p) for p in results.get("points", []) if p["stage"] == "deployment"]
    if not points:
        return ["(the published run predates the deployment points: `make bench` measures them)"]
    return [run, "", *table(points)]


def table(points: list[Point]) -> list[str]:
    """Each deployment beside the direct server it was measured against, with the ratio."""
    rows = ["| path | samples/s | p50 ms | p99 ms | errors | / direct |", "|---|---:|---:|---:|---:|---:|"]
    for host, through in zip(points[::2], points[1::2], strict=True):
        rows.append(
            f"| direct (host) | {host.throughput:.0f} | {host.p50_ms:.1f} | {host.p99_ms:.1f} | {host.errors} | |"
        )
        rows.append(f"| {through.setting} | {through.throughput:.0f} | {through.p50_ms:.1f} | {through.p99_ms:.1f} "
                    f"| {through.errors} | **{through.throughput / host.throughput:.2f}×** |")  # fmt: skip
    return rows


@contextlib.contextmanager
def direct() -> Iterator[tuple[str, str]]:
    """Every archive of the store, as compose mounts it and the Swarm image bakes it in."""
    archives = sorted(p.name for p in MODEL_STORE.glob("*.mar"))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        ports = {k: torchserve.free_port() for k in torchserve.PORT_KEYS}
        try:
            server = torchserve.start(archives, run_dir=run_dir, model_store=MODEL_STORE, ports=ports)
            yield f"{server.inference_url}/predictions/{MODEL}", server.keys()["inference"]
        finally:
            torchserve.stop(run_dir)


@contextlib.contextmanager
def compose(images: containers.Images) -> Iterator[tuple[str, str]]:
    # The archives the direct server loads, wherever TSFORGE_MODEL_STORE puts them.
    env = {
        **os.environ,
        **images.env(),
        "COMPOSE_PROJECT_NAME": PROJECT,
        "TSFORGE_MODEL_STORE": str(MODEL_STORE.resolve()),
    }
    env |= {
        var: str(torchserve.free_port())
        for var in ("GATEWAY_PORT", "MANAGEMENT_PORT", "METRICS_PORT", "PROMETHEUS_PORT")
    }
    cmd = containers.compose_cmd()
    try:
        subprocess.run([*cmd, "up", "-d"], env=env, check=True, capture_output=True)
        (container,) = subprocess.run(
            [*cmd, "ps", "-q", "torchserve"], env=env, capture_output=True, text=True
        ).stdout.split()
        containers.wait_until("the compose replica's health", lambda: containers.health(container) == "healthy")
        key = json.loads(docker("exec", container, "cat", "/home/model-server/run/key_file.json").stdout)
        url = f"http://127.0.0.1:{env['GATEWAY_PORT']}/predictions/{MODEL}"
        containers.wait_until("an answer through the compose gateway", lambda: _answers(url, key["inference"]["key"]))
        yield url, key["inference"]["key"]
    finally:
        subprocess.run([*cmd, "down", "-v"], env=env, capture_output=True)


@contextlib.contextmanager
def swarm(images: containers.Images) -> Iterator[tuple[str, str]]:
    key, port = os.urandom(32).hex(), torchserve.free_port()
    env = {**os.environ, **images.env(), "MODELS_IMAGE": containers.models_image("bench", MODEL_STORE),
           "REPLICAS": "1", "GATEWAY_PORT": str(port)}  # fmt: skip
    with deployed_stack(STACK, env, key):
        url = f"http://127.0.0.1:{port}/predictions/{MODEL}"
        containers.wait_until("an answer through the Swarm gateway", lambda: _answers(url, key))
        yield url, key


def _answers(url: str, key: str) -> bool:
    try:
        return requests.post(url, data=b"", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code < 500
    except requests.RequestException:
        return False
