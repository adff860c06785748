"""What the Docker image runs, run here: `tsforge serve run` bound to 0.0.0.0, its health check
with the inference key, and a clean stop on SIGTERM (what `docker stop` sends)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tsforge import serve
from tsforge.paths import CONFIG

pytestmark = pytest.mark.integration


def test_serve_run_is_healthy_on_all_interfaces_and_stops_on_sigterm(built, tmp_path):
    ports = {key: serve.free_port() for key in serve.PORT_KEYS}
    config = serve.render_config(CONFIG, tmp_path / "cfg", built.store, ports)
    env = {
        **os.environ,
        "TSFORGE_CONFIG": str(config),
        "TSFORGE_MODEL_STORE": str(built.store),
        "TSFORGE_RUN_DIR": str(tmp_path / "run"),
        "TSFORGE_BIND_HOST": "0.0.0.0",
    }
    tsforge = str(Path(sys.executable).with_name("tsforge"))
    health = [tsforge, "serve", "health"]
    assert subprocess.run(health, env=env).returncode == 1  # nothing is running yet
    proc = subprocess.Popen(
        [tsforge, "serve", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 180
        while subprocess.run(health, env=env).returncode != 0:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "not healthy after 180 s"
            time.sleep(1)
        rendered = serve.read_properties(tmp_path / "run" / "config.properties")
        assert rendered["inference_address"] == f"http://0.0.0.0:{ports['inference_address']}"
        server = serve.server_for(tmp_path / "run")
        r = requests.post(
            f"{server.inference_url}/predictions/diabetes",
            json={"features": [50, 1, 25, 90, 180, 100, 50, 4, 4.5, 90]},
            headers=server.headers(),
            timeout=30,
        )
        assert r.status_code == 200 and "prediction" in r.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0
    assert not serve.is_running(tmp_path / "run")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.inference_url}/ping", timeout=5)
