"""DigitsCNN: the classic MNIST CNN shape on 1x28x28 input (white digit on black)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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
