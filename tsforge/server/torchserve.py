"""Start, wait for, inspect and stop a TorchServe instance in its own run directory.

TorchServe writes `key_file.json` and `logs/` into the directory it starts from, and keeps a
pid file in the temp dir; each instance gets its own run dir (and TMPDIR), so a test server
on free ports never collides with the one `make serve` left running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import requests

from training.files import write_json, write_text
from tsforge.packaging import signing
from tsforge.paths import CONFIG, LOG_CONFIG, MODEL_STORE, RUN_DIR
from tsforge.server import frontend

PID_FILE = "torchserve.pid"
# The private, verified copy of the model store TorchServe loads from, and where it came from.
PRIVATE_STORE, STORE_FILE = "store", "store.json"
KEY_FILE = "key_file.json"
LOG_FILE = "logs/torchserve.out"
ADDRESS_KEYS = ("inference_address", "management_address", "metrics_address")
# What a container binds beyond its loopback (`host`): never management.
EXPOSED_KEYS = ("inference_address", "metrics_address")
# Every listener TorchServe opens: a second instance must move all of them.
PORT_KEYS = (*ADDRESS_KEYS, "grpc_inference_port", "grpc_management_port")
# "key=value;key=value" set over config.properties at start: how a deployment changes a setting
# (token_expiration_min, or no tokens behind the swarm gateway) without a second copy of the file.
OVERRIDES_ENV = "TSFORGE_OVERRIDES"


class ServeError(RuntimeError):
    pass


@dataclass(frozen=True)
class Server:
    run_dir: Path
    inference_url: str
    management_url: str
    metrics_url: str
    # False behind the swarm gateway (disable_token_authorization=true): no key file, no keys.
    tokens: bool = True

    @property
    def key_file(self) -> Path:
        return self.run_dir / KEY_FILE

    @property
    def log_file(self) -> Path:
        return self.run_dir / LOG_FILE

    def keys(self) -> dict[str, str]:
        """{"inference": ..., "management": ..., "API": ...} from TorchServe's key file."""
        data = json.loads(self.key_file.read_text())
        return {kind: entry["key"] for kind, entry in data.items()}

    def key_expired(self, kind: str) -> bool:
        """Whether key_file.json says the `kind` key has expired (the API key never does)."""
        entry = json.loads(self.key_file.read_text()).get(kind, {})
        stamp = entry.get("expiration time")
        if not stamp:
            return False
        # Java writes nanoseconds ("...:06.414348439Z"); Python's ISO parser takes micro.
        expires = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00"))
        return expires <= datetime.now(UTC)

    @property
    def model_store(self) -> Path:
        """The store this instance loads archives from: its rendered config's, or the default."""
        rendered = self.run_dir / "config.properties"
        return Path(read_properties(rendered)["model_store"]) if rendered.exists() else MODEL_STORE

    @property
    def source_store(self) -> Path:
        """The store it was started on, whose archives `model_store` holds verified copies of."""
        recorded = self.run_dir / STORE_FILE
        return Path(json.loads(recorded.read_text())["source"]) if recorded.exists() else self.model_store

    def headers(self, kind: str = "inference") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys()[kind]}"} if self.tokens else {}


def free_port() -> int:
    """A free loopback port, for a second instance beside the one `make serve` runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def render_config(
    base: Path,
    run_dir: Path,
    model_store: Path,
    ports: dict[str, int] | None = None,
    host: str | None = None,
    management_host: str | None = None,
) -> Path:
    """Copy `base` into `run_dir`, filling ${MODEL_STORE}, optionally moving ports and bind hosts.

    `host` exists for containers: inside one, 127.0.0.1 is unreachable from the published
    ports, so the image binds the inference and metrics APIs to 0.0.0.0. Management (and gRPC,
    which nothing uses) stays on the container's own loopback, where the CLI inside still
    reaches it, unless `management_host` says otherwise: compose publishes it on the host's
    loopback, while a Swarm replica's backend network must never reach it (no tokens there).
    """
    text = base.read_text().replace("${MODEL_STORE}", str(model_store.resolve()))
    binds = [(key, host) for key in EXPOSED_KEYS] + [("management_address", management_host)]
    for key, bind in binds:
        if bind:
            text = re.sub(rf"(?m)^({key}=(?:https?://)?)127\.0\.0\.1", rf"\g<1>{bind}", text)
    text = re.sub(r"(?m)^model_store=.*$", f"model_store={model_store.resolve()}", text)
    for item in filter(None, (s.strip() for s in os.environ.get(OVERRIDES_ENV, "").split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"\w+", key.strip()):
            raise ServeError(f"{OVERRIDES_ENV} item {item!r} is not key=value (items are separated by ';')")
        line = f"{key.strip()}={value.strip()}"
        text, found = re.subn(rf"(?m)^{key.strip()}=.*$", lambda _, line=line: line, text)
        text += "" if found else f"\n{line}\n"
    for key, port in (ports or {}).items():
        # "key=http://host:PORT" or "key=PORT"
        text, found = re.subn(rf"(?m)^({key}=(?:https?://[^:/]+:)?)\d+$", rf"\g<1>{port}", text)
        if not found:
            raise ServeError(f"{base} has no {key}=... line to move to port {port}")
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "config.properties"
    write_text(out, text)
    return out


def server_for(run_dir: Path) -> Server:
    """The instance started from `run_dir`, with URLs a local client can call (the base
    config's when it has never started there)."""
    rendered = run_dir / "config.properties"
    props = read_properties(rendered if rendered.exists() else CONFIG)
    tokens = props.get("disable_token_authorization", "false").lower() != "true"
    return Server(run_dir, *(props[k].replace("0.0.0.0", "127.0.0.1") for k in ADDRESS_KEYS), tokens=tokens)


def start(
    models: list[str],
    run_dir: Path = RUN_DIR,
    model_store: Path = MODEL_STORE,
    base_config: Path = CONFIG,
    ports: dict[str, int] | None = None,
    host: str | None = None,
    timeout: float = 180.0,
    console: bool = False,
    management_host: str | None = None,
    request_log: bool = False,
) -> Server:
    """Start TorchServe in the background, wait until every model has a ready worker.
    `request_log`: the frontend's per-request and per-batch lines (worker metric lines, round
    trips) in its log, as the bench's breakdown reads them; off, as shipped, they cost CPU."""
    # Imported here: the handler pulls in torch, which the health check must not wait for.
    from handlers.base import KEY_FILE_ENV

    if is_running(run_dir):
        raise ServeError(f"TorchServe is already running from {run_dir}: stop it first (tsforge serve stop).")
    # Every archive TorchServe could load (at start, or registered later), verified where
    # TorchServe reads it: the store itself when no one here can change it, else a private copy.
    run_dir.mkdir(parents=True, exist_ok=True)
    source, model_store = model_store, signing.loadable_store(model_store, run_dir / PRIVATE_STORE)
    write_json(run_dir / STORE_FILE, {"source": str(source.resolve()), "loaded": str(model_store.resolve())})
    config = render_config(base_config, run_dir, model_store, ports, host, management_host)
    (run_dir / "logs").mkdir(exist_ok=True)
    (run_dir / "tmp").mkdir(exist_ok=True)
    (run_dir / KEY_FILE).unlink(missing_ok=True)
    frontend.install(run_dir)  # the Open Inference Protocol's health and metadata routes
    cmd = [
        str(Path(sys.executable).with_name("torchserve")),
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config",
        str(config),
        "--model-store",
        str(model_store.resolve()),
        "--log-config",
        str(LOG_CONFIG),
    ]
    if models:
        cmd += ["--models", *models]
    # Our own TMPDIR keeps TorchServe's pid file per instance; LOG_LOCATION keeps logs here.
    env = {
        **os.environ,
        "TMPDIR": str(run_dir / "tmp"),
        # TorchServe passes TEMP to Java as java.io.tmpdir, where the worker sockets live
        # (.ts.sock.9000, ...): per instance, or two instances fight over the same paths.
        "TEMP": str(run_dir / "tmp"),
        "LOG_LOCATION": str(run_dir / "logs"),
        "METRICS_LOCATION": str(run_dir / "logs"),
        # Workers inherit it: the handler serves the model card only to the management key.
        KEY_FILE_ENV: str((run_dir / KEY_FILE).resolve()),
        "TSFORGE_REQUEST_LOG": "info" if request_log else "warn",  # log4j2.xml
    }
    if console:  # a container: its output goes to `docker logs`, which the log driver bounds
        proc = subprocess.Popen(cmd, cwd=run_dir, env=env, start_new_session=True)
    else:
        with open(run_dir / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                cmd, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
    # The pid with its start time: after a reboot the same pid may be any other process.
    write_json(run_dir / PID_FILE, {"pid": proc.pid, "started": psutil.Process(proc.pid).create_time()})
    server = server_for(run_dir)
    try:
        wait_ready(server, sorted({model_name(model_store / m.split("=")[-1]) for m in models}), timeout, proc)
    except BaseException:
        stop(run_dir)
        raise
    return server


def wait_ready(server: Server, models: list[str], timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll /ping (it needs the inference key) and each model's workers until all are READY."""
    deadline = time.monotonic() + timeout
    pending = list(models)
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServeError(
                f"TorchServe exited with code {proc.returncode} while starting; see {server.log_file}:\n{tail(server.log_file)}"
            )
        try:
            if server.key_file.exists() or not server.tokens:
                ping = requests.get(f"{server.inference_url}/ping", headers=server.headers(), timeout=5)
                last = f"/ping answered {ping.status_code} {ping.text.strip()[:200]}"
                if ping.ok:
                    pending = [m for m in pending if not model_ready(server, m)]
                    if not pending:
                        return
                    last = f"waiting for a ready worker of {', '.join(pending)}"
        except (requests.ConnectionError, requests.Timeout, json.JSONDecodeError, KeyError) as e:
            last = f"{type(e).__name__}"
        time.sleep(0.5)
    raise ServeError(
        f"TorchServe was not ready after {timeout:.0f}s ({last}); see {server.log_file}:\n{tail(server.log_file)}"
    )


def model_name(archive: Path) -> str:
    """The model name in an archive's manifest (what TorchServe registers it as)."""
    with zipfile.ZipFile(archive) as z:
        return json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]["modelName"]


def model_ready(server: Server, model: str) -> bool:
    r = requests.get(f"{server.management_url}/models/{model}", headers=server.headers("management"), timeout=5)
    return r.ok and any(w.get("status") == "READY" for d in r.json() for w in d.get("workers", []))


def is_running(run_dir: Path = RUN_DIR) -> bool:
    pid = _pid(run_dir)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(run_dir: Path = RUN_DIR, timeout: float = 30.0) -> bool:
    """Stop the instance started from `run_dir` (its whole process group). False if none ran."""
    pid = _pid(run_dir)
    if pid is None or not is_running(run_dir):
        (run_dir / PID_FILE).unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    if _group_alive(pid):
        _signal_group(pid, signal.SIGKILL)
    _reap(pid)
    (run_dir / PID_FILE).unlink(missing_ok=True)
    return True


def _pid(run_dir: Path) -> int | None:
    """The pid this run dir started, only while that very process lives (same start time)."""
    try:
        record = json.loads((run_dir / PID_FILE).read_text())
        pid, started = int(record["pid"]), float(record["started"])
        if abs(psutil.Process(pid).create_time() - started) < 0.01:
            return pid
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        pass
    return None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    """Collect our child's exit status if it is ours, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"
