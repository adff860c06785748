"""What monitoring costs a served model (#24's target: at most 3 % of its c=32 throughput).

- **Served**: one TorchServe holds digits twice: the shipped archive, and the same archive
  whose model card has no reference profile (the handler then counts nothing and starts no
  flusher: the same code with monitoring off). hey loads them in turn at c=32, `rounds` times
  each; the ratio of the median throughputs is the served cost.
- **In process**: each model's shipped handler on a worker call of its serving batch, timed
  with and without its monitor in alternating rounds, and the counting the flusher does for
  those calls (`Monitor.take`): monitoring's extra CPU per call.
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import inprocess
from bench.points import hey
from models.registry import SPECS
from tsforge.packaging import archive, build, signing
from tsforge.paths import ARTIFACTS, MODEL_STORE
from tsforge.server import torchserve

MODEL = "digits"
UNMONITORED = f"{MODEL}-unmonitored"
CONCURRENCY = 32
TARGET = 0.97  # served throughput with monitoring / without: at most 3 % lost
MIN_CALLS = 5  # per model and round in process, however slow the model
WARM_UP_S = 10  # each, at c=32: the first loads after a start run slow (lazy loads, JIT profiling)
ROUNDS = 5  # served, full runs: alternating, so drift in the machine's speed hits both alike


@dataclass
class ServedCost:
    model: str
    concurrency: int
    seconds_per_round: float
    monitored: list[float]  # requests/s, one per round
    unmonitored: list[float]

    @property
    def paired(self) -> list[float]:
        """Each round's ratio: its two loads ran back to back (ABBA), so the machine's drift in
        speed between rounds cancels."""
        return [m / u for m, u in zip(self.monitored, self.unmonitored, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.paired)


@dataclass
class InProcessCost:
    model: str
    batch: int
    monitored_ms: float  # median handler time per worker call (the request path)
    unmonitored_ms: float
    counting_ms: float  # the flusher's counting, per worker call it covered

    @property
    def share(self) -> float:
        """The counting's CPU per worker call over the call's own (the request path itself only
        keeps the rows: its two timings differ by the machine's noise)."""
        return self.counting_ms / self.unmonitored_ms


def unmonitored_store(tmp: Path, store: Path, artifacts: Path) -> Path:
    """The shipped digits archive beside the same archive without its reference profile."""
    spec = SPECS[MODEL]
    exported = build.exported_file(spec, artifacts / MODEL, "torchscript")
    card = json.loads((exported.parent / build.MODEL_CARD).read_text())
    card.pop("reference_profile")
    both = tmp / "store"
    archive.build_archive(spec, exported, card, both, model_name=UNMONITORED)
    for path in (store / f"{MODEL}.mar", signing.signature_of(store / f"{MODEL}.mar")):
        shutil.copy(path, both / path.name)
    return both


def served(seconds: float, rounds: int, log, store: Path, artifacts: Path) -> ServedCost:
    path, content_type = inprocess.BODIES[MODEL]
    figures: dict[str, list[float]] = {MODEL: [], UNMONITORED: []}
    with tempfile.TemporaryDirectory() as tmp:
        both = unmonitored_store(Path(tmp), store, artifacts)
        ports = {k: torchserve.free_port() for k in torchserve.PORT_KEYS}
        run_dir = Path(tmp) / "run"
        server = torchserve.start([f"{m}.mar" for m in figures], run_dir=run_dir, model_store=both, ports=ports)
        try:
            key = server.keys()["inference"]
            for model in figures:  # warm-up at the measured concurrency: first requests load lazily
                hey(f"{server.inference_url}/predictions/{model}", path, content_type, key, CONCURRENCY, WARM_UP_S)
            for i in range(rounds):
                for model in figures if i % 2 == 0 else reversed(figures):  # ABBA: neither always goes first
                    log(f"monitoring cost: {model} at concurrency {CONCURRENCY}, round {i + 1} of {rounds}")
                    url = f"{server.inference_url}/predictions/{model}"
                    ms, errors = hey(url, path, content_type, key, CONCURRENCY, seconds)
                    if errors:
                        raise SystemExit(f"monitoring cost: {errors} failed requests to {model}")
                    figures[model].append(len(ms) / seconds)
        finally:
            torchserve.stop(run_dir)
    return ServedCost(MODEL, CONCURRENCY, seconds, figures[MODEL], figures[UNMONITORED])


def in_process(seconds: float, rounds: int, store: Path) -> list[InProcessCost]:
    """Each model's handler with and without its monitor in alternating phases: the request
    path's time per worker call, and the counting (`Monitor.take`, which a worker's flusher
    runs every FLUSH_SECONDS) per worker call it covered."""
    costs = []
    for name, spec in SPECS.items():
        batch = spec.serving.batch_size
        with inprocess.loaded(name, store, batch) as run:
            monitor = run.handler.monitor
            times: dict[bool, list[float]] = {True: [], False: []}
            counting: list[float] = []
            for _ in range(rounds):
                for on in (True, False):
                    run.handler.monitor = monitor if on else None
                    deadline = time.perf_counter() + seconds / (2 * rounds)
                    for call in itertools.count():
                        if call >= MIN_CALLS and time.perf_counter() > deadline:
                            break
                        started = time.perf_counter()
                        run.call()
                        times[on].append(time.perf_counter() - started)
                    if on:
                        started = time.perf_counter()
                        monitor.take()
                        counting.append((time.perf_counter() - started) / call)
        costs.append(
            InProcessCost(
                name,
                batch,
                statistics.median(times[True]) * 1000,
                statistics.median(times[False]) * 1000,
                statistics.median(counting) * 1000,
            )
        )
    return costs


def measure(seconds: float, rounds: int, log, store: Path = MODEL_STORE, artifacts: Path = ARTIFACTS) -> dict[str, Any]:
    log("monitoring cost, in process")
    inside = in_process(seconds, rounds, store)
    cost = served(seconds, rounds, log, store, artifacts)
    return {"date": time.strftime("%Y-%m-%d"), "served": asdict(cost), "in_process": [asdict(c) for c in inside]}


def table(figures: dict[str, Any] | None) -> list[str]:
    """The report's and the README's lines: the served A/B with its verdict, then per model in process."""
    if not figures:
        return ["(the published run predates the monitoring measurement: `make bench` measures it)"]
    s = ServedCost(**figures["served"])
    mon = ", ".join(f"{v:.0f}" for v in s.monitored)
    off = ", ".join(f"{v:.0f}" for v in s.unmonitored)
    paired = ", ".join(f"{v:.3f}" for v in s.paired)
    verdict = "**met**" if round(s.ratio, 3) >= TARGET else "**missed**"  # judged as printed
    lines = [
        f"Measured {figures['date']}.",
        "",
        f"- served {s.model} at c={s.concurrency}, {len(s.monitored)} ABBA rounds of {s.seconds_per_round:g} s: "
        f"with monitoring {mon} req/s, without {off}; per round {paired}; median with / without = "
        f"**{s.ratio:.3f}** (target ≥ {TARGET}): {verdict}",
        "",
        "| model | batch | handler ms per call, monitored | unmonitored | counting ms per call | counting / call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in (InProcessCost(**c) for c in figures["in_process"]):
        lines.append(
            f"| {c.model} | {c.batch} | {c.monitored_ms:.2f} | {c.unmonitored_ms:.2f} | {c.counting_ms:.3f} | {c.share:.2%} |"
        )
    return lines
