"""What an image will cost to decode, read from its headers before a pixel is decoded.

PNG chunks and header, JPEG markers, scans and frame headers, WebP's RIFF chunks: the size
every header declares (the largest counts, so none can hide another), the buffer decoding
will fill, and the structure that costs work however small the pixels (chunks, scans). What
would cost more than the limits allow is refused here with a 4xx naming the limit;
handlers.image_decode decodes only what passed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

from handlers.codec import Limits, RequestError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
WEBP_MAGIC = (b"RIFF", b"WEBP")  # at bytes 0 and 8
# Large images are box-reduced until their long side is at most this before float work:
# the digit is cut out and brought down to 8x8 cells afterwards, so this keeps ample detail.
WORK_SIDE = 512
# libjpeg markers with no length field: SOI, EOI, TEM and the restart markers RST0..7.
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}
_SOS = 0xDA
# Start-of-frame markers (all but DHT C4, JPG C8 and DAC CC); C2, C6, CA, CE are progressive.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}


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
    if raw[:4] == WEBP_MAGIC[0] and raw[8:12] == WEBP_MAGIC[1]:
        return "webp"
    raise RequestError(
        415, "unsupported_image", "The body is not a PNG, JPEG or WebP image (checked by its first bytes)."
    )


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


def jpeg_structure(raw: bytes, limits: Limits, short_side: int = 0) -> Structure:
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
                cost = w * h * 4 // draft_scale(w, h, short_side) ** 2
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


def webp_structure(raw: bytes, limits: Limits) -> Structure:
    """Walk the RIFF chunks (at most max_image_chunks): the canvas (VP8X) and every frame's
    bitstream header (VP8, VP8L, inside ANMF too) give sizes; decoding fills RGBA at the largest."""
    pos, count, width, height = 12, 0, 0, 0
    while pos + 8 <= len(raw):
        kind, length = raw[pos : pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        count += 1
        if count > limits.max_image_chunks:
            raise RequestError(
                413, "too_many_chunks", f"The WebP has more than {limits.max_image_chunks} chunks (max_image_chunks)."
            )
        body = pos + 8
        if kind == b"ANMF":  # a frame: its own header, then its bitstream chunk(s) inside
            pos = body + 16
            continue
        size = _webp_size(kind, raw, body)
        if size and size[0] * size[1] >= width * height:
            width, height = size
        pos = body + length + (length & 1)
    if not width:
        raise RequestError(400, "invalid_image", "The WebP has no canvas or frame header.")
    return Structure("webp", width, height, width * height * 4)


def _webp_size(kind: bytes, raw: bytes, body: int) -> tuple[int, int] | None:
    """(width, height) a VP8X, VP8 or VP8L chunk declares."""
    if kind == b"VP8X":
        w, h = (int.from_bytes(raw[body + i : body + i + 3], "little") + 1 for i in (4, 7))
        return w, h
    if kind == b"VP8 ":  # frame tag (3 bytes), start code (3), then 14-bit width and height
        w, h = struct.unpack_from("<HH", raw, body + 6)
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L":  # signature 0x2F, then 14-bit width - 1 and height - 1
        bits = struct.unpack_from("<I", raw, body + 1)[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def draft_scale(width: int, height: int, short_side: int = 0) -> int:
    """The JPEG draft scale (1, 2, 4 or 8) that keeps the long side at least WORK_SIDE, or for
    a colour model (`short_side` set), the short side at least the model's resize."""
    scale = 1
    while scale < 8 and _kept(width, height, scale * 2, short_side):
        scale *= 2
    return scale


def _kept(width: int, height: int, factor: int, short_side: int) -> bool:
    """Whether reducing by `factor` keeps the detail preprocessing needs (and a pixel of the
    short side: a 4096 x 4 strip is not drafted to nothing)."""
    if short_side:
        return min(width, height) // factor >= short_side
    return max(width, height) // factor >= WORK_SIDE and min(width, height) // factor >= 1


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


def read_structure(raw: bytes, limits: Limits, short_side: int = 0) -> tuple[str, Structure]:
    """The file's kind and structure, its decoding cost checked against the limits (a colour
    model's `short_side` sets how far a JPEG may be reduced, and so what decoding it costs)."""
    kind = sniff(raw)
    try:
        if kind == "png":
            structure = png_structure(raw, limits)
        elif kind == "webp":
            structure = webp_structure(raw, limits)
        else:
            structure = jpeg_structure(raw, limits, short_side)
    except struct.error as e:
        raise RequestError(400, "invalid_image", f"The {kind.upper()} headers are truncated.") from e
    if short_side and kind == "png":  # a colour read converts (palette, 16-bit) at full size first
        structure = replace(
            structure, decoded_bytes=max(structure.decoded_bytes, structure.width * structure.height * 4)
        )
    check_cost(structure, limits)
    return kind, structure
