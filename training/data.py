"""Splits: a model module's arrays, split train / val / test by seed (`split_arrays`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor | None  # None: inputs only (an embedding model's parity sentences)

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Splits:
    """train: fitted on; val: early stopping and parity; test: held out for the quality gate."""

    train: Split
    val: Split
    test: Split


def split_arrays(x: np.ndarray, y: np.ndarray, seed: int, stratify: bool, y_dtype: torch.dtype) -> Splits:
    """70 / 15 / 15, stratified by class for classifiers; float32 inputs, `y_dtype` targets."""
    # 70 / 15 / 15: the test split is never seen by early stopping, so the gate is honest.
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.3, random_state=seed, stratify=y if stratify else None
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest if stratify else None
    )

    def make(a: np.ndarray, b: np.ndarray) -> Split:
        return Split(torch.from_numpy(a.astype(np.float32)), torch.as_tensor(b, dtype=y_dtype))

    return Splits(make(x_train, y_train), make(x_val, y_val), make(x_test, y_test))
