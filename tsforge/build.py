"""The build road for one model: train -> export -> gates -> model card -> archive.

Each step is its own function (the CLI has a verb for each); `build` chains them and skips
the whole road when the archive was built from the same sources and settings.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from training.export import export_torchscript, run_gates
from training.gates import GateResult, enforce
from training.specs import ModelSpec, TrainConfig
from training.train import CHECKPOINT, METRICS, load_checkpoint, train, write_json
from tsforge import archive
from tsforge.paths import ARTIFACTS, MODEL_STORE, ROOT

GATES = "gates.json"
BUILD_STAMP = "build.json"
# What each half of the road depends on: a handler edit re-archives without retraining.
TRAIN_SOURCES = ("models", "training")
ARCHIVE_SOURCES = ("handlers", "tsforge/archive.py", "tsforge/build.py")


def fingerprint(sources: tuple[str, ...], *settings: object) -> str:
    h = hashlib.sha256(json.dumps(settings, default=str).encode())
    for src in sources:
        path = ROOT / src
        for f in sorted(path.rglob("*.py") if path.is_dir() else [path]):
            h.update(f.relative_to(ROOT).as_posix().encode() + f.read_bytes())
    return h.hexdigest()[:16]


def artifacts_dir(spec: ModelSpec, root: Path = ARTIFACTS) -> Path:
    return root / spec.name


def export_and_gate(spec: ModelSpec, out_dir: Path) -> list[GateResult]:
    """Script the checkpoint, run both gates, record them; raise GateFailed on a failure."""
    eager, config = load_checkpoint(out_dir / CHECKPOINT, spec)
    exported = export_torchscript(eager, out_dir / f"{spec.name}.pt")
    results = run_gates(spec, eager, exported, spec.splits(config.seed))
    write_json(out_dir / GATES, [r.to_dict() for r in results])
    enforce(results)
    return results


def load_gates(out_dir: Path) -> list[GateResult]:
    """The verdicts `export_and_gate` recorded for the export in `out_dir`."""
    return [GateResult(**g) for g in json.loads((out_dir / GATES).read_text())]


def model_card(spec: ModelSpec, out_dir: Path, version: str, gates: list[GateResult]) -> dict[str, Any]:
    payload = torch.load(out_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    metrics = json.loads((out_dir / METRICS).read_text())
    return {
        "name": spec.name,
        "version": version,
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


def build(
    spec: ModelSpec,
    store: Path = MODEL_STORE,
    artifacts: Path = ARTIFACTS,
    config: TrainConfig | None = None,
    version: str = "1.0",
    force: bool = False,
    progress: bool = True,
    archive_name: str | None = None,
) -> tuple[Path, bool]:
    """Build `store/<archive_name>.mar`; returns (path, rebuilt). No archive if a gate fails.

    `archive_name` (default: the model's name) lets a second version live beside the first.
    """
    cfg = config or spec.train
    name = archive_name or spec.name
    out_dir = artifacts / name
    target = store / f"{name}.mar"
    stamp_path = out_dir / BUILD_STAMP
    stamp = json.loads(stamp_path.read_text()) if stamp_path.exists() and not force else {}
    trained = fingerprint(TRAIN_SOURCES, spec.name, asdict(cfg))
    archived = fingerprint(ARCHIVE_SOURCES, trained, name, version, asdict(spec.serving), spec.schema)
    if target.exists() and stamp.get("archived") == archived:
        return target, False
    if stamp.get("trained") != trained:
        stamp_path.unlink(missing_ok=True)  # the checkpoint on disk is about to change
        train(spec, out_dir, cfg, progress=progress)
        gates = export_and_gate(spec, out_dir)
        write_json(stamp_path, {"trained": trained})
    else:  # same model as last time: its export passed the gates then
        gates = load_gates(out_dir)
    card = model_card(spec, out_dir, version, gates)
    write_json(out_dir / "model_card.json", card)
    path = archive.build_archive(spec, out_dir / f"{spec.name}.pt", card, store, version, archive_name=name)
    write_json(stamp_path, {"trained": trained, "archived": archived, "archive": str(path)})
    return path, True
