"""What the worst request of each input class costs a served worker: `make bench`'s cost table.

Each body of `bench.worst_cases` (the costliest inputs the limits accept, and the bombs
beyond them) is sent to a real TorchServe; the model's worker processes are measured around
it with psutil and /proc: CPU time per request, and the growth of their peak resident memory
(VmHWM, reset through /proc/<pid>/clear_refs before each case).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from bench.worst_cases import worst_cases
from models.registry import SPECS
from tsforge.paths import EXAMPLES
from tsforge.server import torchserve
from tsforge.server.client import CONTENT_TYPES


@dataclass
class Cost:
    case: str
    model: str
    what: str
    bytes_sent: int
    status: int
    expected: int
    cpu_ms: float  # worker CPU time per request (all of the model's workers together)
    peak_rss_mib: float  # growth of the largest worker's peak resident memory


def worker_pids(server: torchserve.Server, model: str) -> list[int]:
    r = requests.get(f"{server.management_url}/models/{model}", headers=server.headers("management"), timeout=10)
    return [w["pid"] for d in r.json() for w in d["workers"] if w.get("pid")]


def largest_rss(pids: list[int]) -> int:
    """The largest resident set (bytes) of the workers still alive: a baseline's worker that
    timed out is being replaced while it is asked."""
    sizes = []
    for pid in pids:
        try:
            sizes.append(psutil.Process(pid).memory_info().rss)
        except psutil.NoSuchProcess:
            continue
    return max(sizes, default=0)


def _reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+; needs write access to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def measure(server: torchserve.Server, repeats: int = 3, warm_up: int = 4, models: tuple[str, ...] = ()) -> list[Cost]:
    """Every worst case, `repeats` times each, one after the other (nothing else in flight).
    Each model's workers first answer its example request `warm_up` times, unmeasured: a
    TorchScript model optimises its graph on its first calls, which no later request pays again.
    `models`: only their cases (default: every case)."""
    costs, warm = [], set()
    for case in (c for c in worst_cases() if c.model in models or not models):
        if case.model not in warm:
            example = EXAMPLES / SPECS[case.model].example
            for _ in range(warm_up):
                _post(server, case.model, example.read_bytes(), CONTENT_TYPES.get(example.suffix.lower(), ""))
            warm.add(case.model)
        pids = worker_pids(server, case.model)
        procs = [psutil.Process(pid) for pid in pids]
        reset = all(_reset_peak(pid) for pid in pids)
        rss = {pid: _kib(pid, "VmRSS") if reset else _kib(pid, "VmHWM") for pid in pids}
        cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
        statuses = []
        for _ in range(repeats):
            statuses.append(_post(server, case.model, case.body, case.content_type))
        cpu_ms = (sum(sum(p.cpu_times()[:2]) for p in procs) - cpu) * 1000 / repeats
        peak = max((_kib(pid, "VmHWM") - rss[pid]) / 1024 for pid in pids)
        # One repeat that answered otherwise is the case's result: a majority would hide it.
        status = next((s for s in statuses if s != case.expect), case.expect)
        costs.append(Cost(case.name, case.model, case.what, len(case.body), status, case.expect, cpu_ms, peak))
    return costs


def costs(store: Path, repeats: int, models: tuple[str, ...] = ()) -> list[Cost]:
    """The shipped TorchScript archives of `store` (of `models`, default all) on their own
    server, one worst-case body at a time."""
    with tempfile.TemporaryDirectory() as tmp:
        ports = {k: torchserve.free_port() for k in torchserve.PORT_KEYS}
        archives = [f"{name}.mar" for name in models or SPECS]
        server = torchserve.start(archives, run_dir=Path(tmp) / "run", model_store=store, ports=ports)
        try:
            return measure(server, repeats, models=models)
        finally:
            torchserve.stop(Path(tmp) / "run")


def _post(server: torchserve.Server, model: str, body: bytes, content_type: str) -> int:
    r = requests.post(
        f"{server.inference_url}/predictions/{model}",
        data=body,
        headers={**server.headers(), "Content-Type": content_type},
        timeout=60,
    )
    return r.status_code


def table(costs: list[Cost]) -> list[str]:
    rows = [
        "| input | model | what | bytes sent | answer | worker CPU ms / request | peak RSS growth (MiB) |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    for c in costs:
        answer = f"{c.status}" if c.status == c.expected else f"**{c.status} (expected {c.expected})**"
        rows.append(
            f"| {c.case} | {c.model} | {c.what} | {c.bytes_sent:,} | {answer} | {c.cpu_ms:.0f} | {c.peak_rss_mib:.1f} |"
        )
    return rows
