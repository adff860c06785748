"""DiabetesRegressor: an MLP on scikit-learn's 10 diabetes features, scaling built in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DiabetesConfig:
    num_features: int = 10  # age, sex, bmi, bp, s1..s6 (handlers.diabetes_codec)
    hidden: int = 32
    # 442 samples: a small net with dropout, otherwise it memorises the training split.
    dropout: float = 0.1


class DiabetesRegressor(nn.Module):
    """Standardise raw features -> MLP -> de-standardise the target.

    The feature and target statistics are buffers fitted on the training split, so they
    travel inside the exported model and clients send raw feature values.
    """

    def __init__(self, config: DiabetesConfig | None = None) -> None:
        super().__init__()
        c = config or DiabetesConfig()
        self.register_buffer("feature_mean", torch.zeros(c.num_features))
        self.register_buffer("feature_std", torch.ones(c.num_features))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.net = nn.Sequential(
            nn.Linear(c.num_features, c.hidden),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.hidden, 1),
        )

    def fit_scaling(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Store the training split's statistics (call once, before training)."""
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-8))
        self.target_mean.copy_(targets.mean())
        self.target_std.copy_(targets.std().clamp_min(1e-8))

    def forward_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """Prediction in standardised target units: what the loss is computed on."""
        return self.net((x - self.feature_mean) / self.feature_std).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_scaled(x) * self.target_std + self.target_mean
