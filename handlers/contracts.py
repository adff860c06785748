"""What a model takes and answers, per input kind: written by its declaration into the archive.

A model module (models/<name>.py) declares one of these; the archive step writes it into
model-config.yaml under `handler: {kind, contract}`; the one handler entry point reads it
back and hands it to the kind's codec. Plain data: no torch, no Pillow.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ImageContract:
    """An image classifier on side x side grayscale pixels in [0, 1]."""

    labels: tuple[str, ...]
    side: int = 28
    # How a decoded image becomes model pixels: "digit" cuts out the ink and frames it the way
    # MNIST does (handlers.digit_transform); "resize" scales the whole image to side x side.
    preprocess: str = "digit"
    kind = "image"

    def __post_init__(self) -> None:
        _as_names(self, "labels")


@dataclass(frozen=True)
class TabularContract:
    """Named numeric features; regression (no labels) or classification over `labels`."""

    features: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    kind = "tabular"

    def __post_init__(self) -> None:
        _as_names(self, "features", "labels")


def _as_names(contract: object, *fields: str) -> None:
    """Names as a tuple of plain str, whatever sequence of str-likes (NumPy's included) came."""
    for field in fields:
        value = getattr(contract, field)
        if value is not None:
            object.__setattr__(contract, field, tuple(str(v) for v in value))


@dataclass(frozen=True)
class TextContract:
    """Texts in, one L2-normalised embedding per text out, tokenized in the worker."""

    tokenizer: str  # a tokenizers JSON file; in the archive it sits beside the model
    max_tokens: int = 256  # longer texts are truncated (and the answer says so)
    dims: int = 384
    labels = None  # an embedding, not a classification
    kind = "text"


CONTRACTS = {c.kind: c for c in (ImageContract, TabularContract, TextContract)}
Contract = ImageContract | TabularContract | TextContract
# Contract fields that name a file: the archive ships the file and records its base name.
FILE_FIELDS = ("tokenizer",)


def to_yaml(contract: Contract) -> dict[str, Any]:
    """{kind, contract} for model-config.yaml's `handler:` section (tuples as lists, files by
    base name: the archive ships them beside the model)."""
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(contract).items()}
    for name in FILE_FIELDS:
        if name in fields:
            fields[name] = os.path.basename(fields[name])
    return {"kind": contract.kind, "contract": fields}


def from_yaml(settings: dict[str, Any], model_dir: str = "") -> Contract:
    """The contract an archive declares; its files are found in `model_dir`."""
    cls = CONTRACTS[settings["kind"]]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in settings["contract"].items()}
    for name in FILE_FIELDS:
        if name in fields:
            fields[name] = os.path.join(model_dir, fields[name])
    return cls(**fields)
