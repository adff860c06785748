"""wine: which of three cultivars a wine comes from, from 13 chemical measurements.

scikit-learn's `load_wine` (178 wines), class names `class_0`..`class_2` as the dataset has
them. Standardisation is inside the network, so clients send raw measurements:

    tsforge build --model wine && tsforge predict --model wine examples/wine.json
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from handlers.contracts import TabularContract
from training.data import Splits, split_arrays
from training.specs import Gate, ModelSpec, ServingConfig, TrainConfig

# The contract, in load_wine's column order: clients name these. `splits` checks the dataset
# still has them, so the declaration cannot drift from the data (read only when training).
FEATURES = (
    "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
    "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315_of_diluted_wines", "proline",
)  # fmt: skip
CLASSES = ("class_0", "class_1", "class_2")


@dataclass
class WineConfig:
    num_features: int = 13
    hidden: int = 32
    num_classes: int = 3
    dropout: float = 0.1  # 124 training rows: a little dropout keeps the MLP from memorising


class WineClassifier(nn.Module):
    """Standardise raw features (statistics of the training split, kept as buffers) -> MLP -> logits."""

    def __init__(self, config: WineConfig | None = None) -> None:
        super().__init__()
        c = config or WineConfig()
        self.register_buffer("mean", torch.zeros(c.num_features))
        self.register_buffer("std", torch.ones(c.num_features))
        self.net = nn.Sequential(
            nn.Linear(c.num_features, c.hidden), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.hidden, c.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def splits(seed: int) -> Splits:
    from sklearn.datasets import load_wine  # only when training: the registry imports every model

    data = load_wine()
    if tuple(data.feature_names) != FEATURES or tuple(map(str, data.target_names)) != CLASSES:
        raise ValueError("scikit-learn's load_wine no longer has the columns and classes the contract declares")
    return split_arrays(data.data, data.target, seed, stratify=True, y_dtype=torch.long)


def fit_scaling(model: WineClassifier, train) -> None:
    model.mean.copy_(train.x.mean(0))
    model.std.copy_(train.x.std(0).clamp_min(1e-8))


SPEC = ModelSpec(
    name="wine",
    contract=TabularContract(features=FEATURES, labels=CLASSES),
    model_config=WineConfig,
    build=WineClassifier,
    splits=splits,
    prepare=fit_scaling,
    train=TrainConfig(epochs=200, batch_size=16, lr=3e-3, weight_decay=1e-3, patience=20),
    gate=Gate("accuracy", 0.90),
    # Budgets in rows, one full call (8 requests of max_rows 64): 512 rows take 0.34 ms on one
    # thread here, so they bind nothing; the JSON limits bound the decoding.
    serving=ServingConfig(
        batch_size=8,
        max_batch_delay_ms=1,
        workers=1,
        threads_per_worker=1,
        limits=(("max_pass_cost", 512), ("max_call_cost", 512)),
        pass_seconds=0.0004,
    ),
    example="wine.json",
)
