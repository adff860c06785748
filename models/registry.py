"""Every model, discovered: each module in `models/` that defines `SPEC = ModelSpec(...)`.

Nothing else in the repository names a model: the CLI, the archive, the demo, the benchmark
and the tests all iterate over `SPECS`, each with its sweep's choice applied (models/tuned.json).
The registry sits above the models it discovers: no model, and nothing in training/ or
handlers/, imports it.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from dataclasses import replace
from pathlib import Path

import models
from training.specs import ModelSpec

# Written by `tsforge bench --tune`: each model's runtime and serving knobs as its own sweep
# chose them, with the figures that chose them.
TUNED = Path(__file__).with_name("tuned.json")
KNOBS = ("workers", "threads_per_worker", "batch_size", "max_batch_delay_ms")


def tuned(spec: ModelSpec, choice: dict | None) -> ModelSpec:
    """`spec` with its sweep's choice: that runtime first (served under the plain name) and
    those knobs; the model's limits and pass cost are its own. No choice: as declared."""
    if not choice:
        return spec
    if choice["runtime"] not in spec.formats:
        raise SystemExit(f"{TUNED} picks {choice['runtime']!r} for {spec.name}, which exports {spec.formats}")
    formats = (choice["runtime"], *(f for f in spec.formats if f != choice["runtime"]))
    return replace(spec, formats=formats, serving=replace(spec.serving, **{k: choice[k] for k in KNOBS}))


def discover() -> dict[str, ModelSpec]:
    choices = json.loads(TUNED.read_text())["models"] if TUNED.exists() else {}
    found: dict[str, ModelSpec] = {}
    for info in pkgutil.iter_modules(models.__path__):
        if info.name == __name__.rsplit(".", 1)[-1]:
            continue  # this module
        spec = getattr(importlib.import_module(f"models.{info.name}"), "SPEC", None)
        if isinstance(spec, ModelSpec):
            if spec.name in found:
                raise SystemExit(f"two model modules declare the name {spec.name!r}: rename one")
            found[spec.name] = tuned(spec, choices.get(spec.name))
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
