"""Heavy beside light: the largest requests a model's limits accept, sent without pause, beside
one small request at a steady pace. What the small one waits is what the budgets bound
(handlers/scheduling.py); `make bench` reports it per kind and tests/test_fairness.py holds the
text model to it through a real TorchServe.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import requests

from tsforge.server import torchserve

HEAVY_CLIENTS = 8
LIGHT_EVERY_S = 0.2


@dataclass
class Body:
    data: bytes
    content_type: str


@dataclass
class HeavyBesideLight:
    model: str
    heavy: str  # what the heavy request is
    seconds: float
    light_alone_p99_ms: float  # the light request with nothing else running, this run
    light_p50_ms: float
    light_p99_ms: float
    light_statuses: dict[int, int] = field(default_factory=dict)
    heavy_statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # timeouts and refused connections


def _post(server: torchserve.Server, model: str, body: Body) -> requests.Response:
    headers = {**server.headers(), "Content-Type": body.content_type}
    return requests.post(f"{server.inference_url}/predictions/{model}", data=body.data, headers=headers, timeout=60)


def _light_loop(server, model, light: Body, stop: float, latencies: list, statuses: list, errors: list) -> None:
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            statuses.append(_post(server, model, light).status_code)
            latencies.append(time.perf_counter() - started)
        except requests.RequestException as e:
            errors.append(f"light: {type(e).__name__}")
        time.sleep(LIGHT_EVERY_S)


def measure(
    server: torchserve.Server, model: str, heavy: Body, light: Body, what: str, seconds: float
) -> HeavyBesideLight:
    """The light request alone for `seconds`, then beside HEAVY_CLIENTS heavy ones as long."""
    alone: list[float] = []
    errors: list[str] = []
    _light_loop(server, model, light, time.monotonic() + seconds, alone, [], errors)
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    light_statuses: list[int] = []
    heavy_statuses: list[int] = []

    def heavy_loop() -> None:
        while time.monotonic() < stop:
            try:
                heavy_statuses.append(_post(server, model, heavy).status_code)
            except requests.RequestException as e:  # a timeout is a failure, not a skip
                errors.append(f"heavy: {type(e).__name__}")

    threads = [threading.Thread(target=heavy_loop) for _ in range(HEAVY_CLIENTS)]
    threads.append(
        threading.Thread(target=_light_loop, args=(server, model, light, stop, latencies, light_statuses, errors))
    )
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def ms(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) * 1000 if values else float("nan")

    def counts(statuses: list[int]) -> dict[int, int]:
        return {s: statuses.count(s) for s in sorted(set(statuses))}

    return HeavyBesideLight(
        model, what, seconds, ms(alone, 99), ms(latencies, 50), ms(latencies, 99),
        counts(light_statuses), counts(heavy_statuses), errors,
    )  # fmt: skip


def table(results: list[HeavyBesideLight]) -> list[str]:
    rows = [
        f"| model | heavy request ({HEAVY_CLIENTS} clients, no pause) | light alone p99 | light beside p50 | "
        "light beside p99 | light answers | heavy answers | transport errors |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.model} | {r.heavy} | {r.light_alone_p99_ms:.0f} ms | {r.light_p50_ms:.0f} ms | "
            f"{r.light_p99_ms:.0f} ms | {_counts(r.light_statuses)} | {_counts(r.heavy_statuses)} | {len(r.errors)} |"
        )
    return rows


def _counts(statuses: dict) -> str:
    """{200: 9, 429: 40} (or its JSON form, keys as text) as "200: 9, 429: 40"."""
    return ", ".join(f"{k}: {n}" for k, n in sorted(statuses.items(), key=lambda kv: int(kv[0])))
