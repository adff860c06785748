"""Image files built byte by byte or by Pillow, in memory: what the worst-case corpora share."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes = b"") -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def square_png(side: int, bits: int, colour: int, idat: bytes, before: bytes = b"", after: bytes = b"") -> bytes:
    """A square PNG from IHDR fields, compressed IDAT data and extra chunks around the IDAT."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, bits, colour, 0, 0, 0))
    return PNG_MAGIC + ihdr + before + chunk(b"IDAT", idat) + after + chunk(b"IEND")


def flat_idat(row: bytes, height: int) -> bytes:
    """Zlib data for `height` copies of one unfiltered row (filter Up: zeros after the first)."""
    z, up = zlib.compressobj(9), b"\x02" + bytes(len(row))
    return z.compress(b"\x00" + row) + b"".join(z.compress(up) for _ in range(height - 1)) + z.flush()


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    """Encode an image with Pillow, in memory."""
    image.save(out := io.BytesIO(), fmt, **options)
    return out.getvalue()
