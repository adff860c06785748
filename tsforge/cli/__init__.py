"""The command line, `tsforge <verb>` (the verbs: tsforge/cli/parser.py). `main` imports only the
chosen verb's module: road (train, export, archive, build, demo), serving (serve, predict,
models), docker, benchmark."""

from __future__ import annotations

import importlib
import sys

from training.errors import BuildStopped, GateFailed
from tsforge.cli.parser import glue_key_values, parser
from tsforge.deploy.containers import DockerError
from tsforge.monitoring.watch import MonitorError
from tsforge.packaging.signing import SignatureError
from tsforge.server.client import ServerError
from tsforge.server.frontend import FrontendError
from tsforge.server.torchserve import ServeError
from tsforge.server.verify import Disagreement


def main(argv: list[str] | None = None) -> int:
    """Parse, then import and run only the chosen verb's module: `tsforge serve key` or
    `--help` never load torch or a model."""
    args = parser().parse_args(glue_key_values(sys.argv[1:] if argv is None else argv))
    module, function = args.verb
    try:
        getattr(importlib.import_module(f"tsforge.cli.{module}"), function)(args)
    except GateFailed as e:
        print(f"build stopped: {e}. No archive was written.", file=sys.stderr)
        return 2
    except BuildStopped as e:  # an export that failed, weights that do not fit
        print(f"build stopped: {e}", file=sys.stderr)
        return 2
    except (ServeError, ServerError, FrontendError, DockerError, MonitorError, SignatureError, Disagreement) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # an argument the client refuses (worker counts, ...)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e.strerror}: {e.filename} (run the earlier step first, or `make demo`)", file=sys.stderr)
        return 1
    return 0
