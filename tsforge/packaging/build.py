"""The build road for one model: train -> export -> gates -> model card -> archive.

Each step is its own function (the CLI has a verb for each); `build` chains them and skips
the whole road when the archive was built from the same sources and settings. One training
run serves both export formats (TorchScript and ONNX): each has its own folder, gates and
archive (digits.mar for the runtime the model ships, digits-torchscript.mar).
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
from handlers.codecs import codec_for
from models.registry import SPECS, module_file
from training.export import FORMATS, export, loaded, run_gates
from training.files import write_json
from training.gates import GateResult, enforce
from training.profile import reference_profile
from training.replay import REPLAY, check_of
from training.replay import sample as replay_sample
from training.specs import ModelSpec, TrainConfig
from training.train import CHECKPOINT, METRICS, load_checkpoint, train
from training.weights import WeightsError, adopt, weights_digest
from tsforge.packaging import archive, signing
from tsforge.packaging.dependencies import local_imports
from tsforge.paths import ARTIFACTS, MODEL_STORE, ROOT

GATES = "gates.json"
PROFILE = "profile.json"
BUILD_STAMP = "build.json"


def served_name(spec: ModelSpec, runtime: str, base: str | None = None) -> str:
    """The name `runtime`'s archive of `spec` is served under: the plain name (`base`, default
    the model's) for the shipped runtime, the first of `spec.formats` (the one the sweep chose,
    models/tuned.json), and `<name>-<runtime>` for the others (digits-torchscript, minilm-int8)."""
    base = base or spec.name
    return base if runtime == spec.formats[0] else f"{base}-{runtime}"


# Every name a model is served under, one per format: digits, digits-torchscript, diabetes, ...
SERVED = [served_name(spec, fmt) for spec in SPECS.values() for fmt in spec.formats]
# Served name -> the model behind it: digits-torchscript -> digits.
MODEL_OF = {served_name(spec, fmt): name for name, spec in SPECS.items() for fmt in spec.formats}


def train_sources(spec: ModelSpec) -> list[Path]:
    """What a model's checkpoint depends on: its module, what that imports (the digits
    transform, say) and the training loop. Another model's module is never among them."""
    code = local_imports(module_file(spec), ROOT / "training" / "train.py", ROOT / "training" / "weights.py")
    return [*code, *spec.data_files]


def archive_sources(spec: ModelSpec) -> list[Path]:
    """What an archive depends on beside the checkpoint: export, gates, the handler modules
    it ships and the archive step: a handler edit re-archives without retraining."""
    road = [ROOT / "training" / "export.py", Path(archive.__file__), Path(__file__)]
    return sorted({*local_imports(*road), *archive.handler_files(spec.contract.kind)})


def fingerprint(sources: list[Path], *settings: object) -> str:
    h = hashlib.sha256(json.dumps(settings, default=str).encode())
    for f in sources:  # by their place in the repository (a module may live outside it)
        h.update((f.relative_to(ROOT) if f.is_relative_to(ROOT) else f).as_posix().encode() + f.read_bytes())
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
    splits = spec.splits(config.seed if config else spec.seed)
    target = export_dir(out_dir, runtime)
    for stale in (GATES, PROFILE, REPLAY):  # never leave an older verdict or sample beside a new export
        (target / stale).unlink(missing_ok=True)
    path = export(spec, eager, target, fmt, splits)
    exported = loaded(path)
    results = run_gates(spec, eager, exported, splits, fmt)
    write_json(target / GATES, [r.to_dict() for r in results])
    enforce(results)
    spec.make_files()  # the profile and the replay read the contract's files through the codec
    write_json(target / PROFILE, reference_profile(spec, exported, splits.test))
    check = check_of(fmt.tolerance, fmt.cosine)
    write_json(target / REPLAY, replay_sample(spec, exported, splits.test, served_name(spec, fmt.name), check))
    return path, results


def load_gates(out_dir: Path, runtime: str) -> list[GateResult]:
    """The verdicts `export_and_gate` recorded for the export in `out_dir`."""
    return [GateResult(**g) for g in json.loads((export_dir(out_dir, runtime) / GATES).read_text())]


def model_card(spec: ModelSpec, out_dir: Path, version: str, runtime: str, gates: list[GateResult]) -> dict[str, Any]:
    payload = torch.load(out_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    metrics = json.loads((out_dir / METRICS).read_text())
    return {
        "name": served_name(spec, runtime),
        "version": version,
        "runtime": runtime,
        "exported_with": {pkg: metadata.version(pkg) for pkg in FORMATS[runtime].packages},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": "classification" if spec.classifier else "regression",
        "kind": spec.contract.kind,
        "model_config": payload["model_config"],
        "train_config": payload["train_config"],
        "best_epoch": payload["epoch"],
        "metrics": {"validation": metrics["val"], "test": metrics["test"]},
        "gates": [g.to_dict() for g in gates],
        "serving": {**asdict(spec.serving), "response_timeout_s": spec.serving.timeout_s},
        "schema": codec_for(spec.contract.kind).schema(spec.contract),
        # What monitoring compares live traffic with (handlers.monitoring, training.profile).
        "reference_profile": json.loads((export_dir(out_dir, runtime) / PROFILE).read_text()),
        "provenance": dict(spec.provenance),
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
    replay = {**json.loads((export_dir(out_dir, runtime) / REPLAY).read_text()), "version": version}
    return archive.build_archive(
        spec, served, card, store, version, archive_name=archive_name, model_name=card["name"], replay=replay
    )


def build(
    spec: ModelSpec,
    store: Path = MODEL_STORE,
    artifacts: Path = ARTIFACTS,
    config: TrainConfig | None = None,
    version: str = "1.0",
    force: bool = False,
    progress: bool = True,
    archive_name: str | None = None,
    runtime: str | None = None,
    weights: Path | None = None,
) -> tuple[Path, bool]:
    """Build `store/<archive_name><suffix>.mar`; returns (path, rebuilt). No archive if a gate fails.

    `archive_name` (default: the model's name) lets a second version live beside the first;
    `runtime` picks the export format (default: the shipped one), and every format shares one training run. `weights` (or
    a spec with no training) packages a model trained elsewhere: no training step, same gates.
    """
    weights = weights or (spec.weights() if spec.train is None and spec.weights else None)
    if weights is None and spec.train is None:
        raise WeightsError(f"{spec.name} declares no training and no weights: pass `--weights FILE`")
    cfg = None if weights else (config or spec.train)
    runtime = runtime or spec.formats[0]
    base = archive_name or spec.name
    out_dir = artifacts / base
    target = store / f"{served_name(spec, runtime, base)}.mar"
    stamp_path = out_dir / BUILD_STAMP
    stamp = json.loads(stamp_path.read_text()) if stamp_path.exists() and not force else {}
    origin = weights_digest(weights) if weights else asdict(cfg)
    trained = fingerprint(train_sources(spec), spec.name, origin)
    archived = fingerprint(
        archive_sources(spec), trained, target.name, version, runtime, asdict(spec.serving), spec.contract
    )
    if stamp.get("archives", {}).get(runtime) == archived and signing.problem(target, signing.trusted_keys()) is None:
        return target, False  # up to date, and still exactly what was signed
    if stamp.get("trained") != trained:
        stamp_path.unlink(missing_ok=True)  # the checkpoint on disk is about to change
        if weights:
            adopt(spec, out_dir, weights)
        else:
            train(spec, out_dir, cfg, progress=progress)
        stamp = {"trained": trained}
        write_json(stamp_path, stamp)
    _, gates = export_and_gate(spec, out_dir, runtime)
    path = archive_export(spec, out_dir, runtime, gates, store, version, archive_name=target.stem)
    # The name this runtime had when another runtime was shipped (digits-onnx.mar, once digits
    # ships ONNX): a stale copy would be served beside it.
    for stale in (store / f"{base}-{runtime}.mar", store / f"{base}-{runtime}.mar.sig"):
        if stale.name.removesuffix(".sig") != target.name:
            stale.unlink(missing_ok=True)
    stamp["archives"] = {**stamp.get("archives", {}), runtime: archived}
    write_json(stamp_path, stamp)
    return path, True
