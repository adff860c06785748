"""What the Docker image runs, run here: `tsforge serve run` bound to 0.0.0.0, its health check
with the inference key, and a drained stop on SIGTERM (what `docker stop` sends): not ready at
once, every request in flight answered, then TorchServe stopped."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tsforge.paths import CONFIG
from tsforge.server import torchserve

pytestmark = pytest.mark.integration


def test_serve_run_is_healthy_on_all_interfaces_and_stops_on_sigterm(built, tmp_path):
    ports = {key: torchserve.free_port() for key in torchserve.PORT_KEYS}
    config = torchserve.render_config(CONFIG, tmp_path / "cfg", built.store, ports)
    env = {
        **os.environ,
        "TSFORGE_CONFIG": str(config),
        "TSFORGE_MODEL_STORE": str(built.store),
        "TSFORGE_RUN_DIR": str(tmp_path / "run"),
        "TSFORGE_BIND_HOST": "0.0.0.0",
        "TSFORGE_READY_PORT": str(torchserve.free_port()),
    }
    ready_url = f"http://127.0.0.1:{env['TSFORGE_READY_PORT']}/ready"
    tsforge = str(Path(sys.executable).with_name("tsforge"))
    health = [tsforge, "serve", "health"]
    # The image's HEALTHCHECK: the readiness port's view, which is the gateway's.
    container_health = [sys.executable, "-m", "tsforge.server.health"]
    assert subprocess.run(health, env=env).returncode == 1  # nothing is running yet
    assert subprocess.run(container_health, env=env).returncode == 1
    output = open(tmp_path / "serve-run.log", "w+")  # noqa: SIM115 (a file, not a pipe: it never fills up)
    proc = subprocess.Popen([tsforge, "serve", "run"], env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while subprocess.run(health, env=env).returncode != 0:
            assert proc.poll() is None, (tmp_path / "serve-run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "not healthy after 180 s"
            time.sleep(1)
        rendered = torchserve.read_properties(tmp_path / "run" / "config.properties")
        assert rendered["inference_address"] == f"http://0.0.0.0:{ports['inference_address']}"
        server = torchserve.server_for(tmp_path / "run")
        r = requests.post(
            f"{server.inference_url}/predictions/diabetes",
            json={"features": [50, 1, 25, 90, 180, 100, 50, 4, 4.5, 90]},
            headers=server.headers(),
            timeout=30,
        )
        assert r.status_code == 200 and "prediction" in r.json()
        while requests.get(ready_url, timeout=5).status_code != 200:  # it listens from the start
            assert time.monotonic() < deadline, "the readiness port never said ready"
            time.sleep(0.2)
        assert subprocess.run(container_health, env=env).returncode == 0

        # A planned stop under load: clients stop sending once /ready says 503 (as the gateway
        # does); every request they sent, before or during the drain, is answered.
        statuses: list[int] = []
        errors: list[str] = []

        def client() -> None:
            while requests.get(ready_url, timeout=5).status_code == 200:
                try:
                    statuses.append(
                        requests.post(
                            f"{server.inference_url}/predictions/diabetes",
                            json={"features": [50, 1, 25, 90, 180, 100, 50, 4, 4.5, 90]},
                            headers=server.headers(),
                            timeout=30,
                        ).status_code
                    )
                except requests.RequestException as e:
                    errors.append(type(e).__name__)

        clients = [threading.Thread(target=client) for _ in range(4)]
        for c in clients:
            c.start()
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while requests.get(ready_url, timeout=5).status_code == 200:
            assert time.monotonic() - signalled < 2, "still ready 2 s after SIGTERM"
            time.sleep(0.1)
        assert subprocess.run(health, env=env).returncode == 1  # the container turns unhealthy too
        assert subprocess.run(container_health, env=env).returncode == 1
        for c in clients:
            c.join()
        assert statuses and set(statuses) == {200} and not errors, (set(statuses), errors[:5])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    output.close()
    assert code == 0 and "drain: quiet after" in (tmp_path / "serve-run.log").read_text()
    assert not torchserve.is_running(tmp_path / "run")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.inference_url}/ping", timeout=5)
