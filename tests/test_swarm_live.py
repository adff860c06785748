"""Scale-out on Docker Swarm, live (`make swarm-test`): replicas behind the gateway, under load.

A real swarm (initialised here and left again if it was not there), the stack of
docker/stack.yml with digits in two versions baked into two images, and hey's load over
loopback. The figures (p50/p99 during each event) are printed: `make swarm-test` shows them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from models.registry import SPECS
from tests.conftest import example
from tsforge.deploy import containers
from tsforge.deploy.containers import DOCKER_DIR, docker
from tsforge.deploy.swarm import deployed_stack
from tsforge.monitoring import rules
from tsforge.monitoring.traffic import held_out_then_shifted
from tsforge.packaging import build
from tsforge.server.torchserve import free_port

TSFORGE = str(Path(sys.executable).with_name("tsforge"))

pytestmark = pytest.mark.docker

STACK = f"tsforge-swarm-test-{os.getpid()}"
SERVICE = f"{STACK}_torchserve"
LOAD_S = 40
HANG_S = 30
GATEWAY_SERVER_TIMEOUT_S = 5  # docker/gateway/haproxy.cfg: timeout server
CONCURRENCY = 4
DRIFT_RULES = rules.Thresholds(window="30s", hold="0s", min_rows=50, min_requests=5)


def archives(root: Path, version: str) -> Path:
    """A model store holding digits at `version` (the gated export, archived again)."""
    spec = SPECS["digits"]
    shipped = spec.formats[0]  # served as plain `digits`
    build.build(spec, runtime=shipped)
    out = build.artifacts_dir(spec)
    store = root / version
    build.archive_export(spec, out, shipped, build.load_gates(out, shipped), store, version)
    return store


def tasks_running() -> list[str]:
    out = docker("service", "ps", SERVICE, "--filter", "desired-state=running", "--format", "{{.ID}} {{.CurrentState}}")
    return [line.split()[0] for line in out.stdout.splitlines() if " Running " in f" {line.split(' ', 1)[1]} "]


def wait_for(what: str, ok, timeout: float = 240) -> None:
    containers.wait_until(what, ok, timeout)


class Stack:
    def __init__(self, env: dict[str, str], key: str, stores: dict[str, Path]) -> None:
        self.env, self.key = env, key
        self.gateway = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        self.url = f"{self.gateway}/predictions/digits"
        self.body, self.content_type = example(SPECS["digits"])
        self.stores = stores  # models image -> the store baked into it

    def verify(self, image: str) -> subprocess.CompletedProcess:
        """`tsforge verify` through the gateway with the samples of the store baked into `image`."""
        store = self.stores[image.split("@")[0]]  # Swarm may pin the tag to a digest
        args = ["verify", self.gateway, "--store", str(store), "--inference-key", self.key]
        return subprocess.run([TSFORGE, *args], capture_output=True, text=True, timeout=300)

    def predict(self, key: str | None = None) -> requests.Response:
        headers = {"Content-Type": self.content_type, "Authorization": f"Bearer {self.key if key is None else key}"}
        return requests.post(self.url, data=self.body, headers=headers, timeout=30)

    def answers(self) -> bool:
        try:
            return self.predict().status_code == 200
        except requests.RequestException:
            return False

    def steady(self, seconds: int = 5) -> bool:
        for _ in range(seconds):
            if not (self.answers() and self.protocol_ready()):
                return False
            time.sleep(1)
        return True

    def protocol_ready(self) -> bool:
        try:
            r = requests.get(
                self.url.replace("/predictions/digits", "/v2/health/ready"), headers=self.headers, timeout=5
            )
        except requests.RequestException:
            return False
        return r.status_code == 200

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def load(self, seconds: int) -> subprocess.Popen:
        """hey in the background: `seconds` of steady load on loopback."""
        path = DOCKER_DIR.parent / "examples" / SPECS["digits"].example
        cmd = ["hey", "-z", f"{seconds}s", "-c", str(CONCURRENCY), "-m", "POST", "-T", self.content_type]
        cmd += ["-H", f"Authorization: Bearer {self.key}", "-D", str(path), self.url]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def promql(self, query: str) -> str:
        (prometheus,) = docker(
            "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_prometheus"
        ).stdout.split()
        return docker("exec", prometheus, "promtool", "query", "instant", "http://localhost:9090", query).stdout


def summary(hey_output: str) -> dict[str, float]:
    """Requests, non-200 answers, transport errors, p50/p99 (ms) and the slowest (s) from hey's report."""
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", hey_output))
    errors = re.search(r"Error distribution:\n((?:\s+\[\d+\].*\n?)+)", hey_output)
    pct = dict(re.findall(r"\s(\d\d)% in ([\d.]+) secs", hey_output))
    return {
        "requests": sum(int(n) for n in codes.values()),
        "non_200": sum(int(n) for c, n in codes.items() if c != "200"),
        "errors": sum(int(n) for n in re.findall(r"\[(\d+)\]", errors.group(1))) if errors else 0,
        "p50_ms": float(pct["50"]) * 1000,
        "p99_ms": float(pct["99"]) * 1000,
        "slowest_s": float(re.search(r"Slowest:\s+([\d.]+) secs", hey_output).group(1)),
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    containers.ensure_engine()
    key = os.urandom(32).hex()
    images, _ = containers.build_all()
    root = tmp_path_factory.mktemp("stores")
    stores = {version: archives(root, version) for version in ("1.0", "2.0")}
    v1 = containers.models_image("swarm-test-1.0", stores["1.0"])
    v2 = containers.models_image("swarm-test-2.0", stores["2.0"])
    env = {**os.environ, **images.env(), "MODELS_IMAGE": v1, "REPLICAS": "2", "GATEWAY_PORT": str(free_port())}
    # The shipped rules over a window short enough for a test.
    env["PROMETHEUS_RULES"] = str(rules.write(tmp_path_factory.mktemp("rules") / "rules.yml", DRIFT_RULES))
    with deployed_stack(STACK, env, key) as env:
        deployed = Stack(env, key, {v1: stores["1.0"], v2: stores["2.0"]})
        wait_for("two healthy replicas", lambda: len(tasks_running()) == 2)
        wait_for("an answer through the gateway", deployed.answers)
        # The protocol's ready route too, as a Triton client polls it before it starts; then
        # five steady seconds: right after a deploy the gateway's DNS discovery of the replicas
        # settles, and a request in that moment was once answered 503 no_replica (1 run in 3).
        wait_for("5 s of steady answers and GET /v2/health/ready", deployed.steady)
        deployed.v1, deployed.v2 = v1, v2
        yield deployed


def test_the_replay_agrees_through_the_swarm_gateway(stack):
    done = stack.verify(stack.v1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agrees    digits.mar (digits 1.0)" in done.stdout


def test_a_request_without_the_gateway_key_is_refused(stack):
    for key in ("", "0" * 64, stack.key[:-1]):
        r = stack.predict(key)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    r = requests.get(
        stack.url.replace("/predictions/digits", "/models"), headers={"Authorization": f"Bearer {stack.key}"}
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found", (
        "management must not be reachable through the gateway"
    )


def gateway_log() -> str:
    (gateway,) = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_gateway").stdout.split()
    out = docker("logs", "--tail", "40", gateway, check=False)
    return (out.stdout + out.stderr)[-4000:]


def test_tritonclient_with_its_defaults_through_the_swarm_gateway(stack):
    """Health, metadata and a binary infer, all from the replicas' TorchServe, on one address."""
    import numpy as np
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=stack.url.removeprefix("http://").split("/")[0])
    headers = {"Authorization": f"Bearer {stack.key}"}
    base = stack.url.split("/predictions")[0]
    for route in ("/v2/health/live", "/v2/health/ready"):
        r = requests.get(f"{base}{route}", headers=headers, timeout=10)
        assert r.status_code == 200, (route, r.status_code, r.text[:300])
    assert client.is_server_live(headers=headers) and client.is_server_ready(headers=headers)
    assert client.is_model_ready("digits", headers=headers)
    meta = client.get_model_metadata("digits", headers=headers)
    assert meta["versions"] == ["1.0"] and meta["inputs"] == [
        {"name": "pixels", "datatype": "FP32", "shape": [-1, 28, 28]}
    ]
    pixels = triton.InferInput("pixels", [2, 28, 28], "FP32")
    pixels.set_data_from_numpy(np.zeros((2, 28, 28), np.float32))
    try:
        answer = client.infer("digits", [pixels], headers=headers)
    except triton.InferenceServerException as e:
        raise AssertionError(f"{e}\ngateway log:\n{gateway_log()}") from e
    assert answer.as_numpy("label").shape == (2,)
    assert not client.is_server_ready()  # no gateway key: 401 before any replica is asked


def test_drift_is_summed_over_replicas_silent_on_held_out_digits_firing_on_inverted_ones(stack):
    def count(query: str) -> int:
        found = re.search(r"=> ([\d.]+)", stack.promql(f"count({query})"))
        return int(float(found.group(1))) if found else 0

    def drift_firing() -> set[tuple[str, str]]:
        return {
            (alert, "digits")
            for alert in rules.DRIFT_ALERTS
            if count(f'ALERTS{{alertname="{alert}", alertstate="firing", ModelName="digits"}}')
        }

    took = held_out_then_shifted(
        lambda model: stack.url.replace("/predictions/digits", f"/predictions/{model}"),
        stack.headers,
        drift_firing,
        ("digits",),
        settle_s=15,
    )
    print(f"swarm: input drift fired for digits {took:.0f} s after the shift (window {DRIFT_RULES.window})")
    # Both replicas counted rows, and the score is one series for the model: their sum.
    assert count('sum by (Hostname) (increase(MonitorRows{ModelName="digits"}[1m])) > 0') == 2
    assert count('tsforge:psi{ModelName="digits", Signal="mean_intensity"}') == 1


def test_a_replica_exposes_inference_and_metrics_but_not_management_to_the_backend(stack):
    """From one replica to another over the backend network: management is on each replica's
    own loopback (no tokens there), inference and metrics answer."""
    ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={SERVICE}").stdout.split()
    peer_ip = docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", ids[1]
    ).stdout.split()[0]
    probe = (
        "import sys, urllib.request\n"
        "for port, path in ((8080, '/ping'), (8082, '/metrics'), (8081, '/models')):\n"
        "    try:\n"
        f"        code = urllib.request.urlopen('http://{peer_ip}:%d%s' % (port, path), timeout=5).status\n"
        "    except OSError as e:\n"
        "        code = type(e).__name__\n"
        "    print(port, code)\n"
    )
    out = docker("exec", ids[0], "python3", "-c", probe).stdout.split("\n")
    codes = dict(line.split() for line in out if line.strip())
    assert codes["8080"] == "200" and codes["8082"] == "200", codes
    assert codes["8081"] in ("URLError", "ConnectionRefusedError"), codes  # nothing listens there
    inside = docker("exec", ids[0], "tsforge", "models", "list", check=False)
    assert inside.returncode == 0 and "digits" in inside.stdout, inside.stderr[-500:]


def test_stopping_a_replica_under_load_drains_it_and_loses_no_request(stack):
    """docker stop (SIGTERM, then 30 s): the replica turns unready for the gateway, finishes
    what it holds, then stops; a planned stop, like a scale-down or a rolling update's."""
    before = set(tasks_running())
    load = stack.load(LOAD_S)
    time.sleep(LOAD_S / 4)
    (victim, *_) = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={SERVICE}").stdout.split()
    docker("stop", victim, timeout=90)
    out, _ = load.communicate(timeout=LOAD_S + 60)
    figures = summary(out)
    print(f"planned stop (docker stop of one of 2 replicas, c={CONCURRENCY}, {LOAD_S} s): {figures}")
    assert figures["requests"] > 0 and figures["non_200"] == 0 and figures["errors"] == 0, out
    logs = docker("logs", victim)
    assert "drain: quiet after" in logs.stdout + logs.stderr, (logs.stdout + logs.stderr)[-2000:]
    wait_for(
        "Swarm to replace the stopped replica", lambda: len(tasks_running()) == 2 and set(tasks_running()) != before
    )


def test_a_hung_replica_under_load_loses_no_request_and_holds_none_for_long(stack):
    """Every process of one replica stopped for 30 s (docker pause: the cgroup freezer). The
    gateway's check fails within ~3 s; a request it had already sent there gets no answer and is
    retried on the other replica after `timeout server` (5 s), so none fails or waits longer."""
    load = stack.load(LOAD_S)
    time.sleep(LOAD_S / 4)
    (victim, *_) = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={SERVICE}").stdout.split()
    docker("pause", victim)
    try:
        time.sleep(HANG_S)
    finally:  # Swarm may have replaced the frozen task by now (its health check failed)
        docker("unpause", victim, check=False)
    out, _ = load.communicate(timeout=LOAD_S + 60)
    figures = summary(out)
    print(f"hung replica (docker pause of one of 2 for {HANG_S} s, c={CONCURRENCY}, {LOAD_S} s): {figures}")
    assert figures["requests"] > 0 and figures["non_200"] == 0 and figures["errors"] == 0, out
    assert figures["slowest_s"] < GATEWAY_SERVER_TIMEOUT_S + 2, figures


def test_killing_a_replica_under_load_loses_no_request(stack):
    before = set(tasks_running())
    load = stack.load(LOAD_S)
    time.sleep(LOAD_S / 4)
    (victim, *_) = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={SERVICE}").stdout.split()
    docker("kill", "--signal", "KILL", victim)
    out, _ = load.communicate(timeout=LOAD_S + 60)
    figures = summary(out)
    print(f"failover (SIGKILL of one of 2 replicas, c={CONCURRENCY}, {LOAD_S} s): {figures}")
    assert figures["requests"] > 0 and figures["non_200"] == 0 and figures["errors"] == 0, out
    wait_for(
        "Swarm to replace the killed replica", lambda: len(tasks_running()) == 2 and set(tasks_running()) != before
    )


def test_a_rolling_update_loses_no_request_and_ends_on_the_new_version(stack):
    versions: list[tuple[float, str]] = []
    probe_errors: list[str] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            try:
                r = stack.predict()
            except requests.RequestException as e:  # collected and asserted: never a silent death
                probe_errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                continue
            versions.append((time.monotonic(), r.headers.get("x-model-version", f"status {r.status_code}")))

    load = stack.load(LOAD_S + 20)
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        docker("service", "update", "--quiet", "--image", stack.v2, SERVICE, timeout=300)
        converged = time.monotonic()
        time.sleep(5)
    finally:
        stop.set()
        prober.join()
    out, _ = load.communicate(timeout=LOAD_S + 120)
    figures = summary(out)
    print(f"rolling update 1.0 -> 2.0 (start-first, 2 replicas, c={CONCURRENCY}): {figures}")
    assert figures["requests"] > 0 and figures["non_200"] == 0 and figures["errors"] == 0, out
    assert not probe_errors, probe_errors[:5]
    after = {v for t, v in versions if t > converged}
    assert after == {"2.0"}, f"answers after the update came from {after}"
    assert {v for _, v in versions} <= {"1.0", "2.0"}, "a probe request failed during the update"
    spec = docker(
        "service", "inspect", "-f", "{{.Spec.UpdateConfig.Order}} {{.Spec.UpdateConfig.FailureAction}}", SERVICE
    )
    assert spec.stdout.split() == ["start-first", "rollback"]
    # The replay after the update: 2.0's sample agrees; 1.0's no longer finds its version.
    now = stack.verify(stack.v2)
    assert now.returncode == 0, now.stdout + now.stderr
    old = stack.verify(stack.v1)
    assert old.returncode == 1 and "DISAGREES digits.mar (digits 1.0)" in old.stdout, old.stdout + old.stderr


def test_an_update_to_an_image_with_a_tampered_archive_rolls_back(stack, tmp_path):
    """One byte of the baked digits archive changed: the new replica's entrypoint refuses to
    start TorchServe, the update fails, Swarm rolls back to the running image, and the service
    answers (the load's figures during the attempt are printed)."""
    from tests.test_signing import spoil

    store = archives(tmp_path, "3.0")
    spoil(store, "one byte changed", "digits")
    bad = containers.models_image("swarm-test-tampered", store)
    before = docker("service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", SERVICE).stdout.strip()
    load = stack.load(LOAD_S)
    docker("service", "update", "--quiet", "--image", bad, SERVICE, check=False, timeout=300)
    wait_for(
        "the update to roll back",
        lambda: (
            docker("service", "inspect", "-f", "{{.UpdateStatus.State}}", SERVICE).stdout.strip()
            == "rollback_completed"
        ),
        240,
    )
    out_, _ = load.communicate(timeout=LOAD_S + 120)
    figures = summary(out_)
    print(f"update to a tampered image, rolled back (c={CONCURRENCY}): {figures}")
    after = docker("service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", SERVICE).stdout.strip()
    assert after == before and "tampered" not in after
    assert figures["requests"] > 0 and stack.answers(), out_
    # What runs after the rollback is still what was gated: the image's own samples agree.
    replayed = stack.verify(before)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def test_scaling_to_three_puts_the_new_replica_to_work(stack):
    docker("service", "scale", "--detach=false", f"{SERVICE}=3", timeout=300)
    wait_for("three running replicas", lambda: len(tasks_running()) == 3)
    # The gateway finds the new replica by DNS; Prometheus scrapes it too (count per instance).
    wait_for("every replica to serve", lambda: stack.answers() and _serving(stack) == 3, 120)


def _serving(stack: Stack) -> int:
    """How many replicas Prometheus saw answer digits requests (after a burst of them)."""
    for _ in range(12):
        stack.predict()
    time.sleep(6)  # one scrape interval
    out = stack.promql('count(sum by (instance) (ts_inference_requests_total{model_name="digits"}) > 0)')
    found = re.search(r"=> (\d+)", out)
    return int(found.group(1)) if found else 0
