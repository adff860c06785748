"""Image bytes -> small grayscale or RGB pixels as a viewer shows them, at a cost bounded up front.

Everything that decides the cost is read from the file's headers before a pixel is decoded
(handlers.image_headers), and what would cost more than the limits allow is refused there
with a 4xx naming the limit. What is decoded is reduced in
C (JPEG draft mode decodes at 1/2 to 1/8 scale; Image.reduce box-averages) before any
float array is built, so the float work is the same for a 28x28 PNG and a 12 MP photo.

Shown as a viewer shows it: EXIF orientation applied, 16-bit samples scaled (not clipped),
first frame only; transparency composited onto the background that keeps the ink visible
(grayscale, for digits) or onto white (colour, for photos). A colour model's images are
reduced only as far as its shorter-side resize allows, so its centre crop keeps its detail.

The common request (a small 8-bit grayscale PNG of nothing but IHDR, IDAT and IEND, as MNIST
digits are) holds no orientation, transparency or frames, so once the same checks have passed
its image data is inflated directly, or given to Pillow's PNG decoder when its rows are
filtered (issue #16: Image.open's chunk parsing cost more than the pixels). Anything else, or
any such file that does not decode cleanly, is read by Image.open as before, so every answer
and refusal is Image.open's (tests/test_digits_preprocess.py compares them).
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps

from handlers.codec import Limits, RequestError
from handlers.image_headers import WORK_SIDE, Structure, draft_scale, read_structure

# Pillow's plugin for each sniffed kind: no other decoder is ever tried on a body.
_FORMATS = {"png": ("PNG",), "jpeg": ("JPEG",), "webp": ("WEBP",)}
# 8-bit sample -> float32 in [0, 1]: the same values as uint8 / 255.0 in float32, by one lookup.
_UNIT8 = np.arange(256, dtype=np.float32) / 255.0


def decode_gray(raw: bytes, limits: Limits) -> np.ndarray:
    """PNG, JPEG or WebP bytes -> float32 grayscale in [0, 1], long side <= WORK_SIDE, as a viewer shows it."""
    kind, structure = read_structure(raw, limits)
    if structure.gray8_idat and max(structure.width, structure.height) <= WORK_SIDE:
        gray = _plain_gray8(raw, structure)
        if gray is not None:
            return gray
    with _opened(raw, kind, "L", 0) as image:
        return _as_shown(image)


def decode_colour(raw: bytes, limits: Limits, short_side: int) -> Image.Image:
    """PNG, JPEG or WebP bytes -> an 8-bit RGB image as a viewer on a white page shows it, its
    short side reduced (in C) to no less than `short_side`: the model's resize before its crop.

    Grayscale is converted (three equal channels), 16-bit samples are scaled, transparency is
    composited onto white, EXIF orientation applied, first frame only: the same cost checks as
    `decode_gray`, before a pixel is decoded.
    """
    kind, _ = read_structure(raw, limits, short_side)
    with _opened(raw, kind, "RGB", short_side) as image:
        if image.mode.startswith("I;16"):
            image = image.convert("I")  # 32-bit, in C: Image.reduce takes it, and scales come after
        elif image.has_transparency_data and "A" not in image.getbands():
            image = image.convert("RGBA")  # a palette's or tRNS transparency, as an alpha band
        elif image.mode in ("1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("RGB")  # modes Image.reduce does not take, or not RGB
        factor = _reduction(image.size, short_side)
        if factor > 1:  # box-average in C while the image is large
            image = image.reduce(factor)
        if image.mode in ("I", "F"):
            image = _to_8bit(image)  # on the reduced image
        if "A" in image.getbands():
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return image.convert("RGB")


@contextlib.contextmanager
def _opened(raw: bytes, kind: str, draft_mode: str, short_side: int) -> Iterator[Image.Image]:
    """The first frame, decoded (a JPEG at its draft scale) and upright; any decoding error
    is the request's 400."""
    try:
        with Image.open(io.BytesIO(raw), formats=_FORMATS[kind]) as image:
            if kind == "jpeg":  # libjpeg decodes straight to 1/2..1/8 scale
                scale = draft_scale(*image.size, short_side)
                image.draft(draft_mode, (image.width // scale, image.height // scale))
            image.load()  # the first frame only, for an animated PNG
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when upright
            yield image
    except (OSError, SyntaxError, ValueError, ZeroDivisionError, struct.error, Image.DecompressionBombError) as e:
        raise RequestError(400, "invalid_image", f"The image could not be decoded: {e}.") from e


def _reduction(size: tuple[int, int], short_side: int) -> int:
    """The largest whole factor that keeps the short side at least `short_side`."""
    return max(1, min(size) // short_side)


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit or float samples scaled (not clipped) to 8-bit grayscale."""
    values = np.asarray(image, dtype=np.float32)
    top = 65535.0 if image.mode != "F" else max(float(values.max()), 1.0)
    return Image.fromarray(np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), mode="L")


def _plain_gray8(raw: bytes, structure: Structure) -> np.ndarray | None:
    """A plain 8-bit grayscale PNG's pixels from its IDAT data, as Pillow's PNG decoder gives them.

    What Image.open would add for such a file is nothing: no orientation, transparency or
    frames can be in it. Inflated (never past the image's own height x (width + 1) bytes),
    scanlines that are all unfiltered (filter byte 0, as Pillow writes grayscale) are the
    pixels; filtered ones go through Pillow's PNG (zip) decoder. None when neither finishes
    the image cleanly: Image.open then reads the file and gives the answer.
    """
    spans = structure.gray8_idat
    data = raw[spans[0][0] : spans[0][1]] if len(spans) == 1 else b"".join(raw[a:b] for a, b in spans)
    width, height = structure.width, structure.height
    inflate = zlib.decompressobj()
    try:
        scanlines = inflate.decompress(data, height * (width + 1))
        # The stream must also end right there, checksum included: a truncated stream is
        # refused by Pillow, so it must not be accepted here (at most one byte more is read).
        complete = not inflate.decompress(inflate.unconsumed_tail, 1) and inflate.eof
    except zlib.error:
        return None
    if complete and len(scanlines) == height * (width + 1):
        rows = np.frombuffer(scanlines, np.uint8).reshape(height, width + 1)
        if not rows[:, 0].any():
            return _UNIT8[rows[:, 1:]]
    try:
        image = Image.frombytes("L", (width, height), data, "zip", "L")
    except (ValueError, OSError):
        return None
    return _UNIT8[np.frombuffer(image.tobytes(), np.uint8).reshape(height, width)]


def _as_shown(image: Image.Image) -> np.ndarray:
    """Grayscale in [0, 1]: reduced in C first, then alpha composited so the ink stays visible."""
    if image.mode.startswith("I;16"):
        image = image.convert("I")  # 0..65535 kept whole (convert("L") clips at 255: a blank)
    elif image.has_transparency_data and "A" not in image.getbands():
        image = image.convert("RGBA")  # a palette's or tRNS transparency, as an alpha band
    elif image.mode in ("1", "P"):
        image = image.convert("L")  # Image.reduce takes neither
    factor = -(-max(image.size) // WORK_SIDE)
    if factor > 1:  # box-average in C while the image is large; all float work is after
        image = image.reduce(factor)
    if "A" in image.getbands():
        values = np.asarray(image.convert("LA"), dtype=np.float32) / 255.0
        return _composite(values[..., 0], values[..., 1])
    if image.mode not in ("L", "I", "F"):
        image = image.convert("L")
    if image.mode == "L":
        return _UNIT8[np.frombuffer(image.tobytes(), np.uint8).reshape(image.height, image.width)]
    return np.asarray(image, dtype=np.float32) / (65535.0 if image.mode == "I" else 255.0)


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Light ink on a transparent background vanishes on white, dark ink on black: composite
    onto the background that contrasts with what is drawn (its alpha-weighted brightness)."""
    drawn = float((gray * alpha).sum() / max(float(alpha.sum()), 1e-6))
    background = 0.0 if drawn > 0.5 else 1.0
    return gray * alpha + background * (1.0 - alpha)
