"""A handwritten digit, any size -> 28x28 white-on-black pixels framed the way MNIST is.

Training applies it to scikit-learn's 8x8 digits and the image codec to served images, so a
served image goes through exactly the transform the model learned on. It is part of the
digits model's training fingerprint: changing it retrains digits.

Its output is pinned bit for bit to the pre-#16 version (tests/test_digits_preprocess.py):
the same Pillow resamplings on the same float32 values; only the NumPy work around them is
cheaper (a sort for the median, two projections for the bounding box, the clip written
straight into the frame).
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
    if _light_border(gray):  # dark ink on a light background: make it white on black
        gray = 1.0 - gray
    ink = gray > INK_THRESHOLD
    rows = np.logical_or.reduce(ink, axis=1)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    if not rows.any():
        return out
    (top, bottom), (left, right) = _span(rows), _span(np.logical_or.reduce(ink, axis=0))
    size = (right - left, bottom - top)
    crop = Image.frombytes("F", size, np.ascontiguousarray(gray[top:bottom, left:right]))
    # Through load_digits' own bottleneck first (8x8 cells of averaged ink), then up to the
    # 20x20 box: a served image reaches the net with the detail the net was trained on.
    coarse = crop.resize(_fit(size, SOURCE_SIDE), Image.Resampling.BOX)
    w, h = _fit(size, BOX)
    digit = np.frombuffer(coarse.resize((w, h), Image.Resampling.BILINEAR).tobytes(), np.float32)
    y, x = (SIDE - h) // 2, (SIDE - w) // 2
    np.clip(digit.reshape(h, w), 0.0, 1.0, out=out[y : y + h, x : x + w])
    return out


def _light_border(gray: np.ndarray) -> bool:
    """np.median(border) > 0.5, by one sort of the border (np.median costs ~10x more here)."""
    border = np.sort(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    half = len(border) // 2
    median = border[half] if len(border) % 2 else (border[half - 1] + border[half]) / 2  # float32, as np.median
    return bool(median > 0.5) and not np.isnan(border[-1])  # a NaN anywhere makes np.median NaN


def _span(mask: np.ndarray) -> tuple[int, int]:
    """The first and one past the last True of a 1-D mask that has one."""
    return int(mask.argmax()), len(mask) - int(mask[::-1].argmax())


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """(w, h) scaled so the longer edge is `side`, aspect kept."""
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
