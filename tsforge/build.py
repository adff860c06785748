"""The build road for one model: train -> export -> gates -> model card -> archive.

Each step is its own function (the CLI has a verb for each); `build` chains them and skips
the whole road when the archive was built from the same sources and settings. One training
run serves both export formats (TorchScript and ONNX): each has its own folder, gates and
archive (digits.mar, digits-onnx.mar).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from handlers.base import MODEL_CARD
from training.export import FORMATS, export, loaded, run_gates
from training.gates import GateResult, enforce
from training.specs import SPECS, ModelSpec, TrainConfig
from training.train import CHECKPOINT, METRICS, load_checkpoint, train, write_json
from tsforge import archive
from tsforge.paths import ARTIFACTS, MODEL_STORE, ROOT

GATES = "gates.json"
BUILD_STAMP = "build.json"
# What each half of the road depends on: a handler edit re-archives without retraining.
TRAIN_SOURCES = ("models", "training")
ARCHIVE_SOURCES = ("handlers", "tsforge/archive.py", "tsforge/build.py")
# Every name a model is served under, one per format: digits, digits-onnx, diabetes, ...
SERVED = [fmt.served_name(name) for name in SPECS for fmt in FORMATS.values()]


def fingerprint(sources: tuple[str, ...], *settings: object) -> str:
    h = hashlib.sha256(json.dumps(settings, default=str).encode())
    for src in sources:
        path = ROOT / src
        for f in sorted(path.rglob("*.py") if path.is_dir() else [path]):
            h.update(f.relative_to(ROOT).as_posix().encode() + f.read_bytes())
    return h.hexdigest()[:16]


def artifacts_dir(spec: ModelSpec, root: Path = ARTIFACTS) -> Path:
    return root / spec.name


def export_dir(out_dir: Path, runtime: str) -> Path:
    """One folder per export format beside the shared checkpoint: artifacts/digits/onnx/."""
    return out_dir / runtime


def exported_file(spec: ModelSpec, out_dir: Path, runtime: str) -> Path:
    """The gated file the archive ships (TorchScript, or ONNX Runtime's optimised ONNX)."""
    return export_dir(out_dir, runtime) / f"{spec.name}{FORMATS[runtime].shipped_suffix}"


def export_and_gate(spec: ModelSpec, out_dir: Path, runtime: str = "torchscript") -> tuple[Path, list[GateResult]]:
    """Export the checkpoint, run both gates on the written file, record them.

    Returns the file to archive; raises GateFailed (after recording the verdicts) on a failure.
    """
    fmt = FORMATS[runtime]
    eager, config = load_checkpoint(out_dir / CHECKPOINT, spec)
    splits = spec.splits(config.seed)
    target = export_dir(out_dir, runtime)
    (target / GATES).unlink(missing_ok=True)  # never leave an older verdict beside a new export
    path = export(spec, eager, target, fmt, splits)
    results = run_gates(spec, eager, loaded(path), splits, fmt.tolerance)
    write_json(target / GATES, [r.to_dict() for r in results])
    enforce(results)
    return path, results


def load_gates(out_dir: Path, runtime: str) -> list[GateResult]:
    """The verdicts `export_and_gate` recorded for the export in `out_dir`."""
    return [GateResult(**g) for g in json.loads((export_dir(out_dir, runtime) / GATES).read_text())]


def model_card(spec: ModelSpec, out_dir: Path, version: str, runtime: str, gates: list[GateResult]) -> dict[str, Any]:
    payload = torch.load(out_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    metrics = json.loads((out_dir / METRICS).read_text())
    return {
        "name": FORMATS[runtime].served_name(spec.name),
        "version": version,
        "runtime": runtime,
        "exported_with": {pkg: metadata.version(pkg) for pkg in FORMATS[runtime].packages},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": "classification" if spec.classifier else "regression",
        "model_config": payload["model_config"],
        "train_config": payload["train_config"],
        "best_epoch": payload["epoch"],
        "metrics": {"validation": metrics["val"], "test": metrics["test"]},
        "gates": [g.to_dict() for g in gates],
        "serving": asdict(spec.serving),
        "schema": spec.schema,
    }


def archive_export(
    spec: ModelSpec,
    out_dir: Path,
    runtime: str,
    gates: list[GateResult],
    store: Path = MODEL_STORE,
    version: str = "1.0",
    archive_name: str | None = None,
) -> Path:
    """Write the model card beside the gated export and archive both into `store`."""
    card = model_card(spec, out_dir, version, runtime, gates)
    write_json(export_dir(out_dir, runtime) / MODEL_CARD, card)
    served = exported_file(spec, out_dir, runtime)
    return archive.build_archive(spec, served, card, store, version, archive_name=archive_name, model_name=card["name"])


def build(
    spec: ModelSpec,
    store: Path = MODEL_STORE,
    artifacts: Path = ARTIFACTS,
    config: TrainConfig | None = None,
    version: str = "1.0",
    force: bool = False,
    progress: bool = True,
    archive_name: str | None = None,
    runtime: str = "torchscript",
) -> tuple[Path, bool]:
    """Build `store/<archive_name><suffix>.mar`; returns (path, rebuilt). No archive if a gate fails.

    `archive_name` (default: the model's name) lets a second version live beside the first;
    `runtime` picks the export format, and both formats share one training run.
    """
    cfg = config or spec.train
    fmt = FORMATS[runtime]
    base = archive_name or spec.name
    out_dir = artifacts / base
    target = store / f"{fmt.served_name(base)}.mar"
    stamp_path = out_dir / BUILD_STAMP
    stamp = json.loads(stamp_path.read_text()) if stamp_path.exists() and not force else {}
    trained = fingerprint(TRAIN_SOURCES, spec.name, asdict(cfg))
    archived = fingerprint(ARCHIVE_SOURCES, trained, base, version, runtime, asdict(spec.serving), spec.schema)
    if target.exists() and stamp.get("archives", {}).get(runtime) == archived:
        return target, False
    if stamp.get("trained") != trained:
        stamp_path.unlink(missing_ok=True)  # the checkpoint on disk is about to change
        train(spec, out_dir, cfg, progress=progress)
        stamp = {"trained": trained}
        write_json(stamp_path, stamp)
    _, gates = export_and_gate(spec, out_dir, runtime)
    path = archive_export(spec, out_dir, runtime, gates, store, version, archive_name=target.stem)
    stamp["archives"] = {**stamp.get("archives", {}), runtime: archived}
    write_json(stamp_path, stamp)
    return path, True
