"""Image kind: an image classifier's request -> (channels, side, side) model pixels -> its top-k answer.

Accepted: a PNG, JPEG or WebP body (or multipart field), {"image": "<base64>"}, {"pixels": [...]}
of the contract's pixel shape, or an Open Inference Protocol tensor [k, *pixel shape]; pixels
in [0, 1]. Images are decoded at a bounded cost (handlers.image_decode), grayscale or RGB as
the model takes (the other is converted), made model pixels by the contract's `preprocess`,
then normalised by its mean and std. JSON requests may ask for "top_k" labels.
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
from handlers.image_decode import decode_colour, decode_gray
from handlers.oip import decode_v2, is_v2_request

IMAGE_MEDIA = ("image/png", "image/jpeg", "image/webp", "application/octet-stream", "multipart/form-data")
ACCEPTED_MEDIA = (*IMAGE_MEDIA, "application/json")
# A forward pass's work grows with the model pixels of its images (decoding has its own limits).
COST_UNIT = "pixels"


def model_pixels(gray: np.ndarray, contract: ImageContract) -> np.ndarray:
    """Decoded grayscale -> (side, side) model pixels, by the contract's preprocessing."""
    if contract.preprocess == "digit":
        return to_model_pixels(gray)
    image = Image.fromarray(np.asarray(gray, np.float32), mode="F")
    return np.asarray(_resized(image, contract), np.float32)


def colour_pixels(image: Image.Image, contract: ImageContract) -> np.ndarray:
    """A decoded RGB image -> (3, side, side) pixels in [0, 1], by the contract's preprocessing.

    center_crop resizes only the box that the crop keeps, in one antialiased resampling (the
    same pixels as resizing the whole image, then cropping, up to rounding at the edges).
    """
    return (np.asarray(_resized(image, contract), np.float32) / 255.0).transpose(2, 0, 1)


def _resized(image: Image.Image, contract: ImageContract) -> Image.Image:
    """side x side by "resize" (the whole image) or "center_crop" (the crop box only)."""
    box = _crop_box(image.size, contract) if contract.preprocess == "center_crop" else None
    return image.resize((contract.side, contract.side), Image.Resampling.BILINEAR, box=box)


def _crop_box(size: tuple[int, int], contract: ImageContract) -> tuple[float, float, float, float]:
    """The central square of the image that becomes side x side once its shorter side is `resize`."""
    width, height = size
    crop = min(width, height) * contract.side / contract.resize
    left, top = (width - crop) / 2, (height - crop) / 2
    return (left, top, left + crop, top + crop)


def normalised(rows: np.ndarray, contract: ImageContract) -> np.ndarray:
    """Rows (k, *pixel_shape) in [0, 1] -> the model's input (k, channels, side, side): the
    channel axis added for grayscale, then per channel (x - mean) / std when the contract sets them."""
    pixels = rows[:, None] if contract.channels == 1 else rows
    if not contract.mean:
        return pixels.astype(np.float32, copy=False)
    mean = np.asarray(contract.mean, np.float32)[:, None, None]
    std = np.asarray(contract.std, np.float32)[:, None, None]
    return ((pixels - mean) / std).astype(np.float32, copy=False)


def decode_image(raw: bytes, contract: ImageContract, limits: Limits) -> np.ndarray:
    """PNG, JPEG or WebP bytes -> pixels of the contract's pixel shape in [0, 1], at a cost bounded
    before decoding (image_decode)."""
    check_size(raw, limits)
    if contract.channels == 3:
        return colour_pixels(decode_colour(raw, limits, contract.resize or contract.side), contract)
    gray = decode_gray(raw, limits)
    if contract.preprocess == "digit" and float(gray.max() - gray.min()) < INK_THRESHOLD:
        raise RequestError(
            422, "no_digit", "The image has no ink (it is one flat shade); send an image of the subject."
        )
    return model_pixels(gray, contract)


def decode_request(payload: Payload, contract: ImageContract, limits: Limits) -> Decoded:
    """One request -> Decoded rows (k, channels, side, side): an image body, base64, pixels or a v2 tensor."""
    shape = contract.pixel_shape
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
        return _single(decode_image(bytes(value), contract, limits), contract)
    doc = oip.split_binary(value, payload.binary_header, limits)
    if is_v2_request(doc):
        rows = _v2_pixels(doc, contract, limits)
        return Decoded(
            normalised(rows, contract), "v2", oip.request_id(doc), length=contract.side**2,
            binary_outputs=oip.binary_outputs(doc),
        )  # fmt: skip
    top_k = _top_k(doc, contract)
    if isinstance(doc, dict) and "image" in doc:
        if not isinstance(doc["image"], str):
            raise RequestError(400, "wrong_type", '"image" must be a base64 string of a PNG, JPEG or WebP.')
        try:
            raw = base64.b64decode(doc["image"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise RequestError(400, "invalid_base64", f'"image" is not valid base64: {e}.') from e
        return _single(decode_image(raw, contract, limits), contract, top_k)
    if isinstance(doc, dict) and "pixels" in doc:
        pixels = _pixels(doc["pixels"], shape)
        _check_range(pixels, '"pixels"')
        return _single(pixels, contract, top_k)
    raise RequestError(
        400,
        "unsupported_input",
        f'Send a PNG, JPEG or WebP body, {{"image": "<base64>"}}, {{"pixels": {_nested(shape)}}} '
        f"or an Open Inference Protocol tensor of shape {[-1, *shape]}.",
    )


def _v2_pixels(doc: dict[str, Any], contract: ImageContract, limits: Limits) -> np.ndarray:
    """The protocol's tensor as rows (k, *pixel_shape) in [0, 1]: UINT8 is 0..255, any other
    numeric type 0..1; colour as [k, 3, H, W] or, channels last, [k, H, W, 3]."""
    shape, channels_last = contract.pixel_shape, False
    tensor = doc["inputs"][0] if isinstance(doc.get("inputs"), list) and doc["inputs"] else {}
    declared = tensor.get("shape") if isinstance(tensor, dict) else None
    if (
        contract.channels == 3
        and isinstance(declared, list)
        and declared[-1:] == [3]
        and declared[-3:-1] == [contract.side] * 2
    ):
        shape, channels_last = (contract.side, contract.side, 3), True
    rows = decode_v2(doc, shape, limits)
    if tensor.get("datatype") == "UINT8":
        if rows.min() < 0 or rows.max() > 255 or not np.array_equal(rows, np.round(rows)):
            raise RequestError(400, "out_of_range", "UINT8 data values must be whole numbers in 0..255.")
        rows = rows / np.float32(255.0)
    else:
        _check_range(rows, "data")
    return np.ascontiguousarray(rows.transpose(0, 3, 1, 2)) if channels_last else rows


def _pixels(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """JSON "pixels" nested as `shape` (rows of numbers last), checked row by row."""
    if len(shape) == 1:
        return np.array(finite_numbers(value, "pixels", shape[0]), np.float32)
    if not isinstance(value, list) or len(value) != shape[0]:
        raise RequestError(400, "wrong_shape", f'"pixels" must be nested as {_nested(shape)}, numbers in [0, 1].')
    return np.stack([_pixels(v, shape[1:]) for v in value])


def _nested(shape: tuple[int, ...]) -> str:
    return "[" * len(shape) + " x ".join(map(str, shape)) + " numbers" + "]" * len(shape)


def _top_k(doc: Any, contract: ImageContract) -> int:
    """A JSON request's "top_k" (1..max_top_k), or the contract's."""
    if not isinstance(doc, dict) or "top_k" not in doc:
        return contract.top_k
    k = doc["top_k"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= contract.max_top_k:
        raise RequestError(
            400, "invalid_top_k", f'"top_k" must be a whole number from 1 to {contract.max_top_k}; got {str(k)[:40]}.'
        )
    return k


def _single(pixels: np.ndarray, contract: ImageContract, top_k: int = 0) -> Decoded:
    return Decoded(normalised(pixels[None], contract), "single", length=contract.side**2, top_k=top_k or contract.top_k)


def _check_range(pixels: np.ndarray, what: str) -> None:
    if pixels.min() < 0.0 or pixels.max() > 1.0:
        raise RequestError(400, "out_of_range", f"{what} values must lie in [0, 1].")


def encode_outputs(logits: np.ndarray, decoded: Decoded, contract: ImageContract, model_name: str) -> Any:
    """The (k, C) logits of one request, in the form the request came in."""
    if decoded.form == "v2":
        return oip.response(model_name, classification.v2_outputs(logits, contract.labels), decoded.request_id)
    out = [classification.answer(row, contract.labels, decoded.top_k or contract.top_k) for row in logits]
    return out[0] if decoded.form == "single" else out


def input_signals(rows: np.ndarray, contract: ImageContract) -> dict[str, np.ndarray]:
    """Per image, from its model rows (k, channels, side, side) back in [0, 1]: mean intensity,
    contrast (the pixels' spread), the share of bright pixels (a digit's ink) and, in colour,
    saturation. Large images are read on a grid of about 32 x 32 pixels: the statistics of a
    224 x 224 photo barely move, and monitoring stays a small part of the worker's time."""
    step = max(1, contract.side // 32)
    pixels = rows[:, :, ::step, ::step]
    if contract.mean:
        mean = np.asarray(contract.mean, np.float32)[:, None, None]
        pixels = pixels * np.asarray(contract.std, np.float32)[:, None, None] + mean
    gray = (pixels[:, 0] if contract.channels == 1 else pixels.mean(1)).reshape(len(rows), -1)
    n = gray.shape[1]
    mean = gray.sum(1) / n
    # Sums rather than np.mean / np.std: the same figures at a fraction of NumPy's per-call cost.
    spread = np.sqrt(np.maximum(np.einsum("ij,ij->i", gray, gray) / n - mean**2, 0.0))
    signals = {"mean_intensity": mean, "contrast": spread, "bright_share": (gray > 0.5).sum(1) / n}
    if contract.channels == 3:
        signals["saturation"] = (pixels.max(1) - pixels.min(1)).reshape(len(rows), -1).mean(1)
    return signals


def replay_inputs(rows: np.ndarray, contract: ImageContract) -> list[dict[str, Any]]:
    """The protocol's input that decodes back to `rows` (k, channels, side, side): the pixels
    in [0, 1] before normalisation (the archive's replay sample, tsforge verify)."""
    pixels = rows
    if contract.mean:
        mean = np.asarray(contract.mean, np.float32)[:, None, None]
        pixels = rows * np.asarray(contract.std, np.float32)[:, None, None] + mean
    pixels = np.clip(pixels[:, 0] if contract.channels == 1 else pixels, 0.0, 1.0).astype(np.float32)
    return [{"name": "pixels", "shape": list(pixels.shape), "datatype": "FP32", "data": pixels}]


def oip_metadata(contract: ImageContract) -> dict[str, list[dict[str, Any]]]:
    """The tensors `decode_request` and `encode_outputs` take and give in the protocol's form."""
    return {
        "inputs": [oip.tensor_metadata("pixels", "FP32", [-1, *contract.pixel_shape])],
        "outputs": classification.v2_metadata(contract.labels),
    }


def preprocessing(contract: ImageContract) -> str:
    """What the codec does to an image before the model sees it, in words (the describe call)."""
    side, colour = contract.side, "RGB" if contract.channels == 3 else "grayscale"
    steps = {
        "digit": "the ink cut out and framed as MNIST",
        "resize": f"resized to {side}x{side}",
        "center_crop": f"the shorter side resized to {contract.resize}, then the central {side}x{side}",
    }[contract.preprocess]
    norm = (
        f"; then (x - mean) / std per channel, mean {list(contract.mean)}, std {list(contract.std)}"
        if contract.mean
        else ""
    )
    return f"read as {colour} in [0, 1] ({'grayscale is converted' if contract.channels == 3 else 'colour is converted'}); {steps}{norm}"


def schema(contract: ImageContract) -> dict[str, Any]:
    """The input and output contract that the management API's describe call shows."""
    shape = contract.pixel_shape
    return {
        "input": {
            "image/png, image/jpeg, image/webp (body or multipart field)": "any size or mode, read as a viewer shows it",
            "application/json": [
                '{"image": "<base64 PNG/JPEG/WebP>", "top_k": k (optional)}',
                f'{{"pixels": {_nested(shape)} in 0..1, "top_k": k (optional)}}',
            ],
            "open_inference_protocol": f"one tensor, shape {[-1, *shape]}"
            + (f" or {[-1, contract.side, contract.side, 3]}" if contract.channels == 3 else "")
            + ", UINT8 values in 0..255 or another numeric datatype in 0..1",
            "preprocessing": preprocessing(contract),
        },
        "output": classification.schema(contract.labels, contract.top_k, contract.max_top_k),
    }
