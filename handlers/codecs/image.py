"""Image kind: an image classifier's request -> side x side pixels in [0, 1] -> its top-k answer.

Accepted: a PNG or JPEG body (or multipart field), {"image": "<base64>"}, {"pixels": [[side x
side numbers]]}, or an Open Inference Protocol tensor [k, side, side]. Images are decoded at a
bounded cost (handlers.image_decode), then made model pixels by the contract's `preprocess`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from PIL import Image

from handlers import classification, oip
from handlers.codec import (
    Decoded,
    Limits,
    Payload,
    RequestError,
    check_media_type,
    check_size,
    finite_numbers,
)
from handlers.contracts import ImageContract
from handlers.digit_transform import INK_THRESHOLD, to_model_pixels
from handlers.image_decode import decode_gray
from handlers.oip import decode_v2, is_v2_request

IMAGE_MEDIA = ("image/png", "image/jpeg", "application/octet-stream", "multipart/form-data")
ACCEPTED_MEDIA = (*IMAGE_MEDIA, "application/json")
# A forward pass's work grows with the model pixels of its images (decoding has its own limits).
COST_UNIT = "pixels"


def model_pixels(gray: np.ndarray, contract: ImageContract) -> np.ndarray:
    """Decoded grayscale -> (side, side) model pixels, by the contract's preprocessing."""
    if contract.preprocess == "digit":
        return to_model_pixels(gray)
    image = Image.fromarray(np.asarray(gray, np.float32), mode="F")
    return np.asarray(image.resize((contract.side, contract.side), Image.Resampling.BILINEAR), np.float32)


def decode_image(raw: bytes, contract: ImageContract, limits: Limits) -> np.ndarray:
    """PNG or JPEG bytes -> model pixels, at a cost bounded before decoding (image_decode)."""
    check_size(raw, limits)
    gray = decode_gray(raw, limits)
    if float(gray.max() - gray.min()) < INK_THRESHOLD:  # one flat shade: nothing is drawn
        raise RequestError(
            422, "no_digit", "The image has no ink (it is one flat shade); send an image of the subject."
        )
    return model_pixels(gray, contract)


def decode_request(payload: Payload, contract: ImageContract, limits: Limits) -> Decoded:
    """One request -> Decoded rows (k, 1, side, side): an image body, base64, pixels or a v2 tensor."""
    side = contract.side
    check_media_type(payload, ACCEPTED_MEDIA)
    value = payload.value
    declared_image = payload.media_type in IMAGE_MEDIA
    sniffed_json = isinstance(value, (bytes, bytearray)) and bytes(value[:1]) in (b"{", b"[")
    protocol = payload.binary_header is not None  # a JSON header and binary tensors
    if (
        isinstance(value, (bytes, bytearray))
        and not protocol
        and (declared_image or (payload.media_type != "application/json" and not sniffed_json))
    ):
        return _single(decode_image(bytes(value), contract, limits))
    doc = oip.split_binary(value, payload.binary_header, limits)
    if is_v2_request(doc):
        rows = decode_v2(doc, (side, side), limits)
        _check_range(rows, "data")
        return Decoded(
            rows[:, None], "v2", oip.request_id(doc), length=side * side, binary_outputs=oip.binary_outputs(doc)
        )
    if isinstance(doc, dict) and "image" in doc:
        if not isinstance(doc["image"], str):
            raise RequestError(400, "wrong_type", '"image" must be a base64 string of a PNG or JPEG.')
        try:
            raw = base64.b64decode(doc["image"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise RequestError(400, "invalid_base64", f'"image" is not valid base64: {e}.') from e
        return _single(decode_image(raw, contract, limits))
    if isinstance(doc, dict) and "pixels" in doc:
        rows = doc["pixels"]
        if not isinstance(rows, list) or len(rows) != side:
            raise RequestError(400, "wrong_shape", f'"pixels" must be {side} rows of {side} numbers in [0, 1].')
        pixels = np.array([finite_numbers(r, f"pixels[{i}]", side) for i, r in enumerate(rows)], np.float32)
        _check_range(pixels, '"pixels"')
        return _single(pixels)
    raise RequestError(
        400,
        "unsupported_input",
        f'Send a PNG or JPEG body, {{"image": "<base64>"}}, {{"pixels": [[{side} x {side} numbers]]}} '
        f"or an Open Inference Protocol tensor of shape [k, {side}, {side}].",
    )


def _single(pixels: np.ndarray) -> Decoded:
    return Decoded(pixels[None, None], "single", length=pixels.size)


def _check_range(pixels: np.ndarray, what: str) -> None:
    if pixels.min() < 0.0 or pixels.max() > 1.0:
        raise RequestError(400, "out_of_range", f"{what} values must lie in [0, 1] (white on black).")


def encode_outputs(logits: np.ndarray, decoded: Decoded, contract: ImageContract, model_name: str) -> Any:
    """The (k, C) logits of one request, in the form the request came in."""
    if decoded.form == "v2":
        return oip.response(model_name, classification.v2_outputs(logits, contract.labels), decoded.request_id)
    out = [classification.answer(row, contract.labels) for row in logits]
    return out[0] if decoded.form == "single" else out


def oip_metadata(contract: ImageContract) -> dict[str, list[dict[str, Any]]]:
    """The tensors `decode_request` and `encode_outputs` take and give in the protocol's form."""
    side = contract.side
    return {
        "inputs": [oip.tensor_metadata("pixels", "FP32", [-1, side, side])],
        "outputs": classification.v2_metadata(contract.labels),
    }


def schema(contract: ImageContract) -> dict[str, Any]:
    """The input and output contract that the management API's describe call shows."""
    side = contract.side
    framing = "the ink cut out and framed as MNIST" if contract.preprocess == "digit" else f"resized to {side}x{side}"
    return {
        "input": {
            "image/png, image/jpeg (body or multipart field)": f"any size or mode, read as a viewer shows it; {framing}",
            "application/json": [
                '{"image": "<base64 PNG/JPEG>"}',
                f'{{"pixels": [[{side} x {side} numbers in 0..1]]}}',
            ],
            "open_inference_protocol": f"one tensor, shape [k, {side}, {side}], numeric datatype, values in 0..1",
        },
        "output": classification.schema(contract.labels),
    }
