"""Where things live. Everything is relative to the repository root unless overridden."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
MODEL_STORE = ROOT / "model_store"
CONFIG = ROOT / "config.properties"
RUN_DIR = ROOT / ".serve"
HANDLERS = ROOT / "handlers"
EXAMPLES = ROOT / "examples"
