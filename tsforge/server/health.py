"""The container health check: `python -m tsforge.server.health` exits 0 when the replica's
readiness port (tsforge.server.foreground) says ready: every model loaded, TorchServe answering
/ping, no drain begun.

The gateway checks the same port, so Docker's view and the gateway's agree: a bare /ping turned
the container healthy while models were still loading, and the gateway answered 503 meanwhile.
Separate from the CLI so that it imports neither torch nor the training code: it must answer
well within the health check's timeout on a busy machine.
"""

import os
import sys
import urllib.request

# Here, not in tsforge.server.foreground, which imports the codecs (NumPy, Pillow): this runs
# every few seconds in each replica, and a bare interpreter with urllib starts in a fraction.
READY_PORT = 8083  # TSFORGE_READY_PORT moves it


def ready_port() -> int:
    return int(os.environ.get("TSFORGE_READY_PORT", READY_PORT))


def ready(timeout: float = 4.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ready_port()}/ready", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, ValueError):  # refused, 503 (HTTPError), timed out
        return False


if __name__ == "__main__":
    sys.exit(0 if ready() else 1)
