"""Where things live: relative to the repository root, each overridable by environment
(the Docker image points them at writable folders of its non-root user)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("TSFORGE_ARTIFACTS", ROOT / "artifacts"))
MODEL_STORE = Path(os.environ.get("TSFORGE_MODEL_STORE", ROOT / "model_store"))
CONFIG = Path(os.environ.get("TSFORGE_CONFIG", ROOT / "config.properties"))
# TorchServe's logging with every log size-bounded (its built-in config keeps ~3 GB).
LOG_CONFIG = Path(os.environ.get("TSFORGE_LOG_CONFIG", ROOT / "log4j2.xml"))
RUN_DIR = Path(os.environ.get("TSFORGE_RUN_DIR", ROOT / ".serve"))
HANDLERS = ROOT / "handlers"
EXAMPLES = ROOT / "examples"


def shown(path: Path) -> Path:
    """`path` as messages show it: relative to the repository when inside it, else as it is
    (TSFORGE_MODEL_STORE and TSFORGE_ARTIFACTS may point anywhere)."""
    path = Path(path)
    return path.relative_to(ROOT) if path.is_absolute() and path.is_relative_to(ROOT) else path
