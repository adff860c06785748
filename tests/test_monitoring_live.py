"""Monitoring, live on this machine: a real TorchServe, a real Prometheus with the shipped rules
(a 30 s window), held-out traffic then shifted traffic for an image, a tabular and a text model.

The drift alerts stay inactive while each model gets its own held-out rows, and the input-drift
alert fires for each once its inputs move (digits inverted, a diabetes feature scaled, German
texts); `tsforge monitor` then prints the drift and draws it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import running_torchserve
from tests.drift_traffic import Traffic, bodies, held_out, shifted
from tsforge.cli import main
from tsforge.monitoring import rules, watch
from tsforge.server.torchserve import free_port

MODELS = ("digits", "diabetes", "minilm")
THRESHOLDS = rules.Thresholds(window="30s", hold="0s", min_rows=50, min_requests=5)
SCRAPE_S = 2
REFERENCE_S = 40  # longer than the window: the scores then cover held-out traffic only
FIRE_WITHIN_S = 60


@contextlib.contextmanager
def local_prometheus(run_dir: Path, metrics_url: str, thresholds: rules.Thresholds) -> Iterator[str]:
    """Debian's Prometheus on a free loopback port, scraping `metrics_url` with the rendered rules."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: scripts/bootstrap.sh installs Debian's prometheus package"
    run_dir.mkdir(parents=True, exist_ok=True)
    rules.write(run_dir / "rules.yml", thresholds)
    target = metrics_url.split("://", 1)[1]
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(run_dir / "rules.yml")],
        "scrape_configs": [{"job_name": "torchserve", "static_configs": [{"targets": [target]}]}],
    }
    (run_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(run_dir / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={run_dir / 'prometheus.yml'}", f"--storage.tsdb.path={run_dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, (run_dir / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def firing(prometheus: str, alerts: tuple[str, ...] = rules.DRIFT_ALERTS) -> set[tuple[str, str, str]]:
    """(alert, model, signal) of every firing alert among `alerts`."""
    found = watch.query(prometheus, 'ALERTS{alertstate="firing"}')
    return {
        (s["metric"]["alertname"], s["metric"].get("ModelName", ""), s["metric"].get("Signal", ""))
        for s in found
        if s["metric"]["alertname"] in alerts
    }


def psi(prometheus: str) -> dict[tuple[str, str], float]:
    return {
        (s["metric"]["ModelName"], s["metric"]["Signal"]): float(s["value"][1])
        for s in watch.query(prometheus, "tsforge:psi")
    }


def wait_for_input_drift(prometheus: str, models: tuple[str, ...], timeout: float) -> float:
    """Seconds until ModelInputDrift fires for every model in `models`."""
    started = time.monotonic()
    while True:
        fired = {model for name, model, _ in firing(prometheus, ("ModelInputDrift",))}
        if set(models) <= fired:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, (
            f"input drift fired for {sorted(fired)} only; PSI {psi(prometheus)}"
        )
        time.sleep(1)


def test_drift_alerts_silent_on_held_out_traffic_and_firing_on_shifted_traffic(built, tmp_path, capsys):
    with (
        running_torchserve(built.store, tmp_path / "ts", [f"{m}.mar" for m in MODELS]) as server,
        local_prometheus(tmp_path / "prometheus", server.metrics_url, THRESHOLDS) as prometheus,
    ):

        def url(model: str) -> str:
            return f"{server.inference_url}/predictions/{model}"

        traffic = [Traffic(url(m), bodies(m, held_out(m)), server.headers()) for m in MODELS]
        time.sleep(REFERENCE_S)
        time.sleep(3 * SCRAPE_S)  # the last flush, scrape and evaluation
        calm_psi, calm_alerts = psi(prometheus), firing(prometheus)
        statuses = [t.stop() for t in traffic]
        assert all(set(s) == {200} for s in statuses), statuses
        assert {m for m, _ in calm_psi} == set(MODELS), calm_psi
        assert not calm_alerts, f"drift alerts fired on held-out traffic: {calm_alerts}; PSI {calm_psi}"
        assert max(calm_psi.values()) < THRESHOLDS.psi / 2, calm_psi

        traffic = [Traffic(url(m), bodies(m, shifted(m)), server.headers()) for m in MODELS]
        try:
            took = wait_for_input_drift(prometheus, MODELS, FIRE_WITHIN_S)
        finally:
            statuses = [t.stop() for t in traffic]
        assert all(set(s) == {200} for s in statuses), statuses

        capsys.readouterr()
        assert main(["monitor", "--prometheus", prometheus, "--plot", str(tmp_path / "drift.png")]) == 0
        shown = capsys.readouterr().out
        assert "ModelInputDrift (mean_intensity)" in shown and "ModelInputDrift (bmi)" in shown, shown
        assert (tmp_path / "drift.png").stat().st_size > 10_000
        with capsys.disabled():
            print(
                f"\ninput drift fired for {', '.join(MODELS)} {took:.0f} s after the shift (window {THRESHOLDS.window})"
            )
            print(shown)
        card = requests.get(
            f"{server.management_url}/models/digits?customized=true", headers=server.headers("management"), timeout=30
        ).json()[0]["customizedMetadata"]
        assert "reference_profile" in card


def test_monitor_names_prometheus_when_it_does_not_answer(capsys):
    assert main(["monitor", "--prometheus", f"http://127.0.0.1:{free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "Prometheus does not answer" in err and "Traceback" not in err


@pytest.mark.parametrize("window", ["15 minutes", "1x"])
def test_monitor_rules_refuses_a_window_that_is_not_a_duration(window, tmp_path, capsys):
    assert main(["monitor", "rules", "--window", window, "--out", str(tmp_path / "r.yml")]) == 2
    assert "Prometheus duration" in capsys.readouterr().err
    assert not (tmp_path / "r.yml").exists()
