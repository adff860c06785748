"""The container's main process (`tsforge serve run`): start TorchServe, hold, and on a planned
stop lose no request: turn unready, let the requests in flight finish, then stop.

TorchServe ends its workers with requests in flight when it is stopped (pytorch/serve#2008),
and a gateway keeps sending to a replica until its health check fails. So on SIGTERM (docker
stop, a scale-down, the old task of a rolling update) this process:

1. writes the drain flag: the readiness port (what the gateway checks, every second, and the
   container health check `tsforge.server.health` asks) answers "not ready" from then on;
2. waits for the gateway to see it (its check interval x fall count, plus a margin);
3. waits until TorchServe has neither received nor answered a request for QUIET_S (its
   counters, from the metrics API), at most MAX_DRAIN_S (inside Docker's 30 s grace). While a
   request is in flight a worker answers one at least every worker call, and the budgets bound
   a call well under QUIET_S (models/<name>.py), so a quiet QUIET_S means nothing is in flight;
4. stops TorchServe.

The readiness port answers GET /ready with 200 once every model is loaded and while TorchServe's
own /ping answers, else 503. (The Open Inference Protocol's /v2/health/ready says the same, drain
included, on TorchServe's own port: frontend/OpenInferenceProtocolRequestHandler.java.)
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tsforge.paths import RUN_DIR
from tsforge.server import torchserve
from tsforge.server.client import healthy
from tsforge.server.health import READY_PORT, ready_port
from tsforge.server.torchserve import Server

FLAG = "draining"
# docker/gateway/haproxy.cfg checks each replica every 1 s and takes it out after 2 failures.
DETECT_S = 3.0
QUIET_S = 2.0
MAX_DRAIN_S = 20.0
# The readiness port answers from TorchServe's last /ping, polled every POLL_S: a replica
# saturated with requests can take seconds to answer /ping, and a check that waited for it
# would take a busy replica for a dead one (the Swarm test's planned stop saw it: the
# remaining replica dropped out under load). Silent for STALE_S, it turns unready.
POLL_S = 0.5
STALE_S = 5.0


def draining(run_dir: Path) -> bool:
    return (run_dir / FLAG).exists()


def ready(server: Server) -> bool:
    """Ready for new requests: TorchServe answers /ping and no drain has begun."""
    return not draining(server.run_dir) and healthy(server)


class Pinger:
    """TorchServe's /ping in a daemon thread, for the readiness port to answer at once."""

    def __init__(self, started: list[Server]) -> None:
        self.started, self.last_ok = started, float("-inf")
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while True:
            if self.started and healthy(self.started[0]):
                self.last_ok = time.monotonic()
            time.sleep(POLL_S)

    def ready(self) -> bool:
        """`ready` without waiting: no drain, and /ping answered within STALE_S."""
        fresh = time.monotonic() - self.last_ok < STALE_S
        return bool(self.started) and fresh and not draining(self.started[0].run_dir)


class Quiet(ThreadingHTTPServer):
    """A gateway's health check hangs up once it has read the status line: no stack trace on
    stderr (Docker's log) for each reset, only for real errors."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve_readiness(started: list[Server], host: str, port: int = READY_PORT) -> ThreadingHTTPServer:
    """GET /ready on `host:port` in a daemon thread: 200 when `ready`, 503 otherwise (and
    until `started` holds the server: it listens before TorchServe starts)."""

    pinger = Pinger(started)

    class Readiness(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/ready":
                ok = pinger.ready()
                status, doc = (200 if ok else 503), {"ready": ok}
            else:
                status, doc = 404, {"error": "not_found", "detail": "this port serves GET /ready"}
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # one check a second: no log line each
            pass

    httpd = Quiet((host, port), Readiness)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def activity(server: Server) -> tuple[float, float]:
    """(inference requests received, microseconds of answered ones), all models, from the
    metrics API (no key). The first moves on each arrival, the second on each answer."""
    text = requests.get(f"{server.metrics_url}/metrics", timeout=5).text

    def total(name: str) -> float:
        return sum(float(m) for m in re.findall(rf"(?m)^{name}\{{[^}}]*\}} (\S+)$", text))

    return total("ts_inference_requests_total"), total("ts_inference_latency_microseconds")


def drain(server: Server, say=print) -> float:
    """Steps 1-3 above; returns the seconds it took. The caller stops TorchServe."""
    started = time.monotonic()
    (server.run_dir / FLAG).touch()
    say(f"drain: not ready; waiting {DETECT_S:g} s for the gateway to stop sending")
    time.sleep(DETECT_S)
    last, quiet_since = None, time.monotonic()
    while time.monotonic() - started < MAX_DRAIN_S:
        try:
            now = activity(server)
        except requests.RequestException:
            break  # TorchServe is gone already: nothing is left to finish
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            break
        time.sleep(0.2)
    took = time.monotonic() - started
    say(f"drain: quiet after {took:.1f} s; stopping TorchServe")
    return took


def run(models: list[str], host: str | None = None, announce=print, management_host: str | None = None) -> int:
    """Start, serve readiness, hold until SIGTERM/SIGINT or TorchServe dies; drain; stop."""
    stop_requested = []
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop_requested.append(True))
    # A restarted container finds the previous one's pid files and drain flag in the run
    # volume; their pids mean nothing in this container's fresh pid namespace.
    for stale in (RUN_DIR / torchserve.PID_FILE, RUN_DIR / "tmp" / ".model_server.pid", RUN_DIR / FLAG):
        stale.unlink(missing_ok=True)
    started: list[Server] = []
    readiness = serve_readiness(started, host or "127.0.0.1", ready_port())
    try:
        started.append(torchserve.start(models, host=host, console=True, management_host=management_host))
    except BaseException:
        readiness.shutdown()
        raise
    server = started[0]
    announce(server)
    try:
        while not stop_requested and torchserve.is_running():
            time.sleep(0.2)
        if stop_requested and torchserve.is_running():
            drain(server)
    finally:
        readiness.shutdown()
        torchserve.stop()
    return 0 if stop_requested else 1
