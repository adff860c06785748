"""`tsforge monitor demo`: a drift alert seen firing on this machine, end to end, in about two minutes.

A TorchServe on free loopback ports serves digits, diabetes and minilm from the model store;
Debian's Prometheus scrapes it with the shipped rules over a 30 s window. Each model gets its
held-out rows, then the same rows shifted (tsforge.monitoring.traffic). Written to `out`:
demo.json (what `tsforge monitor` showed at the end of each phase, and how long the input-drift
alerts took) and drift.png. `--publish` writes them to bench/published/drift/ and rewrites the
README's block between `<!-- monitor:drift -->` and `<!-- /monitor -->` from them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests
import yaml

from training.files import write_json, write_text
from tsforge.monitoring import rules, watch
from tsforge.monitoring.traffic import held_out_then_shifted
from tsforge.paths import MODEL_STORE, ROOT
from tsforge.server import torchserve

MODELS = ("digits", "diabetes", "minilm")
THRESHOLDS = rules.Thresholds(window="30s", hold="0s", min_rows=50, min_requests=5)
SCRAPE_S = 2
PUBLISHED = ROOT / "bench" / "published" / "drift"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- monitor:drift -->\n)(.*?)(<!-- /monitor -->)", re.S)


@contextlib.contextmanager
def local_prometheus(run_dir: Path, metrics_url: str, thresholds: rules.Thresholds) -> Iterator[str]:
    """Debian's Prometheus on a free loopback port, scraping `metrics_url` with the rendered rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise watch.MonitorError("prometheus is missing: scripts/bootstrap.sh installs Debian's prometheus package")
    run_dir.mkdir(parents=True, exist_ok=True)
    rules.write(run_dir / "rules.yml", thresholds)
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(run_dir / "rules.yml")],
        "scrape_configs": [{"job_name": "torchserve", "static_configs": [{"targets": [metrics_url.split("://")[1]]}]}],
    }
    (run_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = torchserve.free_port()
    url = f"http://127.0.0.1:{port}"
    with open(run_dir / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={run_dir / 'prometheus.yml'}", f"--storage.tsdb.path={run_dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (run_dir / "prometheus.log").read_text()[-2000:]
                raise watch.MonitorError(f"Prometheus did not start:\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def drift_firing(prometheus: str) -> set[tuple[str, str]]:
    """(alert, model) of every firing drift alert."""
    return {
        (s["metric"]["alertname"], s["metric"].get("ModelName", ""))
        for s in watch.query(prometheus, 'ALERTS{alertstate="firing"}')
        if s["metric"]["alertname"] in rules.DRIFT_ALERTS
    }


def run(out: Path, store: Path = MODEL_STORE, log=print) -> dict[str, Any]:
    """Held-out then shifted traffic through a local TorchServe and Prometheus; writes demo.json and drift.png."""
    out.mkdir(parents=True, exist_ok=True)
    calm: list[watch.ModelStatus] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "ts"
        run_dir.mkdir()
        ports = {key: torchserve.free_port() for key in torchserve.PORT_KEYS}
        log(f"starting TorchServe with {', '.join(MODELS)} and Prometheus (rules over {THRESHOLDS.window})")
        server = torchserve.start([f"{m}.mar" for m in MODELS], run_dir=run_dir, model_store=store, ports=ports)
        try:
            with local_prometheus(Path(tmp) / "prometheus", server.metrics_url, THRESHOLDS) as prometheus:
                log("held-out traffic, then shifted traffic until every input-drift alert fires")
                took = held_out_then_shifted(
                    lambda model: f"{server.inference_url}/predictions/{model}",
                    server.headers(),
                    lambda: drift_firing(prometheus),
                    MODELS,
                    settle_s=3 * SCRAPE_S,  # the last flush, scrape and evaluation
                    at_calm=lambda: calm.extend(watch.statuses(prometheus)),
                )
                fired = watch.statuses(prometheus)
                watch.plot(prometheus, out / "drift.png")
        finally:
            torchserve.stop(run_dir)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "thresholds": asdict(THRESHOLDS),
        "models": list(MODELS),
        "seconds_to_fire": took,
        "calm": [asdict(s) for s in calm],
        "fired": [asdict(s) for s in fired],
    }
    write_json(out / "demo.json", result)
    return result


def statuses(result: dict[str, Any], phase: str) -> list[watch.ModelStatus]:
    return [watch.ModelStatus(**{**s, "signals": [watch.Signal(**x) for x in s["signals"]]}) for s in result[phase]]


def readme_block(result: dict[str, Any]) -> str:
    """The README's drift block from a demo.json: both phases, and the plot."""
    calm, fired = statuses(result, "calm"), statuses(result, "fired")
    highest = max((s.psi, m.model, s.name) for m in calm for s in m.signals)
    firing_alerts = sorted({a for m in calm for a in m.alerts if a.split(" ")[0] in rules.DRIFT_ALERTS})
    lines = [
        f"Run of {result['date']} ({result['machine']}), `tsforge monitor demo --publish`, rules over "
        f"{result['thresholds']['window']}; `bench/published/drift/demo.json`.",
        "",
        f"- **held-out traffic** ({', '.join(result['models'])}, each its own held-out rows): drift alerts firing: "
        f"{', '.join(firing_alerts) or 'none'}; the highest PSI {highest[0]:.3f} ({highest[1]} {highest[2]}, "
        f"threshold {result['thresholds']['psi']:g}).",
        f"- **shifted traffic** (digits inverted, diabetes bmi x 1.6, German texts): ModelInputDrift firing for "
        f"every model {result['seconds_to_fire']:.0f} s after the shift. `tsforge monitor` then printed:",
        "",
        "```text",
        watch.report(fired),
        "```",
        "",
        "![Reference against live shares per signal after the shift](bench/published/drift/drift.png)",
    ]
    return "\n".join(lines) + "\n"


def render(readme: str, result: dict[str, Any]) -> str:
    return BLOCK.sub(lambda m: m.group(1) + readme_block(result) + m.group(3), readme)


def publish(out: Path) -> Path:
    """Copy a demo's files to bench/published/drift/ and rewrite the README's block from them."""
    result = json.loads((out / "demo.json").read_text())
    PUBLISHED.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "drift.png", PUBLISHED / "drift.png.tmp")
    (PUBLISHED / "drift.png.tmp").replace(PUBLISHED / "drift.png")
    write_text(PUBLISHED / "demo.json", (out / "demo.json").read_text())
    write_text(README, render(README.read_text(), result))
    return PUBLISHED
