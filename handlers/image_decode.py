"""Image bytes -> small grayscale pixels as a viewer shows them, at a cost bounded up front.

Everything that decides the cost is read from the file's structure before a pixel is
decoded: the PNG chunks and header, the JPEG scans and frame header. What would cost more
than the limits allow is refused with a 4xx naming the limit. What is decoded is reduced in
C (JPEG draft mode decodes at 1/2 to 1/8 scale; Image.reduce box-averages) before any
float array is built, so the float work is the same for a 28x28 PNG and a 12 MP photo.

Shown as a viewer shows it: EXIF orientation applied, 16-bit samples scaled (not clipped),
transparency composited onto the background that keeps the ink visible, first frame only.

The common request (a small 8-bit grayscale PNG of nothing but IHDR, IDAT and IEND, as MNIST
digits are) holds no orientation, transparency or frames, so once the same checks have passed
its image data is inflated directly, or given to Pillow's PNG decoder when its rows are
filtered (issue #16: Image.open's chunk parsing cost more than the pixels). Anything else, or
any such file that does not decode cleanly, is read by Image.open as before, so every answer
and refusal is Image.open's (tests/test_digits_preprocess.py compares them).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from handlers.codec import Limits, RequestError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# Large images are box-reduced until their long side is at most this before float work:
# the digit is cut out and brought down to 8x8 cells afterwards, so this keeps ample detail.
WORK_SIDE = 512
# libjpeg markers with no length field: SOI, EOI, TEM and the restart markers RST0..7.
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}
_SOS = 0xDA
# Start-of-frame markers (all but DHT C4, JPG C8 and DAC CC); C2, C6, CA, CE are progressive.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
# Pillow's plugin for each sniffed kind: no other decoder is ever tried on a body.
_FORMATS = {"png": ("PNG",), "jpeg": ("JPEG",)}
# 8-bit sample -> float32 in [0, 1]: the same values as uint8 / 255.0 in float32, by one lookup.
_UNIT8 = np.arange(256, dtype=np.float32) / 255.0


@dataclass(frozen=True)
class Structure:
    """What the file's headers say it will cost to decode."""

    format: str  # "png" or "jpeg"
    width: int
    height: int
    decoded_bytes: int  # the largest buffer decoding will hold (before draft reduction for PNG)
    # A plain 8-bit grayscale PNG (IHDR with a valid CRC, not interlaced, then only IDATs and
    # IEND): where its zlib data lies, (start, end) per IDAT. Empty for any other file.
    gray8_idat: tuple[tuple[int, int], ...] = ()


def sniff(raw: bytes) -> str:
    if raw.startswith(PNG_MAGIC):
        return "png"
    if raw.startswith(JPEG_MAGIC):
        return "jpeg"
    raise RequestError(415, "unsupported_image", "The body is not a PNG or JPEG image (checked by its first bytes).")


def png_structure(raw: bytes, limits: Limits) -> Structure:
    """Walk the chunks (at most max_image_chunks of them): IHDR gives size, depth and colour."""
    pos, count, width, height, raw_bpp, mode_bpp = len(PNG_MAGIC), 0, 0, 0, 0.0, 1
    kind, plain, idat = b"", False, []  # plain: IHDR first, 8-bit grey, not interlaced, CRC right
    while pos + 8 <= len(raw):
        length, kind = struct.unpack_from(">I4s", raw, pos)
        count += 1
        if count > limits.max_image_chunks:
            raise RequestError(
                413, "too_many_chunks", f"The PNG has more than {limits.max_image_chunks} chunks (max_image_chunks)."
            )
        if kind == b"IHDR" and length >= 13:
            w, h, depth, colour = struct.unpack_from(">IIBB", raw, pos + 8)
            channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
            # Pillow decodes by the last IHDR before the image data and ignores any after it:
            # the cost counted is the largest any IHDR declares, so none can hide another's.
            if w * h >= width * height:
                width, height = w, h
            raw_bpp = max(raw_bpp, channels * depth / 8)
            mode_bpp = max(mode_bpp, 2 if (colour == 0 and depth == 16) else (1 if channels == 1 else 4))
            plain = count == 1 and length == 13 and raw[pos + 16 : pos + 21] == b"\x08\x00\x00\x00\x00"
            plain = plain and raw[pos + 21 : pos + 25] == zlib.crc32(raw[pos + 4 : pos + 21]).to_bytes(4, "big")
        elif kind == b"tRNS":
            mode_bpp = 4  # composited as RGBA / LA
        elif kind == b"IEND":
            break
        elif kind == b"IDAT" and count == len(idat) + 2:  # right after IHDR or another IDAT
            idat.append((pos + 8, pos + 8 + length))
        pos += 12 + length
    if not width:
        raise RequestError(400, "invalid_image", "The PNG has no valid IHDR header.")
    # Exactly IHDR, IDAT..., IEND: any other chunk makes the count run ahead of the IDATs.
    plain = plain and height > 0 and kind == b"IEND" and count == len(idat) + 2
    decoded = int(width * height * max(raw_bpp, mode_bpp))
    return Structure("png", width, height, decoded, tuple(idat) if plain else ())


def jpeg_structure(raw: bytes, limits: Limits) -> Structure:
    """Walk the markers, counting scans (at most max_jpeg_scans); the frame header gives size.

    A progressive JPEG keeps every DCT coefficient of the full image in memory (2 bytes each)
    and decodes each scan over it, so its cost is scans x pixels, whatever the draft scale.
    """
    pos, scans, width, height, decoded = 2, 0, 0, 0, 0
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            pos = raw.find(b"\xff", pos)  # inside entropy-coded data: skip to the next marker
            if pos < 0:
                break
            continue
        marker = raw[pos + 1]
        if marker == 0xFF or marker == 0x00 or marker in _STANDALONE:  # fill byte, stuffed byte, RSTn
            pos += 1 if marker == 0xFF else 2
            if marker == 0xD9:
                break
            continue
        (length,) = struct.unpack_from(">H", raw, pos + 2)
        if marker in _SOF and pos + 10 <= len(raw):
            h, w, components = struct.unpack_from(">HHB", raw, pos + 5)
            if marker in _PROGRESSIVE:  # every coefficient of the full image, 2 bytes each
                cost = w * h * components * 2
            else:  # streamed, and decoded at the draft scale
                cost = w * h * 4 // draft_scale(w, h) ** 2
            # libjpeg decodes the first frame, Pillow sizes by the last before the first scan:
            # as for PNG, the largest frame any header declares is what is counted.
            if w * h >= width * height:
                width, height = w, h
            decoded = max(decoded, cost)
        elif marker == _SOS:
            scans += 1
            if scans > limits.max_jpeg_scans:
                raise RequestError(
                    413, "too_many_scans", f"The JPEG has more than {limits.max_jpeg_scans} scans (max_jpeg_scans)."
                )
        pos += 2 + length
    if not width:
        raise RequestError(400, "invalid_image", "The JPEG has no frame header.")
    return Structure("jpeg", width, height, decoded)


def draft_scale(width: int, height: int) -> int:
    """The JPEG draft scale (1, 2, 4 or 8) that keeps the long side at least WORK_SIDE."""
    scale = 1
    while scale < 8 and max(width, height) // (scale * 2) >= WORK_SIDE:
        scale *= 2
    return scale


def check_cost(structure: Structure, limits: Limits) -> None:
    pixels = structure.width * structure.height
    if pixels > limits.max_image_pixels:
        raise RequestError(
            413,
            "image_too_large",
            f"The image is {structure.width}x{structure.height} = {pixels} pixels; "
            f"the limit is {limits.max_image_pixels} (max_image_pixels).",
        )
    if structure.decoded_bytes > limits.max_decoded_bytes:
        raise RequestError(
            413,
            "image_too_large",
            f"Decoding this {structure.width}x{structure.height} {structure.format.upper()} needs "
            f"{structure.decoded_bytes} bytes; the limit is {limits.max_decoded_bytes} (max_decoded_bytes). "
            "Send a smaller or 8-bit image.",
        )


def decode_gray(raw: bytes, limits: Limits) -> np.ndarray:
    """PNG or JPEG bytes -> float32 grayscale in [0, 1], long side <= WORK_SIDE, as a viewer shows it."""
    kind = sniff(raw)
    try:
        structure = png_structure(raw, limits) if kind == "png" else jpeg_structure(raw, limits)
    except struct.error as e:
        raise RequestError(400, "invalid_image", f"The {kind.upper()} headers are truncated.") from e
    check_cost(structure, limits)
    if structure.gray8_idat and max(structure.width, structure.height) <= WORK_SIDE:
        gray = _plain_gray8(raw, structure)
        if gray is not None:
            return gray
    try:
        with Image.open(io.BytesIO(raw), formats=_FORMATS[kind]) as image:
            if kind == "jpeg":  # libjpeg decodes straight to 1/2..1/8 scale, in grayscale
                scale = draft_scale(*image.size)
                image.draft("L", (image.width // scale, image.height // scale))
            image.load()  # the first frame only, for an animated PNG
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when upright
            return _as_shown(image)
    except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError) as e:
        raise RequestError(400, "invalid_image", f"The image could not be decoded: {e}.") from e


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
