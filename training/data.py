"""Datasets that ship with scikit-learn (no download), split train / val / test by seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import train_test_split

from handlers.digits_codec import to_model_pixels


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    """train: fitted on; val: early stopping and parity; test: held out for the quality gate."""

    train: Split
    val: Split
    test: Split


def _split(x: np.ndarray, y: np.ndarray, seed: int, stratify: bool, y_dtype: torch.dtype) -> Splits:
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


def digits_splits(seed: int) -> Splits:
    """load_digits' 8x8 images (0..16), framed as 1x28x28 MNIST-style pixels in [0, 1]."""
    data = load_digits()
    images = np.stack([to_model_pixels(img / 16.0) for img in data.images])[:, None]
    return _split(images, data.target, seed, stratify=True, y_dtype=torch.long)


def diabetes_splits(seed: int) -> Splits:
    """load_diabetes with raw (unscaled) features: the model standardises them itself."""
    x, y = load_diabetes(return_X_y=True, scaled=False)
    return _split(x, y, seed, stratify=False, y_dtype=torch.float32)
