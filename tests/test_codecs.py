"""The pure codecs: real images in, model pixels out; bad input -> RequestError, no server."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from handlers import diabetes_codec, digits_codec
from handlers.codec import Limits, RequestError
from tsforge.paths import EXAMPLES

LIMITS = Limits()


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def mnist(label: int) -> bytes:
    return (EXAMPLES / f"mnist-{label}.png").read_bytes()


def test_a_real_mnist_png_becomes_28x28_white_on_black_pixels():
    pixels = digits_codec.decode_request({"body": mnist(7)}, LIMITS)
    assert pixels.shape == (28, 28) and pixels.dtype == np.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0
    assert pixels[0].max() == 0.0 and pixels[:, 0].max() == 0.0  # the frame stays black
    assert pixels[4:24, 4:24].mean() > 0.1  # the digit sits in the central 20x20 box


def test_a_dark_digit_on_white_jpeg_decodes_like_its_inverse_png():
    gray = Image.open(io.BytesIO(mnist(3))).convert("L")
    inverted = Image.eval(gray, lambda v: 255 - v).resize((112, 112))
    from_png = digits_codec.decode_request({"body": png(gray.resize((112, 112)))}, LIMITS)
    from_jpeg = digits_codec.decode_request({"body": png(inverted, "JPEG")}, LIMITS)
    assert np.abs(from_png - from_jpeg).mean() < 0.05


def test_base64_and_pixel_json_inputs_match_the_raw_body():
    raw = digits_codec.decode_request({"body": mnist(5)}, LIMITS)
    b64 = json.dumps({"image": base64.b64encode(mnist(5)).decode()}).encode()
    assert np.array_equal(digits_codec.decode_request({"body": b64}, LIMITS), raw)
    pixels = {"pixels": raw.tolist()}
    assert np.array_equal(digits_codec.decode_request({"body": pixels}, LIMITS), raw)


def test_encode_response_gives_the_top5_probabilities_in_order():
    logits = np.array([0, 1, 5, 2, 0, 0, 0, 3, 0, 4], dtype=np.float32)
    answer = digits_codec.encode_response(logits, [str(i) for i in range(10)])
    assert answer["label"] == 2
    assert list(answer["probabilities"]) == ["2", "9", "7", "3", "1"]
    assert sum(answer["probabilities"].values()) < 1.0


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"", 400, "empty_body"),
        (b"GIF89a....", 415, "unsupported_image"),
        (mnist(1)[:60], 400, "invalid_image"),
        (b'{"pixels": [[0.5]]}', 400, "wrong_shape"),
        (b'{"image": "not base64!"}', 400, "invalid_base64"),
        (b'{"image": 3}', 400, "wrong_type"),
        (b'{"foo": 1}', 400, "unsupported_input"),
    ],
)
def test_bad_digit_requests_are_refused_with_a_code(body, status, code):
    with pytest.raises(RequestError) as e:
        digits_codec.decode_request({"body": body}, LIMITS)
    assert (e.value.status, e.value.code) == (status, code)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding():
    big = png(Image.new("L", (300, 300)))
    with pytest.raises(RequestError) as e:
        digits_codec.decode_request({"body": big}, Limits(max_image_pixels=200 * 200))
    assert (e.value.status, e.value.code) == (413, "image_too_large")


def test_diabetes_features_decode_in_order():
    doc = json.loads((EXAMPLES / "diabetes.json").read_text())
    row = diabetes_codec.decode_request({"body": json.dumps(doc).encode()}, LIMITS)
    assert row.tolist() == pytest.approx(doc["features"])
    assert diabetes_codec.encode_response(np.float32(151.5)) == {"prediction": 151.5}


def test_diabetes_feature_names_match_scikit_learn():
    from sklearn.datasets import load_diabetes

    assert tuple(load_diabetes().feature_names) == diabetes_codec.FEATURE_NAMES


@pytest.mark.parametrize(
    "body, code",
    [
        (b'{"features": [1, 2, 3]}', "wrong_shape"),
        (b'{"features": [1, 2, 3, 4, 5, 6, 7, 8, 9, NaN]}', "non_finite_number"),
        (b'{"features": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1e999]}', "non_finite_number"),
        (b'{"features": [1, 2, 3, 4, 5, 6, 7, 8, 9, "x"]}', "wrong_type"),
        (b'{"features": [1, 2, 3, 4, 5, 6, 7, 8, 9, true]}', "wrong_type"),
        (b'{"features": ', "invalid_json"),
        (b'{"features": "\xff"}', "invalid_utf8"),
        (b"[" * 100 + b"]" * 100, "json_too_deep"),
    ],
)
def test_bad_diabetes_requests_are_refused_with_a_code(body, code):
    with pytest.raises(RequestError) as e:
        diabetes_codec.decode_request({"body": body}, LIMITS)
    assert e.value.status == 400 and e.value.code == code
