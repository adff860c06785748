"""Every model, discovered: each module in `models/` that defines `SPEC = ModelSpec(...)`.

Nothing else in the repository names a model: the CLI, the archive, the demo, the benchmark
and the tests all iterate over `SPECS`. The registry sits above the models it discovers: no
model, and nothing in training/ or handlers/, imports it.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import models
from training.specs import ModelSpec


def discover() -> dict[str, ModelSpec]:
    found: dict[str, ModelSpec] = {}
    for info in pkgutil.iter_modules(models.__path__):
        if info.name == __name__.rsplit(".", 1)[-1]:
            continue  # this module
        spec = getattr(importlib.import_module(f"models.{info.name}"), "SPEC", None)
        if isinstance(spec, ModelSpec):
            if spec.name in found:
                raise SystemExit(f"two model modules declare the name {spec.name!r}: rename one")
            found[spec.name] = spec
    return dict(sorted(found.items()))


SPECS: dict[str, ModelSpec] = discover()


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise SystemExit(f"unknown model {name!r}: choose one of {', '.join(SPECS)}") from None


def module_file(spec: ModelSpec) -> Path:
    """The module that declares `spec` (models/<name>.py)."""
    return Path(sys.modules[spec.build.__module__].__file__)
