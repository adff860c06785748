"""The container health check: `python -m tsforge.server.health` exits 0 when TorchServe answers /ping
and no drain has begun (tsforge.server.foreground).

Separate from the CLI so that it imports neither torch nor the training code: it must answer
well within the health check's timeout on a busy machine. The key is renewed when it expires.
"""

import sys

from tsforge.paths import RUN_DIR
from tsforge.server.foreground import ready
from tsforge.server.torchserve import server_for

if __name__ == "__main__":
    sys.exit(0 if ready(server_for(RUN_DIR)) else 1)
