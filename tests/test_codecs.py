"""The pure codecs: real images in, model pixels out; bad input -> RequestError, no server."""

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from handlers import classification
from handlers.codec import Limits, Payload, RequestError
from handlers.codecs import image as image_codec
from handlers.codecs import tabular as tabular_codec
from models.registry import SPECS
from tsforge.paths import EXAMPLES

LIMITS = Limits()
DIGITS, DIABETES = SPECS["digits"].contract, SPECS["diabetes"].contract


def digit(body, media_type=""):
    """Decode one digits request that carries a single image: its (28, 28) pixels."""
    decoded = image_codec.decode_request(Payload(body, media_type), DIGITS, LIMITS)
    assert decoded.form == "single" and decoded.rows.shape == (1, 1, 28, 28)
    return decoded.rows[0, 0]


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def mnist(label: int) -> bytes:
    return (EXAMPLES / f"mnist-{label}.png").read_bytes()


def test_a_real_mnist_png_becomes_28x28_white_on_black_pixels():
    pixels = digit(mnist(7))
    assert pixels.shape == (28, 28) and pixels.dtype == np.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0
    assert pixels[0].max() == 0.0 and pixels[:, 0].max() == 0.0  # the frame stays black
    assert pixels[4:24, 4:24].mean() > 0.1  # the digit sits in the central 20x20 box


def test_a_dark_digit_on_white_jpeg_decodes_like_its_inverse_png():
    gray = Image.open(io.BytesIO(mnist(3))).convert("L")
    inverted = Image.eval(gray, lambda v: 255 - v).resize((112, 112))
    from_png = digit(png(gray.resize((112, 112))), "image/png")
    from_jpeg = digit(png(inverted, "JPEG"), "image/jpeg")
    assert np.abs(from_png - from_jpeg).mean() < 0.05


def test_base64_and_pixel_json_inputs_match_the_raw_body():
    raw = digit(mnist(5))
    b64 = json.dumps({"image": base64.b64encode(mnist(5)).decode()}).encode()
    assert np.array_equal(digit(b64, "application/json"), raw)
    pixels = {"pixels": raw.tolist()}
    assert np.array_equal(digit(pixels), raw)


def test_encode_response_gives_the_top5_probabilities_in_order():
    logits = np.array([0, 1, 5, 2, 0, 0, 0, 3, 0, 4], dtype=np.float32)
    answer = classification.answer(logits, DIGITS.labels)
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
        image_codec.decode_request(Payload(body), DIGITS, LIMITS)
    assert (e.value.status, e.value.code) == (status, code)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding():
    big = png(Image.new("L", (300, 300)))
    with pytest.raises(RequestError) as e:
        image_codec.decode_request(Payload(big), DIGITS, Limits(max_image_pixels=200 * 200))
    assert (e.value.status, e.value.code) == (413, "image_too_large")


def test_a_later_smaller_size_header_does_not_hide_an_images_cost():
    """Pillow decodes a PNG by the IHDR before its data and libjpeg a JPEG by its first frame;
    a small header added after them must not let the large image past the limits."""
    limits = Limits(max_image_pixels=200 * 200)
    tiny_ihdr = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    png_body = png(Image.new("L", (300, 300)))
    png_body = (
        png_body[:-12]
        + struct.pack(">I", 13)
        + b"IHDR"
        + tiny_ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + tiny_ihdr))
    )
    jpeg_body = png(Image.new("L", (300, 300)), "JPEG")
    jpeg_body = (
        jpeg_body[:-2] + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 28, 28, 1) + b"\x01\x11\x00" + jpeg_body[-2:]
    )
    for body in (png_body, jpeg_body):
        with pytest.raises(RequestError) as e:
            image_codec.decode_request(Payload(body), DIGITS, limits)
        assert (e.value.status, e.value.code) == (413, "image_too_large") and "300x300" in e.value.detail


def test_diabetes_features_decode_in_order():
    doc = json.loads((EXAMPLES / "diabetes.json").read_text())
    decoded = tabular_codec.decode_request(Payload(json.dumps(doc).encode(), "application/json"), DIABETES, LIMITS)
    assert decoded.form == "single" and decoded.rows[0].tolist() == pytest.approx(doc["features"])
    answer = tabular_codec.encode_outputs(np.array([151.5], np.float32), decoded, DIABETES, "diabetes")
    assert answer == {"prediction": 151.5}


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
        tabular_codec.decode_request(Payload(body), DIABETES, LIMITS)
    assert e.value.status == 400 and e.value.code == code


def diabetes(doc, media_type="application/json"):
    return tabular_codec.decode_request(Payload(json.dumps(doc).encode(), media_type), DIABETES, LIMITS)


def test_diabetes_accepts_named_features_and_lists_of_rows():
    doc = json.loads((EXAMPLES / "diabetes.json").read_text())
    named = dict(zip(DIABETES.features, doc["features"], strict=True))
    single = diabetes(doc).rows
    assert np.array_equal(diabetes(named).rows, single)
    rows = diabetes([doc, named, doc["features"]])
    assert rows.form == "rows" and rows.rows.shape == (3, 10)
    assert all(np.array_equal(r, single[0]) for r in rows.rows)
    answer = tabular_codec.encode_outputs(np.array([1.0, 2.0, 3.0], np.float32), rows, DIABETES, "diabetes")
    assert answer == [{"prediction": 1.0}, {"prediction": 2.0}, {"prediction": 3.0}]


def test_named_features_must_be_complete_and_known():
    with pytest.raises(RequestError, match=r"missing \['s6'\], unknown \['zzz'\]") as e:
        diabetes({**{n: 1 for n in DIABETES.features[:-1]}, "zzz": 1})
    assert e.value.code == "wrong_features"


def test_open_inference_protocol_round_trip_for_both_models():
    v2 = {"id": "r1", "inputs": [{"name": "x", "shape": [2, 10], "datatype": "FP32", "data": list(range(20))}]}
    decoded = diabetes(v2)
    assert decoded.form == "v2" and decoded.rows.shape == (2, 10) and decoded.rows[1, 0] == 10
    answer = tabular_codec.encode_outputs(np.array([5.0, 6.0], np.float32), decoded, DIABETES, "diabetes")
    assert answer == {
        "model_name": "diabetes",
        "id": "r1",
        "outputs": [{"name": "prediction", "shape": [2], "datatype": "FP32", "data": [5.0, 6.0]}],
    }
    pixels = digit(mnist(4)).tolist()
    decoded = image_codec.decode_request(
        Payload({"inputs": [{"name": "x", "shape": [28, 28], "datatype": "FP32", "data": pixels}]}), DIGITS, LIMITS
    )
    assert decoded.form == "v2" and decoded.rows.shape == (1, 1, 28, 28)
    logits = np.zeros((1, 10), np.float32)
    logits[0, 4] = 5
    out = image_codec.encode_outputs(logits, decoded, DIGITS, "digits")["outputs"]
    assert [o["name"] for o in out] == ["probabilities", "label"] and out[1]["data"] == [4]
    assert out[0]["shape"] == [1, 10] and sum(out[0]["data"]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "tensor, code",
    [
        ({"name": "x", "shape": [1, 10], "datatype": "BYTES", "data": ["a"] * 10}, "wrong_datatype"),
        ({"name": "x", "shape": [1, 9], "datatype": "FP32", "data": [1] * 9}, "wrong_shape"),
        ({"name": "x", "shape": [2, 10], "datatype": "FP32", "data": [1] * 10}, "wrong_shape"),
        ({"name": "x", "shape": [1, 10], "datatype": "FP32", "data": [1] * 9 + ["a"]}, "wrong_type"),
        ({"name": "x", "shape": [1, 10], "datatype": "FP32"}, "wrong_v2_request"),
        ({"name": "x", "shape": [100, 10], "datatype": "FP32", "data": [1] * 1000}, "too_many_rows"),
    ],
)
def test_bad_open_inference_protocol_requests_are_refused(tensor, code):
    with pytest.raises(RequestError) as e:
        diabetes({"inputs": [tensor]})
    assert e.value.code == code


def test_a_wrong_content_type_is_refused_with_415():
    with pytest.raises(RequestError) as e:
        diabetes({"features": list(range(10))}, media_type="text/plain")
    assert (e.value.status, e.value.code) == (415, "unsupported_media_type")
    with pytest.raises(RequestError) as e:
        image_codec.decode_request(Payload(mnist(1), "text/html"), DIGITS, LIMITS)
    assert e.value.status == 415


def test_bytes_declared_as_an_image_that_are_not_one_are_refused():
    with pytest.raises(RequestError) as e:
        image_codec.decode_request(Payload(b'{"pixels": 1}', "image/png"), DIGITS, LIMITS)
    assert (e.value.status, e.value.code) == (415, "unsupported_image")


def test_json_already_parsed_by_torchserve_is_still_depth_checked():
    nested: list = []
    for _ in range(20):
        nested = [nested]
    with pytest.raises(RequestError) as e:
        tabular_codec.decode_request(Payload({"features": nested}), DIABETES, LIMITS)
    assert e.value.code == "json_too_deep"


def test_a_body_over_the_size_limit_is_refused_with_413():
    huge = b'{"features": [' + b"1," * 3_000_000 + b"1]}"
    with pytest.raises(RequestError) as e:
        tabular_codec.decode_request(Payload(huge), DIABETES, LIMITS)
    assert (e.value.status, e.value.code) == (413, "body_too_large")


def test_the_device_is_the_assigned_gpu_only_when_cuda_is_available():
    from handlers.base import select_device

    assert str(select_device(1, cuda_available=True)) == "cuda:1"
    assert str(select_device(None, cuda_available=True)) == "cpu"
    assert str(select_device(0, cuda_available=False)) == "cpu"


CLASSIFIERS = [s for s in SPECS.values() if s.classifier and s.contract.kind == "tabular"]


@pytest.mark.parametrize("spec", CLASSIFIERS, ids=lambda s: s.name)
def test_a_tabular_classifier_answers_with_its_own_label_names(spec):
    contract = spec.contract
    decoded = tabular_codec.decode_request(Payload((EXAMPLES / spec.example).read_bytes()), contract, LIMITS)
    logits = np.zeros((1, len(contract.labels)), np.float32)
    logits[0, -1] = 4.0
    answer = tabular_codec.encode_outputs(logits, decoded, contract, spec.name)
    assert answer["label"] == classification.label_value(contract.labels[-1])
    assert list(answer["probabilities"])[0] == contract.labels[-1]
    v2 = {
        "inputs": [
            {"name": "x", "shape": [1, len(contract.features)], "datatype": "FP32", "data": decoded.rows[0].tolist()}
        ]
    }
    decoded = tabular_codec.decode_request(Payload(json.dumps(v2).encode()), contract, LIMITS)
    label = tabular_codec.encode_outputs(logits, decoded, contract, spec.name)["outputs"][1]
    numeric = all(isinstance(classification.label_value(x), int) for x in contract.labels)
    assert label["datatype"] == ("INT64" if numeric else "BYTES") and label["data"] == [answer["label"]]


def test_labels_that_are_not_numbers_answer_as_names():
    assert classification.label_value("7") == 7 and classification.label_value("class_0") == "class_0"
    out = classification.v2_outputs(np.array([[0.0, 3.0]], np.float32), ("cat", "dog"))
    assert out[1] == {"name": "label", "shape": [1], "datatype": "BYTES", "data": ["dog"]}


def test_images_are_read_as_a_viewer_shows_them():
    from bench import worst_cases as w

    upright = digit(png(w.digit()))
    # EXIF orientation, white ink on transparency, an animated PNG's first frame: the same digit.
    for body in (w.case_exif_rotated_jpeg(), w.case_white_on_transparent_png(), w.case_animated_png()):
        assert np.corrcoef(digit(body).ravel(), upright.ravel())[0, 1] > 0.98
    # 16-bit samples are scaled, not clipped: the same image as its 8-bit version.
    eight = np.full((64, 64), 255, np.uint8)
    eight[8:56, 28:36] = 0
    sixteen = Image.fromarray(eight.astype(np.uint16) * 257)
    assert np.abs(digit(png(sixteen)) - digit(png(Image.fromarray(eight)))).max() < 1e-3
    with pytest.raises(RequestError) as e:
        digit(w.case_blank_white_png())
    assert (e.value.status, e.value.code) == (422, "no_digit")


@pytest.mark.parametrize("name", ["png_1bit_palette", "png_16bit_rgb", "png_many_chunks", "jpeg_progressive_scans"])
def test_an_image_whose_cost_cannot_be_bounded_is_refused_from_its_headers(name):
    from bench.worst_cases import worst_cases

    case = next(c for c in worst_cases() if c.name == name)
    with pytest.raises(RequestError) as e:
        digit(case.body, case.content_type)
    assert e.value.status == 413 and e.value.code in ("image_too_large", "too_many_chunks", "too_many_scans")
    assert "max_" in e.value.detail  # names the limit


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_plain_png_whose_zlib_stream_is_cut_short_reads_as_through_pillow():
    """The fast path for plain grayscale PNGs takes only a stream that ends, checksum and all;
    any other goes the way Image.open takes it (the pre-#16 reference decoder)."""
    from bench.preprocess import current_decode, reference_decode

    width, height = 5, 4
    rows = b"".join(b"\0" + bytes(range(i, i + width)) for i in range(height))  # unfiltered
    head = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    for stream in (zlib.compress(rows), zlib.compress(rows)[:-4], zlib.compress(rows)[:-6]):
        png = head + _png_chunk(b"IDAT", stream) + _png_chunk(b"IEND", b"")
        try:
            expected = reference_decode(png, Limits())
        except RequestError as e:
            with pytest.raises(RequestError) as got:
                current_decode(png, Limits())
            assert got.value.code == e.code
        else:
            assert np.array_equal(current_decode(png, Limits()), expected)
