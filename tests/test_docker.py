"""The docker/ deployment, checked without a Docker engine: lint, compose validity, references."""

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tsforge.paths import ROOT
from tsforge.server.health import READY_PORT
from tsforge.server.torchserve import read_properties

DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "docker-compose.yml"
STACK = DOCKER / "stack.yml"


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def config_port(key: str) -> int:
    return int(read_properties(ROOT / "config.properties")[key].rsplit(":", 1)[1])


DOCKERFILES = [DOCKERFILE, *sorted(DOCKER.glob("*/Dockerfile")), *sorted(DOCKER.glob("*/*.Dockerfile"))]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(DOCKER)))
def test_hadolint_passes(dockerfile):
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_dockerfile_fetches_a_frontend_from_a_registry():
    for dockerfile in DOCKERFILES:
        assert not re.search(r"(?m)^# syntax=", dockerfile.read_text()), dockerfile


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.gpu.yml"]])
def test_docker_compose_accepts_the_files(files):
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: scripts/bootstrap.sh installs it (apt-get install docker-compose)"
    args = [a for f in files for a in ("-f", str(DOCKER / f))]
    result = subprocess.run([compose, *args, "config"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {"torchserve", "gateway", "prometheus"} <= set(yaml.safe_load(result.stdout)["services"])


def test_every_file_the_dockerfile_copies_exists_and_passes_dockerignore():
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += [s for s in line.split()[1:-1] if not s.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        # The last matching pattern decides; "!" re-includes; a folder's pattern covers its files.
        included = True
        for pattern in ignore:
            negate, bare = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(src.rstrip("/"), bare) or src.startswith(f"{bare}/"):
                included = negate
        assert included, f"{src} is excluded by .dockerignore"


def test_every_path_the_compose_file_mounts_or_builds_from_exists():
    for name, service in compose_services().items():
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
            assert dockerfile.exists(), name
            if "target" in service["build"]:
                assert f"AS {service['build']['target']}" in dockerfile.read_text(), name
        for volume in service.get("volumes", []):
            # "${VAR:-default}:target": the default is what a plain `up` mounts.
            default = re.match(r"\$\{\w+:-([^}]*)\}:", volume)
            source = default.group(1) if default else volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source}"


def published(service: dict) -> dict[int, str]:
    """{container port: host address} of a service's "HOST:${VAR:-port}:PORT" entries."""
    return {int(p.rsplit(":", 1)[1]): p.split(":")[0] for p in map(str, service.get("ports", []))}


def test_only_the_gateway_publishes_inference_and_everything_binds_loopback():
    services = compose_services()
    exposed = {int(p) for p in re.search(r"(?m)^EXPOSE (.+)$", DOCKERFILE.read_text()).group(1).split()}
    ports = {config_port(k) for k in ("inference_address", "management_address", "metrics_address")}
    assert exposed == ports | {READY_PORT}  # and the readiness port the Swarm gateway checks
    assert f"check port {READY_PORT}" in (DOCKER / "gateway/haproxy.cfg").read_text()
    for name, service in services.items():
        assert set(published(service).values()) <= {"127.0.0.1"}, name
    assert set(published(services["torchserve"])) == {config_port("management_address"), config_port("metrics_address")}
    assert set(published(services["gateway"])) == {8080}
    assert f'"${{TS_HOST}}:{config_port("inference_address")}"' in (DOCKER / "gateway/haproxy.cfg").read_text()


def test_prometheus_finds_torchserve_by_its_service_name_on_the_metrics_port():
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    (sd,) = scrape["scrape_configs"][0]["dns_sd_configs"]
    assert sd["port"] == config_port("metrics_address")
    assert sd["names"] == ["torchserve"] and "torchserve" in compose_services()


def test_every_service_has_bounded_logs_and_a_restart_policy():
    for name, service in compose_services().items():
        assert service["logging"]["options"]["max-size"], name
        assert service["restart"] == "always", name


def test_overrides_set_config_keys_without_a_second_file(tmp_path, monkeypatch):
    from tsforge.server.torchserve import OVERRIDES_ENV, ServeError, render_config

    monkeypatch.setenv(OVERRIDES_ENV, "token_expiration_min=1; disable_token_authorization=true ;job_queue_size=50")
    rendered = read_properties(render_config(ROOT / "config.properties", tmp_path, tmp_path))
    assert rendered["token_expiration_min"] == "1"
    assert rendered["disable_token_authorization"] == "true"
    assert rendered["job_queue_size"] == "50"  # a key the file does not have is added
    monkeypatch.setenv(OVERRIDES_ENV, "token_expiration_min")
    with pytest.raises(ServeError, match="not key=value"):
        render_config(ROOT / "config.properties", tmp_path, tmp_path)


def test_the_container_binds_inside_while_the_committed_config_stays_on_loopback(tmp_path):
    from tsforge.server.torchserve import render_config

    committed = read_properties(ROOT / "config.properties")
    assert all("127.0.0.1" in committed[k] for k in committed if k.endswith("_address"))
    rendered = read_properties(render_config(ROOT / "config.properties", tmp_path, tmp_path, host="0.0.0.0"))
    bound = {k for k in rendered if k.endswith("_address") and "0.0.0.0" in rendered[k]}
    assert bound == {"inference_address", "metrics_address"}  # management and gRPC stay on loopback
    published = render_config(ROOT / "config.properties", tmp_path, tmp_path, host="0.0.0.0", management_host="0.0.0.0")
    assert read_properties(published)["management_address"] == "http://0.0.0.0:8081"
    assert "TSFORGE_BIND_HOST=0.0.0.0" in DOCKERFILE.read_text()
    assert "TSFORGE_MANAGEMENT_HOST" not in STACK.read_text()  # Swarm replicas: management on loopback
    assert 'TSFORGE_MANAGEMENT_HOST: "0.0.0.0"' in COMPOSE.read_text()
