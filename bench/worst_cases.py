"""Worst-case request bodies an attacker could send within the documented limits.

Pure, deterministic builders (Pillow, NumPy, stdlib; no file I/O beyond the feature names of
scikit-learn's bundled diabetes data; the text cases read the text model's declared limits) whose size parameters
default to handlers.codec.Limits (4 MiB body, 4096x4096 pixels, JSON depth 8), so tests can build
small versions too. Names starting "case_", and png_16bit_gray_digit, are correctness cases;
names ending "_at_limit" are the costliest inputs the limits still accept. `make bench` sends
each to a served worker and reports its CPU time and memory; the tests check each answer.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image
from sklearn.datasets import load_diabetes

from bench import worst_audio, worst_recommendation
from bench import worst_photos as photos
from bench.image_bytes import PNG_MAGIC, chunk, flat_idat, save, square_png

MAX_BODY = 4 * 1024 * 1024
MAX_SIDE = 4096
MAX_DEPTH = 8
MAX_REQUEST = 8 * 1024 * 1024  # TorchServe's max_request_size in config.properties
FCTL = ">5I2H2B"  # APNG frame control: seq, w, h, x, y, delay 1/100 s, dispose, blend
JSON = "application/json"
# The diabetes model's feature names come from the dataset its contract is built from.
DIABETES_FEATURES = tuple(load_diabetes().feature_names)
# examples/mnist-7.png (28x28, white on black), inlined so that building reads no file.
MNIST_7_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAkElEQVR4nGNgGIZAXkmp6fzDN0cqODCk+Gd+//v37z8g/muOIZkCEsYlaYOQ"
    "dMSQ1Pn0+9ixY8crI+7/XYrpHm0TCN361x+3o1/9zcEpJ/T1bxJOyRRsriVKsvj/P9ySl/7uEsQlJ/34bwROjc5/fwfgkXyOUw6/5Ap8khv/fq3C"
    "Ken94W8pbq3u73EHLSoAABldUFURmzWAAAAAAElFTkSuQmCC"
)


@dataclass(frozen=True)
class WorstCase:
    """One request body: which model it targets, its Content-Type, and what it stresses."""

    name: str
    model: str  # the served model it is sent to
    content_type: str
    body: bytes
    what: str
    expect: int  # the status the server must answer: 200 within the limits, else the 4xx


def png_1bit_palette(side: int = MAX_SIDE) -> bytes:
    """Pixel bomb: side x side 1-bit palette PNG with half-transparent grey ink everywhere."""
    plte = chunk(b"PLTE", bytes([0, 0, 0, 64, 64, 64])) + chunk(b"tRNS", bytes([128, 128]))
    return square_png(side, 1, 3, flat_idat(b"\x55" * ((side + 7) // 8), side), before=plte)


def png_16bit_rgb(side: int = MAX_SIDE) -> bytes:
    """Pixel bomb: side x side 16-bit RGB of flat mid grey (all "ink"), with a tRNS colour."""
    idat = flat_idat(struct.pack(">HHH", 0x6060, 0x6060, 0x6060) * side, side)
    return square_png(side, 16, 2, idat, before=chunk(b"tRNS", bytes(6)))


def png_16bit_gray_digit(side: int = 64) -> bytes:
    """Correctness: 16-bit greyscale, a black "1" stroke on a white (65535) background."""
    pixels = np.full((side, side), 65535, dtype=np.uint16)
    pixels[side // 8 : side - side // 8, side // 2 - side // 16 : side // 2 + side // 16] = 0
    return save(Image.fromarray(pixels), "PNG")


def png_many_chunks(size: int = MAX_BODY) -> bytes:
    """A 28x28 PNG with zero-length private ancillary chunks after IHDR, up to `size` bytes."""
    head, tail = MNIST_7_PNG[:33], MNIST_7_PNG[33:]  # signature + IHDR, then the rest
    return head + chunk(b"juNk") * ((size - len(MNIST_7_PNG)) // 12) + tail


def apng_many_frames(side: int = MAX_SIDE, size: int = MAX_BODY) -> bytes:
    """APNG: a flat side x side RGBA first frame, then as many 1x1 frames as fit in `size`."""
    idat, pixel = flat_idat(b"\x80\x80\x80\xff" * side, side), zlib.compress(b"\x00\xff\xff\xff\xff", 9)
    base = len(square_png(side, 8, 6, idat)) + 20 + 38  # + acTL + the first fcTL
    extra = max(0, (size - base) // (38 + 16 + len(pixel)))  # fcTL + fdAT per 1x1 frame
    frames = [
        chunk(b"fcTL", struct.pack(FCTL, 2 * i + 1, 1, 1, i % side, i // side % side, 1, 100, 0, 0))
        + chunk(b"fdAT", struct.pack(">I", 2 * i + 2) + pixel)
        for i in range(extra)
    ]
    before = chunk(b"acTL", struct.pack(">II", extra + 1, 0)) + chunk(
        b"fcTL", struct.pack(FCTL, 0, side, side, 0, 0, 1, 100, 0, 0)
    )
    return square_png(side, 8, 6, idat, before=before, after=b"".join(frames))


def jpeg_progressive_scans(side: int = MAX_SIDE, noise: int = 8, size: int = MAX_BODY) -> bytes:
    """Progressive JPEG whose smallest scan (with its tables) repeats until the file is `size`."""
    grey = np.random.default_rng(0).integers(128 - noise, 129 + noise, (side, side), dtype=np.uint8)
    data = save(Image.fromarray(np.stack([grey] * 3, -1)), "JPEG", progressive=True, quality=75)
    units, start, i = [], None, 2  # walk the segments after SOI up to EOI
    while data[i + 1] != 0xD9:
        marker, end = data[i + 1], i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        start = i if start is None else start  # tables before a scan travel with it
        if marker == 0xDA:  # entropy-coded data runs to the next marker (not FF00, not RSTn)
            end = data.index(b"\xff", end)
            while data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end = data.index(b"\xff", end + 2)
            units.append(data[start:end])
        start = start if marker in (0xC4, 0xDB) else None
        i = end
    unit = min(units, key=len)
    return data[:-2] + unit * max(0, (size - len(data)) // len(unit)) + data[-2:]


def jpeg_large_baseline(side: int = MAX_SIDE, size: int = MAX_BODY) -> bytes:
    """Baseline JPEG of colour noise, side x side, at the highest quality that fits in `size`."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
    tile, scale = noise.crop((0, 0, min(side, 1024), min(side, 1024))), (side / min(side, 1024)) ** 2
    quality = next((q for q in range(95, 0, -5) if len(save(tile, "JPEG", quality=q)) * scale < size * 0.97), 1)
    while len(body := save(noise, "JPEG", quality=quality)) > size and quality > 1:
        quality = max(1, quality - 2)
    return body


def json_v2_deep(size: int = MAX_BODY, depth: int = MAX_DEPTH) -> bytes:
    """Digits v2 tensor of shape [64, 28, 28] whose data nests to `depth` with ~2M numbers."""
    head, item = '{"inputs":[{"name":"x","shape":[64,28,28],"datatype":"FP32","data":', "0"
    fanout = max(1, min(16, int((size / 8) ** (1 / max(1, depth - 4)))))  # at least ~4 items on top
    for _ in range(depth - 4):  # object, inputs, tensor, data: the first four levels
        item = "[" + ",".join([item] * fanout) + "]"
    return (head + "[" + ",".join([item] * ((size - len(head) - 5) // (len(item) + 1))) + "]}]}").encode()


def json_v2_wrong_len(size: int = MAX_BODY) -> bytes:
    """Diabetes v2 tensor of shape [1, 10] with a flat data list filling `size` bytes."""
    head = '{"inputs":[{"name":"x","shape":[1,10],"datatype":"FP32","data":['
    return (head + "0," * ((size - len(head) - 5) // 2) + "0]}]}").encode()


def json_huge_int(digits: int = 300) -> bytes:
    """Diabetes features whose first value is a `digits`-digit integer."""
    return ('{"features":[' + "9" * digits + ",0,0,0,0,0,0,0,0,0]}").encode()


def json_float_overflow(value: str = "1e300") -> bytes:
    """Diabetes features whose first value is finite in float64 but not in float32."""
    return ('{"features":[' + value + ",0,0,0,0,0,0,0,0,0]}").encode()


def json_deep_brackets(size: int = MAX_BODY) -> bytes:
    """Depth bomb: `size` opening brackets."""
    return b"[" * size


def json_many_keys(size: int = MAX_BODY) -> bytes:
    """One diabetes object: the ten feature names plus as many short unknown keys as fit."""
    parts = [f'"{name}":0' for name in DIABETES_FEATURES]
    total = sum(len(p) + 1 for p in parts) + 1
    while total + 16 < size:
        parts.append(f'"{len(parts):x}":0')
        total += len(parts[-1]) + 1
    return ("{" + ",".join(parts) + "}").encode()


def json_long_string(size: int = MAX_BODY) -> bytes:
    """Digits {"image": base64} whose ~3 MiB payload is a PNG signature and random junk."""
    raw = PNG_MAGIC + np.random.default_rng(0).bytes((size - 16) // 4 * 3 - len(PNG_MAGIC))
    return b'{"image":"' + base64.b64encode(raw) + b'"}'


def multipart_many_parts(size: int = MAX_BODY, boundary: str = "worstcase") -> tuple[str, bytes]:
    """(content type, body): multipart/form-data with as many one-byte parts as fit in `size`."""
    parts, total, end = [], 0, f"--{boundary}--\r\n"
    while total + len(end) + 80 + len(boundary) < size:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="p{len(parts)}"\r\n\r\nx\r\n')
        total += len(parts[-1])
    return f"multipart/form-data; boundary={boundary}", ("".join(parts) + end).encode()


def multipart_big_part(size: int = MAX_REQUEST - 64 * 1024, boundary: str = "worstcase") -> tuple[str, bytes]:
    """(content type, body): one PNG file part padded so the whole body is `size` bytes."""
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="data"; filename="7.png"\r\n'
    head, tail = (head + "Content-Type: image/png\r\n\r\n").encode(), f"\r\n--{boundary}--\r\n".encode()
    pad = bytes(size - len(head) - len(MNIST_7_PNG) - len(tail))
    return f"multipart/form-data; boundary={boundary}", head + MNIST_7_PNG + pad + tail


def digit(side: int = 112) -> Image.Image:
    """examples/mnist-7.png as a black-on-white greyscale digit, side x side."""
    with Image.open(io.BytesIO(MNIST_7_PNG)) as image:
        return Image.eval(image.convert("L"), lambda v: 255 - v).resize((side, side), Image.Resampling.BILINEAR)


def upright_png(side: int = 112) -> bytes:
    """The digit the correctness cases draw, upright and opaque: what each must be read as."""
    return save(digit(side), "PNG")


def case_exif_rotated_jpeg(side: int = 112) -> bytes:
    """Pixels stored rotated 90 degrees counter-clockwise, EXIF Orientation 6 shows them upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(digit(side).transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)


def case_white_on_transparent_png(side: int = 112) -> bytes:
    """RGBA: white everywhere, the digit only in alpha (opaque ink, fully transparent ground)."""
    alpha = Image.eval(digit(side), lambda v: 255 - v)
    return save(Image.merge("RGBA", [Image.new("L", alpha.size, 255)] * 3 + [alpha]), "PNG")


def case_blank_white_png(side: int = 112) -> bytes:
    """A white greyscale PNG with no ink."""
    return save(Image.new("L", (side, side), 255), "PNG")


def case_animated_png(side: int = 112) -> bytes:
    """Two-frame APNG: the digit, then a blank white frame (a viewer shows the first)."""
    frames = [digit(side), Image.new("L", (side, side), 255)]
    return save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=500, loop=0)


def _stroke_on_white(side: int, mode: str) -> Image.Image:
    """A dark vertical stroke on white with a little noise, so nothing compresses to nothing."""
    pixels = np.full((side, side), 255, np.uint8) - np.random.default_rng(0).integers(0, 2, (side, side), np.uint8)
    pixels[side // 4 : 3 * side // 4, side // 2 - side // 20 : side // 2 + side // 20] = 0
    return Image.fromarray(pixels).convert(mode)


def png_at_decode_limit(side: int = 2896, mode: str = "L") -> bytes:
    """Accepted: the most pixels max_decoded_bytes allows (8 MiB: 2896^2 grey, 1448^2 RGBA)."""
    return save(_stroke_on_white(side, mode), "PNG")


def jpeg_progressive_at_limit(side: int = 2048) -> bytes:
    """Accepted: a progressive greyscale JPEG whose coefficients (2 bytes each) fill 8 MiB."""
    return save(_stroke_on_white(side, "L"), "JPEG", quality=90, progressive=True)


def json_v2_at_limit(rows: int = 64) -> bytes:
    """Accepted: a digits v2 tensor of max_rows 28x28 images, flat, 6 digits a value."""
    data = ",".join(["0.123456"] * (rows * 28 * 28))
    return f'{{"inputs":[{{"name":"x","shape":[{rows},28,28],"datatype":"FP32","data":[{data}]}}]}}'.encode()


def json_rows_at_limit(rows: int = 64) -> bytes:
    """Accepted: max_rows diabetes rows, each by name."""
    row = "{" + ",".join(f'"{name}":{i}.5' for i, name in enumerate(DIABETES_FEATURES)) + "}"
    return ("[" + ",".join([row] * rows) + "]").encode()


def text_request(texts: int, size: int = 16 * 1024 - 16) -> bytes:
    """`texts` texts of ~16 KB (max_text_bytes) each, every one cut to max_tokens."""
    return json.dumps({"texts": [("tokenization " * (size // 13 + 1))[:size]] * texts}).encode()


def text_rows_at_budget() -> int:
    """How many max_tokens texts one minilm request may carry: its pass budget, or max_rows."""
    from handlers.codec import Limits
    from models.registry import SPECS

    limits = Limits.from_mapping(dict(SPECS["minilm"].serving.limits))
    return min(limits.max_rows, limits.max_pass_cost // SPECS["minilm"].contract.max_tokens)


@cache
def _all() -> tuple[WorstCase, ...]:
    """Every case, built once."""
    png, jpeg = "image/png", "image/jpeg"
    many_type, many = multipart_many_parts()
    big_type, big = multipart_big_part()
    return tuple(
        WorstCase(*args)
        for args in [
            ("png_1bit_palette", "digits", png, png_1bit_palette(), "4096x4096 1-bit palette with tRNS", 413),
            ("png_16bit_rgb", "digits", png, png_16bit_rgb(), "4096x4096 16-bit RGB + tRNS, flat grey", 413),
            ("png_at_decode_limit", "digits", png, png_at_decode_limit(), "2896x2896 8-bit grey", 200),
            ("png_rgba_at_decode_limit", "digits", png, png_at_decode_limit(1448, "RGBA"), "1448x1448 RGBA", 200),
            ("png_many_chunks", "digits", png, png_many_chunks(), "~350k empty ancillary chunks", 413),
            ("apng_many_frames", "digits", png, apng_many_frames(), "4096x4096 APNG, ~63k 1x1 frames", 413),
            ("jpeg_progressive_scans", "digits", jpeg, jpeg_progressive_scans(), "~75k repeated scans", 413),
            ("jpeg_progressive_at_limit", "digits", jpeg, jpeg_progressive_at_limit(), "2048x2048 grey", 200),
            ("jpeg_large_baseline", "digits", jpeg, jpeg_large_baseline(), "4096x4096 colour noise", 200),
            ("json_v2_at_limit", "digits", JSON, json_v2_at_limit(), "v2 [64, 28, 28], 50,176 numbers", 200),
            ("json_v2_deep", "digits", JSON, json_v2_deep(), "v2 data nested to depth 8, ~1.9M numbers", 413),
            ("json_v2_wrong_len", "diabetes", JSON, json_v2_wrong_len(), "v2 shape [1,10], ~2M numbers", 413),
            ("json_rows_at_limit", "diabetes", JSON, json_rows_at_limit(), "64 rows of named features", 200),
            ("json_huge_int", "diabetes", JSON, json_huge_int(), "300-digit integer: float32 overflow", 400),
            ("json_int_too_big_for_float", "diabetes", JSON, json_huge_int(400), "400-digit integer", 400),
            ("json_int_over_str_limit", "diabetes", JSON, json_huge_int(4301), "over int max_str_digits", 400),
            ("json_float_overflow", "diabetes", JSON, json_float_overflow(), "1e300: float32 overflow", 400),
            ("json_deep_brackets", "diabetes", JSON, json_deep_brackets(), "4 MiB of '[': depth bomb", 400),
            ("json_many_keys", "diabetes", JSON, json_many_keys(), "ten features + ~426k unknown keys", 413),
            ("json_long_string", "digits", JSON, json_long_string(), "base64 of a PNG signature + junk", 400),
            ("multipart_many_parts", "digits", many_type, many, "~65k one-byte form parts", 413),
            ("multipart_big_part", "digits", big_type, big, "one ~7.9 MiB file part", 413),
            ("case_exif_rotated_jpeg", "digits", jpeg, case_exif_rotated_jpeg(), "EXIF Orientation 6 digit", 200),
            ("case_white_on_transparent_png", "digits", png, case_white_on_transparent_png(), "white ink", 200),
            ("case_blank_white_png", "digits", png, case_blank_white_png(), "no ink", 422),
            ("case_animated_png", "digits", png, case_animated_png(), "2 frames, digit first", 200),
            (
                "text_at_budget",
                "minilm",
                JSON,
                text_request(text_rows_at_budget()),
                f"{text_rows_at_budget()} texts of ~16 KB, each cut to 256 tokens",
                200,
            ),
            (
                "text_over_budget",
                "minilm",
                JSON,
                text_request(text_rows_at_budget() + 1),
                f"{text_rows_at_budget() + 1} such texts: over max_pass_cost",
                413,
            ),
            ("text_one_long", "minilm", "text/plain", text_request(1)[11:-3], "one ~16 KB text/plain body", 200),
            ("photo_rgba_at_decode_limit", photos.MODEL, png, png_at_decode_limit(1448, "RGBA"), "1448x1448 RGBA", 200),
            ("photo_large_baseline", photos.MODEL, jpeg, jpeg_large_baseline(), "4096x4096 colour noise", 200),
            ("photo_16bit_rgb", photos.MODEL, png, png_16bit_rgb(1024), "1024x1024 16-bit RGB + tRNS", 200),
            *photos.cases(),
            *worst_audio.cases(),
            *worst_recommendation.cases(),
        ]
    )


def worst_cases() -> list[WorstCase]:
    """All worst-case and correctness bodies (built once per process)."""
    return list(_all())
