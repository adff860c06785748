"""Files that come from an installed package (weights, data) and are used only when their SHA-256
is the recorded one: a build never trains or serves on files that changed under it."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from training.errors import WeightsError


def package_file(package: str, name: str) -> Path:
    """A file inside an installed package, or a bare relative path when it is not installed
    (checked by `verified` when the file is needed, so importing a model never fails)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return Path(name)
    return Path(next(iter(spec.submodule_search_locations))) / name


def verified(path: Path, sha256: str, install: str) -> Path:
    """`path`, refused unless its SHA-256 is the recorded one; `install` says how to get it."""
    if not path.is_absolute():
        raise WeightsError(f"{install} is not installed: run `make setup` (scripts/bootstrap.sh)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != sha256:
        raise WeightsError(f"{path} has SHA-256 {digest}, not the recorded {sha256}: refusing to build")
    return path
