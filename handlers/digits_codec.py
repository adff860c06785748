"""Digits codec: request -> 28x28 pixels in [0, 1] (white on black) -> top-k answer.

`to_model_pixels` is also what training applies to scikit-learn's 8x8 digits, so a served
image goes through exactly the transform the model learned on.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from PIL import Image

from handlers import oip
from handlers.codec import (
    Decoded,
    Limits,
    Payload,
    RequestError,
    check_media_type,
    check_size,
    finite_numbers,
    parse_json,
)
from handlers.image_decode import decode_gray
from handlers.oip import decode_v2, is_v2_request

SIDE = 28
# MNIST fits each digit in a 20x20 box centred in the 28x28 frame.
BOX = 20
# scikit-learn's digits are 8x8: the resolution the model learns from.
SOURCE_SIDE = 8
INK_THRESHOLD = 0.15
TOP_K = 5
IMAGE_MEDIA = ("image/png", "image/jpeg", "application/octet-stream", "multipart/form-data")
ACCEPTED_MEDIA = (*IMAGE_MEDIA, "application/json")


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


def decode_image(raw: bytes, limits: Limits) -> np.ndarray:
    """PNG or JPEG bytes -> model pixels, at a cost bounded before decoding (image_decode)."""
    check_size(raw, limits)
    gray = decode_gray(raw, limits)
    if float(gray.max() - gray.min()) < INK_THRESHOLD:  # one flat shade: nothing is written
        raise RequestError(
            422, "no_digit", "The image has no ink (it is one flat shade); send an image of one handwritten digit."
        )
    return to_model_pixels(gray)


def decode_request(payload: Payload, limits: Limits) -> Decoded:
    """One request -> Decoded rows (k, 1, 28, 28): an image body, base64, pixels or a v2 tensor."""
    check_media_type(payload, ACCEPTED_MEDIA)
    value = payload.value
    declared_image = payload.media_type in IMAGE_MEDIA
    sniffed_json = isinstance(value, (bytes, bytearray)) and bytes(value[:1]) in (b"{", b"[")
    if isinstance(value, (bytes, bytearray)) and (
        declared_image or (payload.media_type != "application/json" and not sniffed_json)
    ):
        return _single(decode_image(bytes(value), limits))
    doc = parse_json(value, limits)
    if is_v2_request(doc):
        rows = decode_v2(doc, (SIDE, SIDE), limits)
        _check_range(rows, "data")
        return Decoded(rows[:, None], "v2", oip.request_id(doc))
    if isinstance(doc, dict) and "image" in doc:
        if not isinstance(doc["image"], str):
            raise RequestError(400, "wrong_type", '"image" must be a base64 string of a PNG or JPEG.')
        try:
            raw = base64.b64decode(doc["image"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise RequestError(400, "invalid_base64", f'"image" is not valid base64: {e}.') from e
        return _single(decode_image(raw, limits))
    if isinstance(doc, dict) and "pixels" in doc:
        rows = doc["pixels"]
        if not isinstance(rows, list) or len(rows) != SIDE:
            raise RequestError(400, "wrong_shape", f'"pixels" must be {SIDE} rows of {SIDE} numbers in [0, 1].')
        pixels = np.array([finite_numbers(r, f"pixels[{i}]", SIDE) for i, r in enumerate(rows)], np.float32)
        _check_range(pixels, '"pixels"')
        return _single(pixels)
    raise RequestError(
        400,
        "unsupported_input",
        'Send a PNG or JPEG body, {"image": "<base64>"}, {"pixels": [[28 x 28 numbers]]} '
        "or an Open Inference Protocol tensor of shape [k, 28, 28].",
    )


def _single(pixels: np.ndarray) -> Decoded:
    return Decoded(pixels[None, None], "single")


def _check_range(pixels: np.ndarray, what: str) -> None:
    if pixels.min() < 0.0 or pixels.max() > 1.0:
        raise RequestError(400, "out_of_range", f"{what} values must lie in [0, 1] (white digit on black).")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def encode_response(logits: np.ndarray, labels: list[str], top_k: int = TOP_K) -> dict[str, Any]:
    """Logits for one image -> {"label": int, "probabilities": {label: p}} (top k, descending)."""
    probs = softmax(logits)
    order = np.argsort(-probs)[:top_k]
    return {
        "label": int(labels[order[0]]),
        "probabilities": {labels[i]: float(probs[i]) for i in order},
    }


def encode_outputs(logits: np.ndarray, decoded: Decoded, labels: list[str], model_name: str) -> Any:
    """The (k, 10) logits of one request, in the form the request came in."""
    if decoded.form == "v2":
        probs = softmax(logits).astype(np.float32)
        label_ids = np.array([int(labels[i]) for i in probs.argmax(1)], dtype=np.int64)
        outputs = [oip.tensor("probabilities", probs), oip.tensor("label", label_ids, "INT64")]
        return oip.response(model_name, outputs, decoded.request_id)
    answers = [encode_response(row, labels) for row in logits]
    return answers[0] if decoded.form == "single" else answers
