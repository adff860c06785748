"""What a model takes and answers, per input kind: written by its declaration into the archive.

A model module (models/<name>.py) declares one of these; the archive step writes it into
model-config.yaml under `handler: {kind, contract}`; the one handler entry point reads it
back and hands it to the kind's codec. Plain data: no torch, no Pillow.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

# ImageNet's per-channel statistics of pixels in [0, 1]: what most photo classifiers were
# trained with, so the default normalisation of a colour model.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSING = ("digit", "resize", "center_crop")


@dataclass(frozen=True)
class ImageContract:
    """An image classifier on (channels, side, side) pixels: grayscale (1) or RGB (3).

    The codec turns any PNG, JPEG or WebP into what the model was trained on, by `preprocess`:
    - "digit": cut out the ink and frame it the way MNIST does (handlers.digit_transform);
    - "resize": scale the whole image to side x side;
    - "center_crop": scale the shorter side to `resize`, cut the central side x side, as
      ImageNet evaluation does (torchvision's Resize + CenterCrop).
    Then pixels in [0, 1] are normalised per channel, (x - mean) / std, when `mean` is set.
    """

    labels: tuple[str, ...]
    side: int = 28
    preprocess: str = "digit"
    channels: int = 1  # 1: grayscale (colour is converted); 3: RGB (grayscale is converted)
    resize: int = 0  # center_crop's shorter side before the crop; 0: side x 256 / 224, ImageNet's
    mean: tuple[float, ...] = ()  # per channel; () leaves pixels in [0, 1]
    std: tuple[float, ...] = ()
    top_k: int = 5  # labels a JSON answer lists, most likely first; a request may ask for 1..max_top_k
    kind = "image"

    def __post_init__(self) -> None:
        _as_names(self, "labels")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.side < 1 or self.top_k < 1:
            raise ValueError(f"side ({self.side}) and top_k ({self.top_k}) must be at least 1")
        if self.preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess {self.preprocess!r} is not one of {PREPROCESSING}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), not {self.channels}")
        if self.preprocess == "digit" and self.channels != 1:
            raise ValueError("the digit framing works on grayscale: channels must be 1")
        if len(self.mean) != len(self.std) or (self.mean and len(self.mean) != self.channels):
            raise ValueError(f"mean and std need one value per channel ({self.channels}), or none")
        if any(v <= 0 for v in self.std):
            raise ValueError("std values must be positive")
        if self.preprocess == "center_crop" and not self.resize:
            object.__setattr__(self, "resize", round(self.side * 256 / 224))
        if self.resize and self.resize < self.side:
            raise ValueError(f"resize ({self.resize}) must be at least side ({self.side})")

    @property
    def pixel_shape(self) -> tuple[int, ...]:
        """One image as a client sends raw pixels: (side, side), or (channels, side, side) in colour."""
        return (self.side, self.side) if self.channels == 1 else (self.channels, self.side, self.side)

    @property
    def max_top_k(self) -> int:
        return min(len(self.labels), 100)


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


@dataclass(frozen=True)
class AudioContract:
    """Audio in (WAV, FLAC, OGG or raw float samples), speech segments out: a voice-activity
    model on 16 kHz mono, one probability per `chunk` samples, each chunk's input prefixed with
    the previous chunk's last `context` samples. The segment settings are silero-vad's own
    defaults (get_speech_timestamps): a segment starts at a chunk >= threshold, ends after
    min_silence_ms below neg_threshold, is dropped under min_speech_ms, and is padded by
    speech_pad_ms each side."""

    sample_rate: int = 16000
    chunk: int = 512
    context: int = 64
    threshold: float = 0.5
    neg_threshold: float = 0.35  # silero: max(threshold - 0.15, 0.01)
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30
    labels = None  # segments, not a classification
    kind = "audio"

    def __post_init__(self) -> None:
        if not 0.0 < self.neg_threshold <= self.threshold < 1.0:
            raise ValueError(f"need 0 < neg_threshold ({self.neg_threshold}) <= threshold ({self.threshold}) < 1")
        if self.context >= self.chunk or min(self.chunk, self.sample_rate) < 1:
            raise ValueError(f"context ({self.context}) must be shorter than a chunk ({self.chunk})")


@dataclass(frozen=True)
class RecommendationContract:
    """Ids in (a known user, or the items someone has interacted with), the catalogue's top k
    items out. The model's row is (3, L): item indices padded with the catalogue's size, whether
    each is in the user's vector (the latest `window`), whether the answer excludes it; its output
    (2, max_k) is the best scores and their item indices, an excluded item scored MASKED_SCORE."""

    catalogue: str  # JSON: items in model order [id, title, training interactions], users' histories
    window: int = 50
    max_k: int = 100
    default_k: int = 10
    labels = None  # a ranking, not a classification
    kind = "recommendation"
    MASKED_SCORE = -1.0e9

    def __post_init__(self) -> None:
        if not 1 <= self.default_k <= self.max_k or self.window < 1:
            raise ValueError(f"need 1 <= default_k ({self.default_k}) <= max_k ({self.max_k}) and window >= 1")


CONTRACTS = {c.kind: c for c in (AudioContract, ImageContract, RecommendationContract, TabularContract, TextContract)}
Contract = AudioContract | ImageContract | RecommendationContract | TabularContract | TextContract
# Contract fields that name a file: the archive ships the file and records its base name.
FILE_FIELDS = ("tokenizer", "catalogue")


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
