"""What differs between the models: architecture, data, loss, metrics, gate and serving settings.

Everything else (the training loop, export, gates, archive) is shared and reads a ModelSpec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from models.diabetes import DiabetesConfig, DiabetesRegressor
from models.digits import DigitsCNN, DigitsConfig
from training.data import Split, Splits, diabetes_splits, digits_splits


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    # Epochs without a better validation loss before training stops.
    patience: int
    seed: int = 42
    # Train on the first N training samples only (smoke tests); None means all.
    limit: int | None = None


@dataclass(frozen=True)
class ServingConfig:
    """Written to the archive's model-config.yaml; TorchServe and the handler read it."""

    batch_size: int
    max_batch_delay_ms: int
    workers: int
    threads_per_worker: int
    response_timeout_s: int = 30


@dataclass(frozen=True)
class ModelSpec:
    name: str
    classifier: bool
    model_config: Callable[[], Any]
    build: Callable[[Any], nn.Module]
    splits: Callable[[int], Splits]
    train: TrainConfig
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    metrics: Callable[[], torchmetrics.MetricCollection]
    gate_metric: str
    gate_threshold: float
    serving: ServingConfig
    handler: str
    prepare: Callable[[nn.Module, Split], None] = lambda model, train: None
    # Applied to each training batch only (never to validation, test or gates).
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Input and output contract, shown by the management API's describe call.
    schema: dict[str, Any] = field(default_factory=dict)


def _classification_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def _regression_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Loss in standardised target units keeps the gradient scale sane (targets are ~25..346).
    target = (y - model.target_mean) / model.target_std
    return F.mse_loss(model.forward_scaled(x), target)


def _random_affine(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small rotations, shears, scales and shifts: load_digits has few writers, real input many."""
    n = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) * (high - low) + low

    angle, shear, scale = uniform(-0.26, 0.26), uniform(-0.3, 0.3), uniform(0.85, 1.15)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.2  # up to +-2.8 px of 28
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear * cos, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def _digits_metrics() -> torchmetrics.MetricCollection:
    from torchmetrics import classification as C

    return torchmetrics.MetricCollection(
        {
            "accuracy": C.MulticlassAccuracy(num_classes=10, average="micro"),
            "precision_macro": C.MulticlassPrecision(num_classes=10, average="macro"),
            "recall_macro": C.MulticlassRecall(num_classes=10, average="macro"),
            "f1_macro": C.MulticlassF1Score(num_classes=10, average="macro"),
            "confusion_matrix": C.MulticlassConfusionMatrix(num_classes=10),
        }
    )


def _diabetes_metrics() -> torchmetrics.MetricCollection:
    return torchmetrics.MetricCollection(
        {
            "mse": torchmetrics.MeanSquaredError(),
            "mae": torchmetrics.MeanAbsoluteError(),
            "r2": torchmetrics.R2Score(),
        }
    )


DIGITS = ModelSpec(
    name="digits",
    classifier=True,
    model_config=DigitsConfig,
    build=DigitsCNN,
    splits=digits_splits,
    train=TrainConfig(epochs=40, batch_size=64, lr=1e-3, weight_decay=1e-4, patience=6),
    loss=_classification_loss,
    metrics=_digits_metrics,
    gate_metric="accuracy",
    gate_threshold=0.97,
    # Chosen with `make bench` (README, "Benchmark"): two single-threaded workers beat one
    # two-threaded worker on 2 cores, and a 1 ms batch delay keeps concurrency-1 latency down
    # while load still fills batches (0 ms is worse: TorchServe then answers in ~110 ms).
    serving=ServingConfig(batch_size=8, max_batch_delay_ms=1, workers=2, threads_per_worker=1),
    handler="digits_handler.py",
    augment=_random_affine,
    extra={"labels": [str(i) for i in range(10)]},
    schema={
        "input": {
            "image/png, image/jpeg (body or multipart field)": "any size or mode; light backgrounds inverted",
            "application/json": ['{"image": "<base64 PNG/JPEG>"}', '{"pixels": [[28 x 28 numbers in 0..1]]}'],
            "open_inference_protocol": "one tensor, shape [k, 28, 28], numeric datatype, values in 0..1",
        },
        "output": {
            "json": '{"label": int, "probabilities": {label: p}} (top 5)',
            "open_inference_protocol": ["probabilities [k, 10] FP32", "label [k] INT64"],
        },
    },
)

DIABETES = ModelSpec(
    name="diabetes",
    classifier=False,
    model_config=DiabetesConfig,
    build=DiabetesRegressor,
    splits=diabetes_splits,
    train=TrainConfig(epochs=300, batch_size=32, lr=1e-3, weight_decay=1e-2, patience=20),
    loss=_regression_loss,
    metrics=_diabetes_metrics,
    gate_metric="r2",
    gate_threshold=0.40,
    serving=ServingConfig(batch_size=8, max_batch_delay_ms=1, workers=1, threads_per_worker=1),
    handler="diabetes_handler.py",
    prepare=lambda model, train: model.fit_scaling(train.x, train.y),
    schema={
        "input": {
            "application/json": [
                '{"features": [age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]} (raw values)',
                '{"age": ..., "sex": ..., ...} (all ten named)',
                "[row, row, ...] (each row either form)",
            ],
            "open_inference_protocol": "one tensor, shape [k, 10], numeric datatype",
        },
        "output": {
            "json": '{"prediction": float} (a list of them for a list of rows)',
            "open_inference_protocol": ["prediction [k] FP32"],
        },
    },
)

SPECS: dict[str, ModelSpec] = {s.name: s for s in (DIGITS, DIABETES)}


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise SystemExit(f"unknown model {name!r}: choose one of {', '.join(SPECS)}") from None
