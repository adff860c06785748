"""Docker without a registry: the engine, local base images, a host wheelhouse, builds, health.

Where Docker Hub is reachable, users build on the upstream bases (python:3.11-slim-bookworm,
debian:bookworm-slim, prom/prometheus). Where it is not (air-gapped sites, these build
machines), `--bases local` makes the same images from Debian's own archive: debootstrap a
bookworm root, import it, and install Python, HAProxy or Prometheus from Debian's packages.
Every local image is tagged by a hash of what it is built from, so a rerun rebuilds nothing.
Python packages come from a wheelhouse built on the host from the pinned requirements and are
installed with `pip --no-index`: the build never reaches the package index.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.files import write_text
from tsforge.packaging import signing
from tsforge.paths import ROOT

DOCKER_DIR = ROOT / "docker"
WHEELHOUSE = DOCKER_DIR / "wheelhouse"
ENV_FILE = DOCKER_DIR / ".env"  # read by docker-compose from the compose file's folder
TRUSTED_DIR = DOCKER_DIR / "trusted"  # the public signing key compose mounts (git-ignored)
SUITE = "bookworm"
GATEWAY_CHECK_S = 2.0
DAEMON_FLAGS = ("--userland-proxy=false",)
UPSTREAM = {
    "python": "python:3.11-slim-bookworm",
    "debian": "debian:bookworm-slim",
    "prometheus": "prom/prometheus:v2.55.1",
}


class DockerError(RuntimeError):
    pass


@dataclass(frozen=True)
class Images:
    torchserve: str
    gateway: str
    prometheus: str

    def env(self) -> dict[str, str]:
        """The compose/stack variables that pick these images."""
        return {"TSFORGE_IMAGE": self.torchserve, "GATEWAY_IMAGE": self.gateway, "PROMETHEUS_IMAGE": self.prometheus}


def docker_bin() -> str:
    """Debian's client (docker.io, 20.10): it builds with the daemon's BuildKit, where the
    client first on PATH may lack the buildx plugin."""
    for candidate in (os.environ.get("TSFORGE_DOCKER"), "/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise DockerError("no docker client: install Debian's docker.io (apt-get install docker.io docker-compose)")


def docker(*args: str, check: bool = True, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_BUILDKIT": "1", **kw.pop("env", {})}
    result = subprocess.run([docker_bin(), *args], capture_output=capture, text=True, env=env, **kw)
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])} failed:\n{(result.stderr or result.stdout or '')[-3000:]}")
    return result


def engine_up() -> bool:
    return subprocess.run([docker_bin(), "info"], capture_output=True).returncode == 0


def ensure_engine(timeout: float = 60.0) -> None:
    """Start dockerd in the background (as root) when no engine answers, and wait for it."""
    if engine_up():
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if os.geteuid() != 0 or not Path(dockerd).exists():
        raise DockerError("no Docker engine answers: start one (as root: `dockerd &`, or `systemctl start docker`)")
    log = open("/var/log/tsforge-dockerd.log", "ab")  # noqa: SIM115 (outlives this call, with dockerd)
    # Published ports by iptables, not by docker-proxy, a process that copies every byte of
    # every connection: measured 0.11-0.14 ms of CPU per request through the gateway here.
    subprocess.Popen([dockerd, *DAEMON_FLAGS], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until("dockerd to answer (see /var/log/tsforge-dockerd.log)", engine_up, timeout)


def wait_until(what: str, ok: Callable[[], bool], timeout: float = 300.0) -> None:
    """Poll `ok` every second; DockerError naming `what` when it is still false at `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(1)
    raise DockerError(f"waited {timeout:.0f} s for {what}")


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def debian_mirror() -> str:
    """The machine's configured Debian mirror (the one apt uses), for debootstrap."""
    texts = [p.read_text() for p in Path("/etc/apt").glob("sources.list.d/*.sources")]
    for text in texts:
        for stanza in text.split("\n\n"):
            if re.search(rf"(?m)^Suites:.*\b{SUITE}\b", stanza) and "security" not in stanza:
                if found := re.search(r"(?m)^URIs:\s*(\S+)", stanza):
                    return found.group(1)
    sources = Path("/etc/apt/sources.list")
    if sources.exists() and (found := re.search(rf"(?m)^deb\s+(\S+)\s+{SUITE}\s", sources.read_text())):
        return found.group(1)
    return "http://deb.debian.org/debian"


def content_tag(name: str, *parts: str | bytes | Path) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else part
        digest.update(data if isinstance(data, bytes) else data.encode())
    return f"tsforge/{name}:{digest.hexdigest()[:12]}"


def ensure_apt(package: str, command: str) -> None:
    if shutil.which(command) or Path(f"/usr/sbin/{command}").exists():
        return
    if os.geteuid() != 0:
        raise DockerError(f"{command} is missing: apt-get install {package}")
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, capture_output=True)


def root_image(say=print) -> str:
    """A minimal Debian bookworm image from debootstrap (debian:bookworm-slim's stand-in)."""
    mirror = debian_mirror()
    tag = content_tag("bookworm", SUITE, "minbase", mirror, "policy-rc.d 101")
    if image_exists(tag):
        return tag
    ensure_apt("debootstrap", "debootstrap")
    say(f"debootstrap {SUITE} from {mirror} (about a minute) -> {tag}")
    with tempfile.TemporaryDirectory(prefix="tsforge-rootfs-") as tmp:
        rootfs = Path(tmp) / "root"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise DockerError(f"debootstrap failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        # As in Debian's own images: packages installed later do not try to start services.
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        docker("import", "-", tag, stdin=tar.stdout)
        tar.wait()
    return tag


def build(
    dockerfile: Path, tag: str, context: Path, args: dict[str, str] | None = None, target: str | None = None
) -> float:
    """`docker build` with BuildKit; returns the seconds it took. The log goes to a file and
    its tail into the error when the build fails."""
    cmd = ["build", "-f", str(dockerfile), "-t", tag, "--progress=plain"]
    for key, value in (args or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    if target:
        cmd += ["--target", target]
    started = time.monotonic()
    log = Path(tempfile.gettempdir()) / f"tsforge-build-{tag.replace('/', '_').replace(':', '_')}.log"
    with open(log, "w") as out:
        result = subprocess.run(
            [docker_bin(), *cmd, str(context)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise DockerError(f"building {tag} failed (full log: {log}):\n{tail}")
    return time.monotonic() - started


def local_base(name: str, dockerfile: Path, root: str, say=print) -> str:
    """An image FROM the debootstrapped root, tagged by its Dockerfile's content and the root's."""
    tag = content_tag(name, dockerfile, root)
    if not image_exists(tag):
        say(f"building {tag} from {dockerfile.relative_to(ROOT)}")
        build(dockerfile, tag, dockerfile.parent, {"ROOT": root})
    return tag


def requirements() -> tuple[list[str], list[str]]:
    """(pinned dependencies and the build backend, packages installed without their deps)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # The build backend too: the image installs the project itself without build isolation.
    return data["project"]["dependencies"] + data["build-system"]["requires"], data["tool"]["tsforge"]["no-deps"]


def wheelhouse(say=print) -> Path:
    """Wheels of every pinned requirement, built on the host (pip here verifies TLS and finds
    the CPU torch build); reused until pyproject.toml changes."""
    deps, no_deps = requirements()
    stamp = WHEELHOUSE / f".requirements-{hashlib.sha256(repr((deps, no_deps)).encode()).hexdigest()[:12]}"
    if stamp.exists():
        return WHEELHOUSE
    say(
        f"wheelhouse: pip wheel {len(deps)} pinned requirements and their dependencies -> {WHEELHOUSE.relative_to(ROOT)}"
    )
    # Built aside and swapped in whole: a failed build leaves the previous wheelhouse, never a
    # partial one that an image would then install from.
    staging = Path(tempfile.mkdtemp(dir=WHEELHOUSE.parent, prefix=".wheelhouse-"))
    try:
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(staging)]
        for cmd in (pip + deps, pip + ["--no-deps", *no_deps]):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise DockerError(f"pip wheel failed (the previous wheelhouse is kept):\n{result.stderr[-3000:]}")
        (staging / ".gitkeep").touch()
        (staging / stamp.name).touch()
        retired = WHEELHOUSE.with_name(".wheelhouse-retired")
        shutil.rmtree(retired, ignore_errors=True)
        if WHEELHOUSE.exists():
            os.replace(WHEELHOUSE, retired)
        os.replace(staging, WHEELHOUSE)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return WHEELHOUSE


def build_all(bases: str = "local", say=print) -> tuple[Images, dict[str, float]]:
    """The three images of the deployment; returns them and the seconds each build took."""
    ensure_engine()
    if bases == "local":
        root = root_image(say)
        python = local_base("python", DOCKER_DIR / "bases/python.Dockerfile", root, say)
        prometheus = local_base("prometheus", DOCKER_DIR / "prometheus/Dockerfile", root, say)
        wheelhouse(say)
    else:
        root, python, prometheus = UPSTREAM["debian"], UPSTREAM["python"], UPSTREAM["prometheus"]
    images = Images(torchserve="tsforge:cpu", gateway="tsforge-gateway:latest", prometheus=prometheus)
    seconds = {}
    say(f"building {images.torchserve} (docker/Dockerfile, target serve-mounted) on {python}")
    seconds[images.torchserve] = build(
        DOCKER_DIR / "Dockerfile", images.torchserve, ROOT, {"CPU_BASE": python}, target="serve-mounted"
    )
    say(f"building {images.gateway} (docker/gateway) on {root}")
    seconds[images.gateway] = build(
        DOCKER_DIR / "gateway/Dockerfile", images.gateway, DOCKER_DIR / "gateway", {"ROOT": root}
    )
    # Compose mounts docker/trusted/ into the TorchServe container: the key archives are signed with here.
    trusted_keys(TRUSTED_DIR)
    compose_env = {"COMPOSE_PROJECT_NAME": "tsforge", **images.env()}
    write_text(ENV_FILE, "".join(f"{k}={v}\n" for k, v in compose_env.items()))
    return images, seconds


def image_size_mb(tag: str) -> float:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip()) / 2**20


def compose_cmd(compose_file: Path = DOCKER_DIR / "docker-compose.yml") -> list[str]:
    compose = shutil.which("docker-compose")
    if not compose:
        raise DockerError("docker-compose is missing: apt-get install docker-compose")
    return [compose, "-f", str(compose_file)]


def health(container: str) -> str:
    """ "healthy", "unhealthy", "starting", or the container's state when it has no health."""
    fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
    result = docker("inspect", "-f", fmt, container, check=False)
    return result.stdout.strip() if result.returncode == 0 else "missing"


def wait_healthy(service: str = "torchserve", timeout: float = 300.0, say=print) -> str:
    """Wait for the compose service's container to report healthy; returns its id."""
    deadline = time.monotonic() + timeout
    status = "no container yet"
    while time.monotonic() < deadline:
        ids = subprocess.run([*compose_cmd(), "ps", "-q", service], capture_output=True, text=True).stdout.split()
        if ids:
            status = health(ids[0])
            if status == "healthy":
                # The gateway checks the same readiness port once a second (haproxy.cfg: inter
                # 1s, rise 1): wait out one check, so "healthy" also means "served through it".
                time.sleep(GATEWAY_CHECK_S)
                say(f"{service} is healthy")
                return ids[0]
        time.sleep(2)
    raise DockerError(
        f"{service} was not healthy after {timeout:.0f}s (last: {status}): "
        f"see `docker-compose -f docker/docker-compose.yml logs {service}`"
    )


def models_image(tag: str, store: Path, base: str = "tsforge:cpu") -> str:
    """`tsforge-models:<tag>`: the served image with the archives of `store` baked in, with their
    signatures and the public key that signed them (the entrypoint verifies them at start)."""
    archives = sorted(store.glob("*.mar"))
    if not archives:
        raise DockerError(f"no archives in {store}: run `make demo` or `tsforge build` first")
    image = f"tsforge-models:{tag}"
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        (context / "store").mkdir()
        for archive in archives:
            for path in (archive, signing.signature_of(archive)):
                if path.exists():  # an unsigned archive goes in as it is: the image then refuses to start
                    shutil.copy(path, context / "store" / path.name)
        trusted_keys(context / "trusted")
        build(DOCKER_DIR / "models.Dockerfile", image, context, {"BASE": base})
    return image


def trusted_keys(folder: Path) -> Path:
    """`folder` holding the public key this machine signs archives with and every key it trusts
    (TSFORGE_TRUSTED_KEYS): the image trusts what this machine trusts, and no other key."""
    folder.mkdir(parents=True, exist_ok=True)
    own = signing.public_key()
    shutil.copy(own, folder / "builder.pem")
    for key in signing.trusted_keys():
        if key.resolve() != own.resolve():
            shutil.copy(key, folder / f"trusted-{key.name}")
    return folder
