"""The compose deployment, live (`make docker-test`): real images, real containers, real gateway.

The deployment is brought up by running the README's "Deploy with Docker" commands as written
(on free ports, in a project of its own, with 2-minute tokens); its last command, `down -v`,
ends the module and must leave nothing behind.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import requests

from models.registry import SPECS
from tests.conftest import example
from tsforge.deploy import containers
from tsforge.monitoring import rules, watch
from tsforge.monitoring.traffic import held_out_then_shifted
from tsforge.packaging import build, signing
from tsforge.paths import MODEL_STORE, ROOT
from tsforge.server.torchserve import free_port

pytestmark = pytest.mark.docker

# Short, so the expiry test sees keys renewed; but the README's commands (start, wait for healthy,
# read the key, curl, verify) must finish inside one lifetime from TorchServe's start: at 1 minute
# a slow CI machine's health-check ticks used it up and verify's key expired mid-replay.
TOKEN_MINUTES = 2
DRIFT_RULES = rules.Thresholds(window="30s", hold="0s", min_rows=50, min_requests=5)
STALLED = 50
GATEWAY_REQUEST_TIMEOUT_S = 10  # docker/gateway/haproxy.cfg: timeout http-request
# What the gateway holds whole before TorchServe sees a byte: one buffer (haproxy.cfg).
BODY_HELD_BYTES = int(re.search(r"tune\.bufsize (\d+)", (ROOT / "docker/gateway/haproxy.cfg").read_text())[1])
# The port the gateway sends requests to in each TorchServe container (its server-template line).
TORCHSERVE_PORT = int(re.search(r"\$\{TS_HOST\}:(\d+)", (ROOT / "docker/gateway/haproxy.cfg").read_text())[1])
MARK = "@@readme-command-done@@"


def readme_commands(heading: str = "## Deploy with Docker") -> list[str]:
    """The first ```bash block under `heading`, one command per line."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class Deployment:
    env: dict[str, str]
    started: float
    outputs: dict[str, str] = field(default_factory=dict)
    down_done: bool = False
    first_key: str = ""

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_PORT']}"

    def run(self, command: str, timeout: float = 900) -> str:
        result = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, (
            f"`{command}` failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )
        return result.stdout

    def compose(self, *args: str) -> str:
        return self.run(" ".join(["docker-compose -f docker/docker-compose.yml", *args]))

    def container(self, service: str = "torchserve") -> str:
        return self.compose("ps -q", service).strip()

    def key_entry(self) -> dict:
        raw = self.run(f"docker exec {self.container()} cat /home/model-server/run/key_file.json")
        return json.loads(raw)["inference"]

    def key(self) -> str:
        """The current inference key, waiting out the seconds between its expiry and the health
        check's renewal (keys live TOKEN_MINUTES here)."""
        deadline = time.monotonic() + 60
        while True:
            entry = self.key_entry()
            stamp = re.sub(r"(\.\d{6})\d+", r"\1", entry["expiration time"]).replace("Z", "+00:00")
            if (datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds() > 15 or time.monotonic() > deadline:
                return entry["key"]
            time.sleep(1)

    def predict(self, model: str, body: bytes, content_type: str, key: str | None = None) -> requests.Response:
        headers = {"Content-Type": content_type}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return requests.post(f"{self.gateway}/predictions/{model}", data=body, headers=headers, timeout=60)

    def inference_connections(self) -> int:
        """Open TCP connections to TorchServe's inference port in its container, read from the
        kernel's table: what an upload the gateway passes on would hold open there."""
        table = self.run(f"docker exec {self.container()} cat /proc/net/tcp /proc/net/tcp6")
        established = [line.split() for line in table.splitlines() if line.split()[3:4] == ["01"]]
        return sum(1 for fields in established if fields[1].endswith(f":{TORCHSERVE_PORT:04X}"))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    containers.ensure_engine()
    project = f"tsforge-test-{os.getpid()}"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "GATEWAY_PORT": str(free_port()),
        "MANAGEMENT_PORT": str(free_port()),
        "METRICS_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
        "TSFORGE_OVERRIDES": f"token_expiration_min={TOKEN_MINUTES}",
        # The shipped rules over a window short enough for a test (the README's 15 min otherwise).
        "PROMETHEUS_RULES": str(rules.write(tmp_path_factory.mktemp("rules") / "rules.yml", DRIFT_RULES)),
    }
    *up, down = readme_commands()
    assert "down -v" in down, "the README's Docker block must end with `down -v`"
    deployment = Deployment(env, started=time.monotonic())
    try:
        # One shell, as a user types them (KEY=... carries over); a marker after each command
        # splits the output per command.
        script = "set -e\n" + "".join(f"{cmd}\necho '{MARK}{i}'\n" for i, cmd in enumerate(up))
        output = deployment.run(script)
        deployment.started = time.monotonic()  # TorchServe started before this: a safe lower bound
        deployment.first_key = deployment.key_entry()["key"]
        for i, chunk in enumerate(output.split(MARK)[: len(up)]):
            deployment.outputs[up[i]] = chunk.split("\n", 1)[1] if i else chunk
        deployment.outputs["down"] = down
        yield deployment
    finally:
        if not deployment.down_done:
            subprocess.run(["bash", "-c", down], cwd=ROOT, env=env, capture_output=True)


def output_of(deployment: Deployment, needle: str) -> str:
    return next(out for cmd, out in deployment.outputs.items() if needle in cmd)


def test_readme_commands_answer_a_prediction_and_a_promql_query(deployment):
    answer = output_of(deployment, "/predictions/digits")
    assert json.loads(answer).get("label") == 7, answer
    assert "torchserve_1  |" in output_of(deployment, "logs")  # the container's output, bounded by the driver


def test_the_readme_replay_agrees_through_the_gateway_for_every_archive(deployment):
    """`tsforge verify` as the README runs it: every archive's held-out sample, sent through the
    gateway, answered as the gated export answered it at build time."""
    out = output_of(deployment, "tsforge verify")
    archives = sorted(MODEL_STORE.glob("*.mar"))
    assert out.count("agrees ") == len(archives) and "DISAGREES" not in out, out
    assert f"all {len(archives)} archives answer at {deployment.gateway}" in out


@pytest.mark.parametrize("archive", build.SERVED)
def test_every_model_answers_through_the_gateway(deployment, archive):
    assert (MODEL_STORE / f"{archive}.mar").exists(), "make docker-test builds every archive first"
    body, content_type = example(SPECS[build.MODEL_OF[archive]])
    r = deployment.predict(archive, body, content_type, deployment.key())
    assert r.status_code == 200, r.text
    spec, answer = SPECS[build.MODEL_OF[archive]], r.json()
    if spec.contract.kind == "text":
        vector = answer["embedding"]
        assert len(vector) == spec.contract.dims and abs(sum(v * v for v in vector) - 1) < 1e-3
    elif spec.classifier:
        assert str(answer["label"]) in spec.contract.labels and abs(sum(answer["probabilities"].values()) - 1) < 0.05
        if archive.startswith("digits"):
            assert answer["label"] == 7  # examples/mnist-7.png
    elif spec.contract.kind == "audio":  # examples/speech.wav: two sentences between silences
        assert len(answer["segments"]) == 2 and 0 < answer["speech_share"] < 1, answer
    elif spec.contract.kind == "recommendation":  # examples/movielens.json: ten unseen movies
        history = json.loads(body)["history"]
        assert len(answer) == 10 and all(a["title"] for a in answer), answer
        assert not {a["item"] for a in answer} & set(history)
    else:
        assert math.isfinite(answer["prediction"])


def test_tritonclient_with_its_defaults_through_the_gateway(deployment):
    """Health, metadata and binary infers, all answered by the replica's TorchServe (health and
    metadata by our frontend class) on the gateway's one address, with the key TorchServe checks."""
    import numpy as np
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=deployment.gateway.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {deployment.key()}"}
    assert client.is_server_live(headers=headers) and client.is_server_ready(headers=headers)
    for archive in build.SERVED:
        assert client.is_model_ready(archive, headers=headers), archive
    meta = client.get_model_metadata(build.served_name(SPECS["minilm"], "onnx"), headers=headers)
    assert meta["platform"] == "onnxruntime_onnx" and meta["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]}
    ]
    texts = triton.InferInput("text", [2], "BYTES")
    texts.set_data_from_numpy(np.array(["The cat sat on the mat.", "A feline rested on the rug."], dtype=object))
    vectors = client.infer(build.served_name(SPECS["minilm"], "onnx"), [texts], headers=headers).as_numpy("embedding")
    assert vectors.shape == (2, 384) and float(vectors[0] @ vectors[1]) > 0.4
    pixels = triton.InferInput("pixels", [1, 28, 28], "FP32")
    pixels.set_data_from_numpy(np.zeros((1, 28, 28), np.float32))
    assert client.infer("digits", [pixels], headers=headers).as_numpy("probabilities").shape == (1, 10)
    for wrong in ({}, {"Authorization": "Bearer not-the-key"}):
        r = requests.get(f"{deployment.gateway}/v2/models/digits", headers=wrong, timeout=10)
        assert r.status_code == 400 and "InvalidKeyException" in r.text, r.text  # as for infer


def test_no_token_or_a_wrong_one_is_refused(deployment):
    body, content_type = example(SPECS["digits"])
    for key in (None, "not-the-key"):
        r = deployment.predict("digits", body, content_type, key)
        assert r.status_code == 400 and "InvalidKeyException" in r.text, r.text  # TorchServe's own refusal


def test_the_gateway_refuses_what_torchserve_would_buffer_or_should_not_expose(deployment):
    key = deployment.key()
    big = deployment.predict("digits", b"\0" * (4 * 2**20 + 1), "image/png", key)
    assert big.status_code == 413 and big.json()["code"] == "body_too_large"
    chunked = requests.post(
        f"{deployment.gateway}/predictions/digits",
        data=iter([b"x"]),
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert chunked.status_code == 411 and chunked.json()["code"] == "length_required"
    management = requests.get(f"{deployment.gateway}/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert management.status_code == 404 and management.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "path, status",
    [
        ("/predictions/../models", 404),  # normalised to /models: not proxied
        ("/predictions/%2e%2e/models", 404),
        ("/v2/../models", 404),
        ("//models", 404),
        ("/predictions/x%2F..%2Fmodels", 400),
        ("/predictions/%zz", 400),
        ("//ping", 200),  # merged to /ping
    ],
)
def test_the_gateway_normalises_the_path_before_its_rules(deployment, path, status):
    """Sent byte for byte (http.client does not touch the path), as a hostile client would."""
    conn = http.client.HTTPConnection("127.0.0.1", int(deployment.env["GATEWAY_PORT"]), timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {deployment.key()}"})
    answer = conn.getresponse()
    assert answer.status == status, (path, answer.status, answer.read()[:200])
    conn.close()


def test_the_gateway_image_refuses_to_start_without_a_key_unless_told_torchserve_checks_tokens(deployment):
    """Fail closed: the image's default is to refuse, so a stack that forgets its secret never
    serves token-less replicas to anyone."""
    image = deployment.run(f"docker inspect -f '{{{{.Config.Image}}}}' {deployment.container('gateway')}").strip()
    keyless = containers.docker("run", "--rm", "-e", "TS_HOST=nowhere", image, check=False)
    assert keyless.returncode == 2 and "no key" in keyless.stderr, (keyless.returncode, keyless.stderr[-500:])


@pytest.mark.parametrize("how", ["unsigned", "one byte changed", "an untrusted key"])
def test_the_torchserve_image_refuses_a_store_that_does_not_verify(deployment, tmp_path, how):
    """The image's own entrypoint, on a store with one bad archive beside a good one: it exits
    before TorchServe starts, naming the archive and why, so the container never turns healthy."""
    from tests.test_signing import CASES, spoil

    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    for name in ("diabetes", "wine"):
        for path in (MODEL_STORE / f"{name}.mar", signing.signature_of(MODEL_STORE / f"{name}.mar")):
            shutil.copy(path, store / path.name)
            (store / path.name).chmod(0o644)
    spoil(store, how)
    image = deployment.run(f"docker inspect -f '{{{{.Config.Image}}}}' {deployment.container()}").strip()
    mounts = [
        "-v",
        f"{store}:/opt/tsforge/model_store:ro",
        "-v",
        f"{containers.TRUSTED_DIR}:/opt/tsforge/trusted:ro",
    ]
    done = containers.docker("run", "--rm", *mounts, image, check=False, timeout=120)
    assert done.returncode != 0, done.stdout[-1000:]
    assert "diabetes.mar: " in done.stderr and CASES[how] in done.stderr, done.stderr[-1000:]


def test_stalled_uploads_are_cut_by_the_gateway_and_cost_torchserve_nothing(deployment):
    before = deployment.inference_connections()
    port = int(deployment.env["GATEWAY_PORT"])
    head = (
        f"POST /predictions/digits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {deployment.key()}\r\n"
        "Content-Type: image/png\r\nContent-Length: 4000000\r\n\r\n"
    ).encode()
    socks = []
    for _ in range(STALLED):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(head + b"\x89PNG" + b"\0" * (BODY_HELD_BYTES // 2))  # then nothing more: a stalled upload
        socks.append(s)
    sent = time.monotonic()
    time.sleep(1)  # time for the gateway to pass them on, were it to
    # The gateway holds every stalled upload itself: TorchServe (which would keep each open and
    # buffer it whole) sees none of them. A few come and go: health checks, pooled connections.
    held_by_torchserve = deployment.inference_connections() - before
    assert held_by_torchserve < STALLED // 10, f"{held_by_torchserve} of {STALLED} stalled uploads reached TorchServe"
    closed_after = []
    for s in socks:
        s.settimeout(max(0.1, sent + GATEWAY_REQUEST_TIMEOUT_S + 10 - time.monotonic()))
        try:
            answer = s.recv(4096)
            while s.recv(4096):  # read to the gateway's close
                pass
        except TimeoutError:
            answer = b"(still open)"
        closed_after.append(time.monotonic() - sent)
        s.close()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert max(closed_after) < GATEWAY_REQUEST_TIMEOUT_S + 5, closed_after


def test_prometheus_has_scraped_the_inference_counter(deployment):
    url = f"http://127.0.0.1:{deployment.env['PROMETHEUS_PORT']}/api/v1/query"
    deadline = time.monotonic() + 60
    value = 0.0
    while time.monotonic() < deadline and value <= 0:
        result = requests.get(url, params={"query": "sum(ts_inference_requests_total)"}, timeout=10).json()
        value = float(result["data"]["result"][0]["value"][1]) if result["data"]["result"] else 0.0
        time.sleep(2)
    assert value > 0


def test_drift_alerts_through_the_gateway_silent_on_held_out_digits_firing_on_inverted_ones(deployment):
    prometheus = f"http://127.0.0.1:{deployment.env['PROMETHEUS_PORT']}"

    def drift_firing() -> set[tuple[str, str]]:
        found = watch.query(prometheus, 'ALERTS{alertstate="firing"}')
        return {
            (s["metric"]["alertname"], s["metric"].get("ModelName", ""))
            for s in found
            if s["metric"]["alertname"] in rules.DRIFT_ALERTS
        }

    took = held_out_then_shifted(
        lambda model: f"{deployment.gateway}/predictions/{model}",
        lambda: {"Authorization": f"Bearer {deployment.key()}"},
        drift_firing,
        ("digits",),
        settle_s=15,  # a flush (1 s), a scrape and an evaluation (5 s each)
    )
    print(f"compose: input drift fired for digits {took:.0f} s after the shift (window {DRIFT_RULES.window})")


def test_healthy_across_token_expiry(deployment):
    first = deployment.first_key  # read right after start, so two lifetimes pass below
    wait = deployment.started + 2 * 60 * TOKEN_MINUTES + 5 - time.monotonic()
    time.sleep(max(0.0, wait))
    assert containers.health(deployment.container()) == "healthy"
    key = deployment.key()
    assert key != first, "the inference key was never renewed"
    body, content_type = example(SPECS["digits"])
    assert deployment.predict("digits", body, content_type, key).status_code == 200


def test_a_crashed_torchserve_is_restarted_and_answers_again(deployment):
    """SIGKILL of the container's main process: a crash, so the restart policy applies. (`docker
    kill` is a deliberate stop to Docker: restart policies never undo it.)"""
    container = deployment.container()
    pid = int(containers.docker("inspect", "-f", "{{.State.Pid}}", container).stdout)
    os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and containers.docker("inspect", "-f", "{{.RestartCount}}", container).stdout.strip() == "0"
    ):
        time.sleep(0.5)
    assert containers.docker("inspect", "-f", "{{.RestartCount}}", container).stdout.strip() == "1"
    deployment.run(".venv/bin/tsforge docker wait --timeout 240")
    body, content_type = example(SPECS["digits"])
    r = deployment.predict("digits", body, content_type, deployment.key())
    assert r.status_code == 200, r.text


def test_down_leaves_no_container_network_or_volume(deployment):
    deployment.run(deployment.outputs["down"])
    deployment.down_done = True
    label = f"label=com.docker.compose.project={deployment.env['COMPOSE_PROJECT_NAME']}"
    for kind in ("container ls -a", "network ls", "volume ls"):
        left = containers.docker(*kind.split(), "-q", "--filter", label).stdout.split()
        assert not left, f"{kind} still lists {left}"
