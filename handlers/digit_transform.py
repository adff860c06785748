"""A handwritten digit, any size -> 28x28 white-on-black pixels framed the way MNIST is.

Training applies it to scikit-learn's 8x8 digits and the image codec to served images, so a
served image goes through exactly the transform the model learned on. It is part of the
digits model's training fingerprint: changing it retrains digits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIDE = 28
# MNIST fits each digit in a 20x20 box centred in the 28x28 frame.
BOX = 20
# scikit-learn's digits are 8x8: the resolution the model learns from.
SOURCE_SIDE = 8
INK_THRESHOLD = 0.15


def to_model_pixels(gray: np.ndarray) -> np.ndarray:
    """Any-size grayscale in [0, 1] -> (28, 28) float32, white digit on black, MNIST framing."""
    gray = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:  # dark ink on a light background: make it white on black
        gray = 1.0 - gray
    ink = np.argwhere(gray > INK_THRESHOLD)
    if len(ink) == 0:
        return np.zeros((SIDE, SIDE), dtype=np.float32)
    (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
    crop = Image.fromarray(gray[top:bottom, left:right], mode="F")
    # Through load_digits' own bottleneck first (8x8 cells of averaged ink), then up to the
    # 20x20 box: a served image reaches the net with the detail the net was trained on.
    coarse = crop.resize(_fit(crop.size, SOURCE_SIDE), Image.Resampling.BOX)
    w, h = _fit(crop.size, BOX)
    digit = np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    y, x = (SIDE - h) // 2, (SIDE - w) // 2
    out[y : y + h, x : x + w] = digit
    return np.clip(out, 0.0, 1.0)


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """(w, h) scaled so the longer edge is `side`, aspect kept."""
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
