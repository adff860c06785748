"""The docker/ deployment, checked without a Docker engine: lint, compose validity, references."""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tsforge.paths import ROOT
from tsforge.serve import read_properties

DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "docker-compose.yml"


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def config_port(key: str) -> int:
    return int(read_properties(ROOT / "config.properties")[key].rsplit(":", 1)[1])


def test_hadolint_passes_on_the_dockerfile():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_docker_compose_accepts_the_file(profile):
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: scripts/bootstrap.sh installs it (apt-get install docker-compose)"
    env = {**os.environ, "COMPOSE_PROFILES": profile}
    result = subprocess.run([compose, "-f", str(COMPOSE), "config"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "torchserve:" in result.stdout and "torchserve-gpu:" in result.stdout


def test_every_file_the_dockerfile_copies_exists_and_passes_dockerignore():
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += [s for s in line.split()[1:-1] if not s.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        # The last matching pattern decides; "!" re-includes.
        included = True
        for pattern in ignore:
            negate = pattern.startswith("!")
            if fnmatch.fnmatch(src.rstrip("/"), pattern.lstrip("!").rstrip("/")):
                included = negate
        assert included, f"{src} is excluded by .dockerignore"


def test_every_path_the_compose_file_mounts_or_builds_from_exists():
    for name, service in compose_services().items():
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE, name
            assert f"AS {service['build']['target']}" in DOCKERFILE.read_text(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source}"


def test_published_ports_match_the_configuration_and_bind_loopback_only():
    expected = {config_port(k) for k in ("inference_address", "management_address", "metrics_address")}
    exposed = {int(p) for p in re.search(r"(?m)^EXPOSE (.+)$", DOCKERFILE.read_text()).group(1).split()}
    assert exposed == expected
    for name, service in compose_services().items():
        ports = [str(p) for p in service.get("ports", [])]
        assert all(p.startswith("127.0.0.1:") for p in ports), name
        if name.startswith("torchserve"):
            assert {int(p.split(":")[2]) for p in ports} == expected
            assert {int(p.split(":")[1]) for p in ports} == expected


def test_prometheus_scrapes_the_metrics_port():
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    (target,) = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert int(port) == config_port("metrics_address")
    for name, service in compose_services().items():
        if name.startswith("torchserve"):
            assert host in service["networks"]["default"]["aliases"]


def test_the_container_binds_inside_while_the_committed_config_stays_on_loopback(tmp_path):
    from tsforge.serve import render_config

    committed = read_properties(ROOT / "config.properties")
    assert all("127.0.0.1" in committed[k] for k in committed if k.endswith("_address"))
    rendered = read_properties(render_config(ROOT / "config.properties", tmp_path, tmp_path, host="0.0.0.0"))
    assert all(rendered[k].replace("http://", "").startswith("0.0.0.0") for k in rendered if k.endswith("_address"))
    assert "TSFORGE_BIND_HOST=0.0.0.0" in DOCKERFILE.read_text()
