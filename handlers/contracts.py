"""What a model takes and answers, per input kind: written by its declaration into the archive.

A model module (models/<name>.py) declares one of these; the archive step writes it into
model-config.yaml under `handler: {kind, contract}`; the one handler entry point reads it
back and hands it to the kind's codec. Plain data: no torch, no Pillow.
"""

from __future__ import annotations

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


CONTRACTS = {c.kind: c for c in (ImageContract, TabularContract)}
Contract = ImageContract | TabularContract


def to_yaml(contract: Contract) -> dict[str, Any]:
    """{kind, contract} for model-config.yaml's `handler:` section (tuples as lists)."""
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(contract).items()}
    return {"kind": contract.kind, "contract": fields}


def from_yaml(settings: dict[str, Any]) -> Contract:
    cls = CONTRACTS[settings["kind"]]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in settings["contract"].items()}
    return cls(**fields)
