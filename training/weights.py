"""Package a model trained elsewhere: its weights in, checkpointed and scored like a trained one.

    tsforge build --model NAME --weights FILE   # a state_dict checkpoint (.pt/.pth) or .safetensors

The file must fit the network the model module builds (same keys and shapes, strict); the
metrics come from the module's validation and test splits, and the export gates run as for a
model trained here. A model whose module declares no training gets its file from `weights`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from training.errors import WeightsError
from training.files import write_json
from training.specs import ModelSpec
from training.train import CHECKPOINT, METRICS, evaluate, save_checkpoint


def weights_digest(path: Path) -> str:
    """SHA-256 of the file: a new file is a new build, the same file is not rebuilt."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive: a zip with the scripted code beside its constants."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("/constants.pkl") for name in z.namelist())


def load_state_dict(path: Path, pinned_script: Callable[[Path], bool] = lambda path: False) -> dict[str, torch.Tensor]:
    """Tensors by name from safetensors, a bare state_dict, a checkpoint holding one, or a
    TorchScript file that `pinned_script` accepts (loading TorchScript runs its code, so only a
    model's own pinned file is read that way; everything else loads with weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    script = _is_torchscript(path)
    if script and not pinned_script(path):
        raise WeightsError(
            f"{path} is a TorchScript file, which runs code when it loads: only a model's pinned file is read "
            "that way. Save its state_dict (torch.save(module.state_dict(), 'weights.pt')) and pass that."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if script:  # a scripted network's parameters (silero-vad ships one)
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and header errors: all mean "not a weights file"
        raise WeightsError(f"{path} is not a readable state_dict or safetensors file ({type(e).__name__}: {e})") from e
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise WeightsError(f"{path} holds no state_dict (a mapping of tensor names to tensors)")
    return payload


def adopt(spec: ModelSpec, out_dir: Path, weights: Path) -> dict[str, dict]:
    """Load `weights` into the spec's network, score it, write checkpoint.pt and metrics.json."""
    model_config = spec.model_config()
    model = spec.build(model_config)
    try:
        pinned = lambda path: spec.weights is not None and weights_digest(path) == weights_digest(spec.weights())  # noqa: E731
        model.load_state_dict(spec.adapt_weights(load_state_dict(weights, pinned)), strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise WeightsError(f"{weights} does not fit the {spec.name} network: {first}") from e
    splits = spec.splits(spec.seed)
    metrics = {"val": evaluate(model, spec, splits.val), "test": evaluate(model, spec, splits.test)}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_dir / CHECKPOINT, spec, model_config, None, model, 0)
    write_json(out_dir / METRICS, {"best_epoch": None, **metrics, "history": [], "weights": str(weights)})
    return metrics
