"""Package an exported model into `model_store/<name>.mar` with torch-model-archiver.

The archive holds the exported file, TorchScript or ONNX (no model code: the worker needs
none, and the handler picks the runtime by the file's suffix), the one handler entry point
with the handler modules its input kind imports (and no others), model-config.yaml (serving
settings, the kind, the contract and the limits), the model card, the replay sample and the
Open Inference Protocol's model metadata (read by the frontend: frontend/*.java).
It is written to a temporary folder inside the store and renamed, so an interrupted build
never leaves a half-written `.mar` where TorchServe would load it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from handlers import contracts
from handlers.base import MODEL_CARD
from handlers.codecs import codec_file, codec_for
from training.replay import REPLAY
from training.specs import ModelSpec
from tsforge.packaging import signing
from tsforge.packaging.dependencies import local_imports
from tsforge.paths import HANDLERS

MODEL_CONFIG = "model-config.yaml"
HANDLER = HANDLERS / "handler.py"
# GET /v2/models/<name> answers this file's content (frontend/OpenInferenceProtocolRequestHandler.java).
OIP_METADATA = "oip-metadata.json"
# handlers.runtime picks ONNX Runtime for this suffix, TorchScript otherwise; the names are Triton's.
PLATFORMS = {".onnx": "onnxruntime_onnx"}
TORCHSCRIPT_PLATFORM = "pytorch_libtorch"


def oip_metadata(contract: contracts.Contract, serialized: Path) -> dict[str, Any]:
    """{"platform", "inputs", "outputs"}: the tensors from the contract by its codec, the
    platform from the runtime the handler will pick for `serialized`."""
    platform = PLATFORMS.get(Path(serialized).suffix, TORCHSCRIPT_PLATFORM)
    return {"platform": platform, **codec_for(contract.kind).oip_metadata(contract)}


def model_config_yaml(spec: ModelSpec) -> dict[str, Any]:
    """TorchServe's per-model settings plus a `handler:` section our BatchHandler reads."""
    s = spec.serving
    return {
        "minWorkers": s.workers,
        "maxWorkers": s.workers,
        "batchSize": s.batch_size,
        "maxBatchDelay": s.max_batch_delay_ms,
        "responseTimeout": s.timeout_s,
        "handler": {
            "threads": s.threads_per_worker,
            **contracts.to_yaml(spec.contract),
            "limits": dict(s.limits),
        },
    }


def handler_files(kind: str, entry: Path = HANDLER) -> list[Path]:
    """The handler modules an archive of `kind` runs: the entry point, the kind's codec, and
    what they import. The kind's codec is imported by name at run time, so it is named here."""
    return local_imports(entry, codec_file(kind))


def _stage(
    spec: ModelSpec, card: dict[str, Any], stage: Path, entry: Path, replay: dict[str, Any] | None, serialized: Path
) -> Path:
    """Lay out the archive's extra files; returns the folder to pass as --extra-files."""
    extra = stage / "extra"
    (extra / "handlers").mkdir(parents=True)
    for path in [HANDLERS / "__init__.py", *handler_files(spec.contract.kind, entry)]:
        if path.is_relative_to(HANDLERS):  # the entry point itself goes in as --handler
            target = extra / "handlers" / path.relative_to(HANDLERS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    spec.make_files()
    for field in contracts.FILE_FIELDS:  # files the contract names (a tokenizer) sit beside the model
        if hasattr(spec.contract, field):
            shutil.copy(getattr(spec.contract, field), extra / Path(getattr(spec.contract, field)).name)
    (extra / MODEL_CARD).write_text(json.dumps(card, indent=2))
    (extra / OIP_METADATA).write_text(json.dumps(oip_metadata(spec.contract, serialized)))
    if replay is not None:
        (extra / REPLAY).write_text(json.dumps(replay))
    (stage / MODEL_CONFIG).write_text(yaml.safe_dump(model_config_yaml(spec), sort_keys=False))
    return extra


def build_archive(
    spec: ModelSpec,
    serialized: Path,
    card: dict[str, Any],
    store: Path,
    version: str = "1.0",
    archive_name: str | None = None,
    model_name: str | None = None,
    handler: Path = HANDLER,
    replay: dict[str, Any] | None = None,
) -> Path:
    """Run torch-model-archiver and move the result into `store` atomically.

    The model is named `model_name` (default `spec.name`; `digits-torchscript` for a runtime the model does not ship)
    inside; `archive_name` only names the file, so a second version (digits-v2.mar, version
    2.0) registers as another version of `digits`. `handler` is the entry point (tests pass
    their own subclass of Handler). `replay` is the held-out sample `tsforge verify` replays
    (training.replay); an archive without one can be served but not verified live.
    """
    model_name = model_name or spec.name
    name = archive_name or model_name
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store, prefix=f".{name}-build-") as tmp:
        tmp_path = Path(tmp)
        extra = _stage(spec, card, tmp_path, handler, replay, serialized)
        cmd = [
            str(Path(sys.executable).with_name("torch-model-archiver")),
            "--model-name",
            model_name,
            "--version",
            version,
            "--serialized-file",
            str(serialized),
            "--handler",
            str(handler),
            "--extra-files",
            str(extra),
            "--config-file",
            str(tmp_path / MODEL_CONFIG),
            "--export-path",
            str(tmp_path),
        ]
        # The archiver works in tempfile.gettempdir()/<model name> and deletes it: a private
        # TMPDIR keeps two builds of the same model (a test run beside `make demo`) apart.
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
        if proc.returncode != 0:
            raise RuntimeError(
                f"torch-model-archiver failed for {model_name} (exit {proc.returncode}):\n{proc.stderr or proc.stdout}"
            )
        target = store / f"{name}.mar"
        os.replace(tmp_path / f"{model_name}.mar", target)
    # Signed once written: until the signature is there, verification refuses the archive.
    signing.sign(target)
    return target
