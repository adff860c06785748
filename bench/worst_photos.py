"""Worst-case and correctness bodies for a colour photo model (the image kind with channels=3):
what its limits still accept at their costliest, and what they refuse from the headers alone."""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

from bench.image_bytes import PNG_MAGIC, chunk, save

MODEL = "efficientnet_lite0"  # the colour photo model they are sent to


def photo_panorama_at_pixel_limit(width: int = 16384, height: int = 1024) -> bytes:
    """Accepted by a colour model: max_image_pixels as one baseline JPEG strip. Its draft scale
    stops at the short side the centre crop needs (1/4), so it decodes far more than a square."""
    strip = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return save(strip, "JPEG", quality=80)


def photo_progressive_at_limit(side: int = 1180) -> bytes:
    """Accepted by a colour model: a progressive colour JPEG whose coefficients fill 8 MiB."""
    noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return save(Image.fromarray(noise, "RGB"), "JPEG", quality=90, progressive=True)


def png_16bit_gray_at_limit(side: int = 1448) -> bytes:
    """Accepted by a colour model: a 16-bit greyscale gradient whose 32-bit read fills 8 MiB."""
    return save(Image.fromarray(np.tile((np.arange(side) * 31).astype(np.uint16), (side, 1))), "PNG")


def png_declaring(width: int = 30000, height: int = 30000, size: int = 2048) -> bytes:
    """Refused from its header: a ~2 KB PNG whose IHDR declares width x height RGB pixels."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", np.random.default_rng(0).bytes(size - 57))  # data never read
    return PNG_MAGIC + ihdr + idat + chunk(b"IEND")


def jpeg_cmyk(side: int = 640) -> bytes:
    """Accepted: a CMYK JPEG (as print workflows write them), converted to RGB."""
    return save(Image.linear_gradient("L").resize((side, side)).convert("CMYK"), "JPEG", quality=90)


def webp_animated(side: int = 512, frames: int = 64) -> bytes:
    """Accepted, first frame only: an animated WebP of `frames` full-canvas frames."""
    shades = [Image.new("RGB", (side, side), (i * 4 % 256, 80, 160)) for i in range(frames)]
    return save(shades[0], "WEBP", save_all=True, append_images=shades[1:], lossless=True)


def photo_json_pixels(side: int = 224) -> bytes:
    """Refused by a colour model before parsing: 3 x side x side JSON numbers, over max_json_values."""
    row = "[" + ",".join(["0.5"] * side) + "]"
    plane = "[" + ",".join([row] * side) + "]"
    return ('{"pixels":[' + ",".join([plane] * 3) + "]}").encode()


def cases() -> list[tuple[str, str, str, bytes, str, int]]:
    """(name, model, Content-Type, body, what it stresses, expected status) for bench.worst_cases."""
    png, jpeg = "image/png", "image/jpeg"
    return [
        ("photo_panorama_at_pixel_limit", MODEL, jpeg, photo_panorama_at_pixel_limit(), "16384x1024 JPEG", 200),
        ("photo_progressive_at_limit", MODEL, jpeg, photo_progressive_at_limit(), "1180x1180 colour noise", 200),
        ("photo_16bit_gray_at_limit", MODEL, png, png_16bit_gray_at_limit(), "1448x1448 16-bit grey", 200),
        ("photo_json_pixels", MODEL, "application/json", photo_json_pixels(), "3x224x224 JSON pixels", 413),
        ("photo_declaring_30000", MODEL, png, png_declaring(), "~2 KB PNG declaring 30000x30000", 413),
        ("photo_cmyk_jpeg", MODEL, jpeg, jpeg_cmyk(), "640x640 CMYK JPEG", 200),
        ("photo_animated_webp", MODEL, "image/webp", webp_animated(), "512x512 WebP, 64 frames", 200),
    ]
