"""The faster digits preprocessing (#16) answers exactly as the pre-#16 one did.

The reference is frozen in bench/preprocess.py. Every input gets the same pixels
(within 1e-6; in fact bit for bit) or the same refusal: the real MNIST examples, the held-out
digits, training's own 8x8 images, the odd images the codec tests use, and random and mutated
images. Speed is measured by `measure`, never asserted here.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.datasets import load_digits

from bench import preprocess as bench
from bench import worst_cases as w
from handlers.codec import Limits, Payload, RequestError
from handlers.codecs import image as image_codec
from handlers.digit_transform import to_model_pixels
from models.registry import SPECS
from tests.test_codec_properties import images, mutated
from tsforge.paths import EXAMPLES

LIMITS = Limits()
DIGITS = SPECS["digits"]
EXAMPLE_PATHS = sorted(EXAMPLES.glob("mnist-*.png"))


def outcome(decode, raw: bytes, limits: Limits = LIMITS):
    """Model pixels, or the refusal as (status, code)."""
    try:
        return decode(raw, limits)
    except RequestError as e:
        return e.status, e.code


def assert_same(raw: bytes, limits: Limits = LIMITS) -> None:
    reference, current = outcome(bench.reference_decode, raw, limits), outcome(bench.current_decode, raw, limits)
    if isinstance(reference, tuple):
        assert current == reference
        return
    assert isinstance(current, np.ndarray), current
    assert current.shape == reference.shape == (28, 28) and current.dtype == reference.dtype == np.float32
    assert np.abs(current - reference).max() <= 1e-6


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    image.save(out := io.BytesIO(), fmt, **options)
    return out.getvalue()


def as_png(pixels: np.ndarray) -> bytes:
    """Pixels in [0, 1] as an 8-bit grayscale PNG, as a client would send them."""
    return encode(Image.fromarray(np.round(pixels * 255).astype(np.uint8)))


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def split_idat(raw: bytes, parts: int) -> bytes:
    """The same PNG with its image data spread over `parts` IDAT chunks."""
    (length,) = struct.unpack_from(">I", raw, 33)
    data = raw[41 : 41 + length]
    step = -(-len(data) // parts)
    idats = b"".join(chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    return raw[:33] + idats + raw[41 + length + 4 :]


def filtered_scanlines(pixels: np.ndarray) -> bytes:
    """8-bit rows with PNG filters Sub, Up, Average and Paeth in turn (as libpng may write them)."""
    out, prev = [], np.zeros(pixels.shape[1], int)
    for y, row in enumerate(pixels.astype(int)):
        kind = 1 + y % 4
        left, up_left = np.r_[0, row[:-1]], np.r_[0, prev[:-1]]
        guess = left + prev - up_left
        paeth = np.where(
            (abs(guess - left) <= abs(guess - prev)) & (abs(guess - left) <= abs(guess - up_left)),
            left,
            np.where(abs(guess - prev) <= abs(guess - up_left), prev, up_left),
        )
        predicted = {1: left, 2: prev, 3: (left + prev) // 2, 4: paeth}[kind]
        out.append(bytes([kind]) + ((row - predicted) % 256).astype(np.uint8).tobytes())
        prev = row
    return b"".join(out)


def gray_png(width: int, height: int, zdata: bytes) -> bytes:
    """A well-formed 8-bit grayscale PNG around any zlib data: IHDR, IDAT, IEND."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return w.PNG_MAGIC + ihdr + chunk(b"IDAT", zdata) + chunk(b"IEND", b"")


@pytest.mark.parametrize("path", EXAMPLE_PATHS, ids=lambda p: p.name)
def test_the_real_mnist_examples_get_the_reference_pixels(path):
    raw = path.read_bytes()
    assert_same(raw)
    rows = image_codec.decode_request(Payload(raw, "image/png"), DIGITS.contract, LIMITS).rows
    assert np.array_equal(rows[0, 0], bench.reference_decode(raw, LIMITS))


def test_the_held_out_digits_as_pngs_get_the_reference_pixels():
    held_out = DIGITS.splits(DIGITS.train.seed).test.x[:, 0].numpy()
    assert len(held_out) > 200
    for pixels in held_out:
        assert_same(as_png(pixels))


def test_training_images_are_framed_bit_for_bit_as_before():
    """models/digits.py frames load_digits with to_model_pixels: its data must not move a bit."""
    for image in load_digits().images:
        assert np.array_equal(to_model_pixels(image / 16.0), bench._to_model_pixels(image / 16.0))
        assert_same(as_png(image / 16.0))  # and the 8x8 image itself, sent as a PNG


def test_any_grayscale_array_is_framed_bit_for_bit_as_before():
    rng = np.random.default_rng(16)
    for _ in range(400):
        h, w = (int(n) for n in rng.integers(1, 70, 2))
        gray = rng.random((h, w)) ** rng.uniform(0.3, 4)
        gray[rng.random((h, w)) < rng.uniform(0, 0.9)] = 0.0
        gray = gray * rng.choice([1.0, 1.3]) - rng.choice([0.0, 0.1])  # some outside [0, 1]: clipped
        gray = 1.0 - gray if rng.random() < 0.4 else gray
        current, reference = to_model_pixels(gray), bench._to_model_pixels(gray)
        assert current.dtype == np.float32 and np.array_equal(current, reference)


def odd_images() -> dict[str, bytes]:
    digit = w.digit()  # black on white, 112 x 112
    gray = np.asarray(digit)
    exif = Image.Exif()
    exif[0x0112] = 6
    plain = (EXAMPLES / "mnist-4.png").read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(plain)))
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)  # unfiltered scanlines
    return {
        "exif_rotated_jpeg": w.case_exif_rotated_jpeg(),
        "exif_rotated_png": encode(digit.transpose(Image.Transpose.ROTATE_90), exif=exif),
        "white_on_transparent_rgba": w.case_white_on_transparent_png(),
        "animated_png": w.case_animated_png(),
        "png_16bit_gray": w.png_16bit_gray_digit(),
        "png_16bit_from_8bit": encode(Image.fromarray(gray.astype(np.uint16) * 257)),
        "jpeg": encode(digit, "JPEG", quality=90),
        "jpeg_progressive": encode(digit.convert("RGB"), "JPEG", progressive=True),
        "jpeg_large_draft": encode(digit.resize((1600, 1600)), "JPEG"),
        "png_rgb": encode(digit.convert("RGB")),
        "png_la": encode(Image.merge("LA", [digit, Image.new("L", digit.size, 200)])),
        "png_palette": encode(digit.convert("P")),
        "png_1bit": encode(digit.convert("1")),
        "png_gray_trns": encode(digit, transparency=255),
        "png_large_reduced": w.png_at_decode_limit(1200),
        "png_rgba_large": w.png_at_decode_limit(600, "RGBA"),
        "png_text_chunk": plain[:33] + chunk(b"tEXt", b"Comment\x00a digit") + plain[33:],
        "png_filtered_rows": gray_png(28, 28, zlib.compress(filtered_scanlines(pixels))),
        "png_three_idats": split_idat(plain, 3),
        "png_one_byte_idats": split_idat(plain, 10_000),
        "png_tiny": as_png(np.eye(3)),
        "png_one_row": as_png(np.array([[0, 1, 1, 0, 0]], float)),
        # Refused alike:
        "png_blank": w.case_blank_white_png(),
        "png_truncated_idat": plain[:-40],
        "png_corrupt_idat": plain[:60] + bytes(20) + plain[80:],
        "png_bad_ihdr_crc": plain[:29] + bytes([plain[29] ^ 1]) + plain[30:],
        "png_no_iend": plain[:-12],
        # zlib data that ends after 10 of 28 rows: Pillow keeps the rest black, both ways.
        "png_stream_ends_early": gray_png(28, 28, zlib.compress(rows[: 10 * 29])),
        "png_short_idat": gray_png(28, 28, zlib.compress(rows)[:-30]),
        "png_zero_height": gray_png(5, 0, zlib.compress(b"")),
        "png_bad_filter_byte": gray_png(28, 28, zlib.compress(b"\x07" + rows[1:])),
        "jpeg_truncated": encode(digit, "JPEG")[:300],
        "not_an_image": b"GIF89a...",
    }


ODD = odd_images()


@pytest.mark.parametrize("name", list(ODD))
def test_odd_images_get_the_reference_answer(name):
    assert_same(ODD[name])


def test_the_limits_refuse_alike():
    raw = (EXAMPLES / "mnist-7.png").read_bytes()
    for limits in (Limits(max_image_pixels=100), Limits(max_decoded_bytes=100), Limits(max_image_chunks=2)):
        assert isinstance(outcome(bench.current_decode, raw, limits), tuple)
        assert_same(raw, limits)
    assert_same(split_idat(raw, 3), Limits(max_image_chunks=4))
    assert_same(ODD["jpeg_progressive"], Limits(max_jpeg_scans=2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(images(), mutated()))
def test_random_and_mutated_images_get_the_reference_answer(body):
    assert_same(body)


def test_measure_times_both_on_the_same_batch():
    result = bench.measure(0.2)
    assert result["batch"] == 8 and result["reference_images_per_s"] > 0 and result["current_images_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["current_images_per_s"] / result["reference_images_per_s"])
