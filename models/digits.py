"""digits: handwritten digits 0-9, the classic MNIST CNN on 1x28x28 white-on-black pixels.

Trained on scikit-learn's `load_digits` (8x8 images, 1,797 of them, no download), framed as
MNIST by the same transform the served images go through (handlers.digit_transform), with
random affine augmentation: load_digits has few writers, real input many.

    tsforge build --model digits && tsforge predict --model digits examples/mnist-7.png
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from handlers.contracts import ImageContract
from handlers.digit_transform import SIDE, to_model_pixels
from training.data import Splits, split_arrays
from training.specs import Gate, ModelSpec, ServingConfig, TrainConfig

# MNIST's pixel statistics: inputs are scaled like MNIST so the net sees the same ranges.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@dataclass
class DigitsConfig:
    conv1_channels: int = 32
    conv2_channels: int = 64
    hidden: int = 128
    num_classes: int = 10
    # Dropout after pooling and before the last layer, as in pytorch/examples mnist.
    dropout_conv: float = 0.25
    dropout_fc: float = 0.5


class DigitsCNN(nn.Module):
    """conv 32 -> conv 64 -> max-pool -> dropout -> fc 128 -> fc 10.

    Takes pixels in [0, 1] (N, 1, 28, 28); normalisation happens inside, so the exported
    model and its clients never need to know MNIST's mean and std. Returns logits.
    """

    def __init__(self, config: DigitsConfig | None = None) -> None:
        super().__init__()
        c = config or DigitsConfig()
        self.conv1 = nn.Conv2d(1, c.conv1_channels, 3)
        self.conv2 = nn.Conv2d(c.conv1_channels, c.conv2_channels, 3)
        self.pool = nn.MaxPool2d(2)
        self.dropout_conv = nn.Dropout(c.dropout_conv)
        self.fc1 = nn.Linear(c.conv2_channels * 12 * 12, c.hidden)
        self.dropout_fc = nn.Dropout(c.dropout_fc)
        self.fc2 = nn.Linear(c.hidden, c.num_classes)
        # Attributes, not globals: TorchScript compiles attributes into the saved module.
        self.mean, self.std = MNIST_MEAN, MNIST_STD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.dropout_conv(self.pool(x))
        x = torch.flatten(x, 1)
        x = self.dropout_fc(torch.relu(self.fc1(x)))
        return self.fc2(x)


def splits(seed: int) -> Splits:
    """load_digits' 8x8 images (0..16), framed as 1x28x28 MNIST-style pixels in [0, 1]."""
    from sklearn.datasets import load_digits  # only when training: the registry imports every model

    data = load_digits()
    images = np.stack([to_model_pixels(img / 16.0) for img in data.images])[:, None]
    return split_arrays(images, data.target, seed, stratify=True, y_dtype=torch.long)


def random_affine(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small rotations, shears, scales and shifts of a training batch."""
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


SPEC = ModelSpec(
    name="digits",
    contract=ImageContract(labels=tuple(str(i) for i in range(10)), side=SIDE, preprocess="digit"),
    model_config=DigitsConfig,
    build=DigitsCNN,
    splits=splits,
    augment=random_affine,
    train=TrainConfig(epochs=40, batch_size=64, lr=1e-3, weight_decay=1e-4, patience=6),
    gate=Gate("accuracy", 0.97),
    # Chosen with `make bench` (README, "Benchmark"): two single-threaded workers beat one
    # two-threaded worker on 2 cores, and a 1 ms batch delay keeps concurrency-1 latency down
    # while load still fills batches (0 ms is worse: TorchServe then answers in ~110 ms).
    # Budgets in model pixels (28 x 28 per image). Measured on 2 cores, one thread, best of 5:
    # TorchScript 54 ms for 64 images and 101 ms for 128, ONNX Runtime 14 and 25 ms. So one
    # request of max_rows (64) images is one pass and a call spends at most ~100 ms; a batch of
    # eight 64-image requests (~430 ms) would otherwise hold a one-image request that long.
    serving=ServingConfig(
        batch_size=8,
        max_batch_delay_ms=1,
        workers=2,
        threads_per_worker=1,
        limits=(("max_pass_cost", 64 * SIDE * SIDE), ("max_call_cost", 128 * SIDE * SIDE)),
        pass_seconds=0.054,
    ),
    example="mnist-7.png",
)
