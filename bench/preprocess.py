"""The digits preprocessing before and after issue #16, timed in one process on the same bodies.

`reference_decode` is the preprocessing as it was before #16 (handlers/image_decode.py,
digit_transform.py and image_codec.decode_image at a9de146), frozen here for comparison
only: nothing serves it, and it must not be edited. `current_decode` is what the handler runs
now (image_codec.decode_image). tests/test_digits_preprocess.py pins the two to the same
pixels; `measure` times them on the same batch of real MNIST bodies. One difference is
deliberate: a PNG or JPEG with a second, smaller size header (IHDR, SOF) after its image is
now judged by the largest it declares, where the reference judged it by the last one.

    .venv/bin/python -c "from bench.preprocess import measure; print(measure(5))"
"""

from __future__ import annotations

import io
import struct
import time

import numpy as np
from PIL import Image, ImageOps

from handlers.codec import Limits, RequestError, check_size
from handlers.codecs import image as image_codec
from models.registry import SPECS
from tsforge.paths import EXAMPLES

BATCH = 8  # the shipped digits batch size
# The batch: eight of the real MNIST example PNGs (28x28, 8-bit grayscale, as clients send).
BODIES = tuple((EXAMPLES / f"mnist-{i}.png").read_bytes() for i in range(BATCH))
# Rounds of (reference, current) or (current, reference), alternating, so drift in a shared
# machine's load falls on both alike.
ROUNDS = 10


def current_decode(raw: bytes, limits: Limits) -> np.ndarray:
    """Today's preprocessing of one digits image body: (28, 28) float32 model pixels."""
    return image_codec.decode_image(raw, SPECS["digits"].contract, limits)


# ---- Frozen pre-#16 reference: a9de146's code, unchanged but for shortened docstrings ----

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
WORK_SIDE = 512
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}
_SOS = 0xDA
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
SIDE, BOX, SOURCE_SIDE, INK_THRESHOLD = 28, 20, 8, 0.15


def reference_decode(raw: bytes, limits: Limits) -> np.ndarray:
    """The pre-#16 image_codec.decode_image for the digits contract."""
    check_size(raw, limits)
    gray = _decode_gray(raw, limits)
    if float(gray.max() - gray.min()) < INK_THRESHOLD:
        raise RequestError(
            422, "no_digit", "The image has no ink (it is one flat shade); send an image of the subject."
        )
    return _to_model_pixels(gray)


def _sniff(raw: bytes) -> str:
    if raw.startswith(PNG_MAGIC):
        return "png"
    if raw.startswith(JPEG_MAGIC):
        return "jpeg"
    raise RequestError(415, "unsupported_image", "The body is not a PNG or JPEG image (checked by its first bytes).")


def _png_structure(raw: bytes, limits: Limits) -> tuple[str, int, int, int]:
    pos, count, width, height, raw_bpp, mode_bpp = len(PNG_MAGIC), 0, 0, 0, 0.0, 1
    while pos + 8 <= len(raw):
        length, kind = struct.unpack_from(">I4s", raw, pos)
        count += 1
        if count > limits.max_image_chunks:
            raise RequestError(
                413, "too_many_chunks", f"The PNG has more than {limits.max_image_chunks} chunks (max_image_chunks)."
            )
        if kind == b"IHDR" and length >= 13:
            width, height, depth, colour = struct.unpack_from(">IIBB", raw, pos + 8)
            channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
            raw_bpp = channels * depth / 8
            mode_bpp = 2 if (colour == 0 and depth == 16) else (1 if channels == 1 else 4)
        elif kind == b"tRNS":
            mode_bpp = 4
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not width:
        raise RequestError(400, "invalid_image", "The PNG has no valid IHDR header.")
    return "png", width, height, int(width * height * max(raw_bpp, mode_bpp))


def _jpeg_structure(raw: bytes, limits: Limits) -> tuple[str, int, int, int]:
    pos, scans, width, height, decoded = 2, 0, 0, 0, 0
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            pos = raw.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = raw[pos + 1]
        if marker == 0xFF or marker == 0x00 or marker in _STANDALONE:
            pos += 1 if marker == 0xFF else 2
            if marker == 0xD9:
                break
            continue
        (length,) = struct.unpack_from(">H", raw, pos + 2)
        if marker in _SOF and pos + 10 <= len(raw):
            height, width, components = struct.unpack_from(">HHB", raw, pos + 5)
            if marker in _PROGRESSIVE:
                decoded = width * height * components * 2
            else:
                decoded = width * height * 4 // _draft_scale(width, height) ** 2
        elif marker == _SOS:
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise RequestError(
                    413, "too_many_scans", f"The JPEG has more than {limits.max_jpeg_scans} scans (max_jpeg_scans)."
                )
        pos += 2 + length
    if not width:
        raise RequestError(400, "invalid_image", "The JPEG has no frame header.")
    return "jpeg", width, height, decoded


def _draft_scale(width: int, height: int) -> int:
    scale = 1
    while scale < 8 and max(width, height) // (scale * 2) >= WORK_SIDE:
        scale *= 2
    return scale


def _check_cost(fmt: str, width: int, height: int, decoded_bytes: int, limits: Limits) -> None:
    pixels = width * height
    if pixels > limits.max_image_pixels:
        raise RequestError(
            413,
            "image_too_large",
            f"The image is {width}x{height} = {pixels} pixels; the limit is {limits.max_image_pixels} (max_image_pixels).",
        )
    if decoded_bytes > limits.max_decoded_bytes:
        raise RequestError(
            413,
            "image_too_large",
            f"Decoding this {width}x{height} {fmt.upper()} needs {decoded_bytes} bytes; the limit is "
            f"{limits.max_decoded_bytes} (max_decoded_bytes). Send a smaller or 8-bit image.",
        )


def _decode_gray(raw: bytes, limits: Limits) -> np.ndarray:
    kind = _sniff(raw)
    try:
        structure = _png_structure(raw, limits) if kind == "png" else _jpeg_structure(raw, limits)
    except struct.error as e:
        raise RequestError(400, "invalid_image", f"The {kind.upper()} headers are truncated.") from e
    _check_cost(*structure, limits)
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if kind == "jpeg":
                scale = _draft_scale(*image.size)
                image.draft("L", (image.width // scale, image.height // scale))
            image.load()
            return _as_shown(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError) as e:
        raise RequestError(400, "invalid_image", f"The image could not be decoded: {e}.") from e


def _as_shown(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    elif image.has_transparency_data and "A" not in image.getbands():
        image = image.convert("RGBA")
    elif image.mode in ("1", "P"):
        image = image.convert("L")
    factor = -(-max(image.size) // WORK_SIDE)
    if factor > 1:
        image = image.reduce(factor)
    if "A" in image.getbands():
        values = np.asarray(image.convert("LA"), dtype=np.float32) / 255.0
        gray, alpha = values[..., 0], values[..., 1]
        drawn = float((gray * alpha).sum() / max(float(alpha.sum()), 1e-6))
        background = 0.0 if drawn > 0.5 else 1.0
        return gray * alpha + background * (1.0 - alpha)
    if image.mode not in ("L", "I", "F"):
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32) / (65535.0 if image.mode == "I" else 255.0)


def _to_model_pixels(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 0.5:
        gray = 1.0 - gray
    ink = np.argwhere(gray > INK_THRESHOLD)
    if len(ink) == 0:
        return np.zeros((SIDE, SIDE), dtype=np.float32)
    (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
    crop = Image.fromarray(gray[top:bottom, left:right], mode="F")
    coarse = crop.resize(_fit(crop.size, SOURCE_SIDE), Image.Resampling.BOX)
    w, h = _fit(crop.size, BOX)
    digit = np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    y, x = (SIDE - h) // 2, (SIDE - w) // 2
    out[y : y + h, x : x + w] = digit
    return np.clip(out, 0.0, 1.0)


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


# ---- The measurement ----


def _batch(decode, limits: Limits) -> np.ndarray:
    """One batch as the handler builds it: each body decoded, then one (8, 1, 28, 28) input."""
    return np.concatenate([decode(raw, limits)[None, None] for raw in BODIES])


def _images_per_s(decode, limits: Limits, seconds: float) -> tuple[int, float]:
    """(images, elapsed) for whole batches run until `seconds` have passed."""
    images, started = 0, time.perf_counter()
    while True:
        _batch(decode, limits)
        images += BATCH
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return images, elapsed


def measure(seconds: float) -> dict[str, float]:
    """Images per second of the reference and the current preprocessing, and their ratio.

    Both run on the same batch of eight MNIST PNG bodies in this process, `seconds` in all,
    in ROUNDS alternating turns; a turn's rate is its images over its own time. The ratio is
    current / reference over the whole run; ratio_min and ratio_max bound it over the rounds.
    """
    limits = Limits()
    if not np.allclose(_batch(reference_decode, limits), _batch(current_decode, limits), rtol=0, atol=1e-6):
        raise AssertionError("the current preprocessing no longer gives the reference's pixels")
    turn = seconds / (2 * ROUNDS)
    totals = {"reference": [0, 0.0], "current": [0, 0.0]}
    ratios = []
    for i in range(ROUNDS):
        order = ("reference", "current") if i % 2 == 0 else ("current", "reference")
        rates = {}
        for name in order:
            images, elapsed = _images_per_s(reference_decode if name == "reference" else current_decode, limits, turn)
            totals[name][0] += images
            totals[name][1] += elapsed
            rates[name] = images / elapsed
        ratios.append(rates["current"] / rates["reference"])
    reference = totals["reference"][0] / totals["reference"][1]
    current = totals["current"][0] / totals["current"][1]
    return {
        "reference_images_per_s": reference,
        "current_images_per_s": current,
        "ratio": current / reference,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "batch": BATCH,
        "seconds": seconds,
    }
