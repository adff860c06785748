"""The default losses and torchmetrics collections of the two supervised tasks: what a model
trains on and is validated with when its module declares nothing of its own."""

from __future__ import annotations

import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F


def classification_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def regression_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(model(x), y)


def classification_metrics(num_classes: int) -> torchmetrics.MetricCollection:
    from torchmetrics import classification as C

    return torchmetrics.MetricCollection(
        {
            "accuracy": C.MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "precision_macro": C.MulticlassPrecision(num_classes=num_classes, average="macro"),
            "recall_macro": C.MulticlassRecall(num_classes=num_classes, average="macro"),
            "f1_macro": C.MulticlassF1Score(num_classes=num_classes, average="macro"),
            "confusion_matrix": C.MulticlassConfusionMatrix(num_classes=num_classes),
        }
    )


def regression_metrics() -> torchmetrics.MetricCollection:
    return torchmetrics.MetricCollection(
        {"mse": torchmetrics.MeanSquaredError(), "mae": torchmetrics.MeanAbsoluteError(), "r2": torchmetrics.R2Score()}
    )
