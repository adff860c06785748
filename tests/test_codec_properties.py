"""Property-based: whatever the bytes, a codec returns a decoded batch or raises RequestError.

Random and mutated images (real PNG and JPEG encodings with bytes flipped, cut or spliced),
random JSON documents, and random bytes under every accepted media type. Any other exception
would be a request that can fail its batch, so it fails the test.
"""

import io
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.worst_cases import case_exif_rotated_jpeg, case_white_on_transparent_png
from handlers.codec import Decoded, Limits, Payload, RequestError
from handlers.codecs import codec_for
from models.registry import SPECS
from tests.conftest import row_shape
from tsforge.paths import EXAMPLES

LIMITS = Limits()
# Every registered model's codec and contract: a new model is fuzzed the moment it exists.
CODECS = {name: (codec_for(spec.contract.kind), spec.contract) for name, spec in SPECS.items()}
IMAGE_MODELS = [name for name, spec in SPECS.items() if spec.contract.kind == "image"]
MEDIA = [
    "",
    "image/png",
    "image/jpeg",
    "application/json",
    "application/octet-stream",
    "multipart/form-data",
    "text/plain",
]
SEEDS = [
    (EXAMPLES / "mnist-3.png").read_bytes(),
    case_exif_rotated_jpeg(),
    case_white_on_transparent_png(),
]
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(model: str, body, media: str) -> None:
    try:
        codec, contract = CODECS[model]
        decoded = codec.decode_request(Payload(body, media), contract, LIMITS)
    except RequestError as e:
        assert 400 <= e.status < 500 and e.code and e.detail
        json.dumps(e.body(), allow_nan=False)
        return
    assert isinstance(decoded, Decoded) and decoded.rows.dtype in (np.float32, np.int64)
    assert np.isfinite(decoded.rows).all() and 1 <= len(decoded.rows) <= LIMITS.max_rows


@st.composite
def images(draw) -> bytes:
    """A real encoding of a random small image, in a random mode and format."""
    w, h = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "1", "I;16"]))
    pixels = np.frombuffer(draw(st.binary(min_size=w * h, max_size=w * h)), np.uint8).reshape(h, w)
    image = Image.fromarray(pixels).convert(mode if mode != "I;16" else "I").convert(mode)
    fmt = "JPEG" if mode in ("L", "RGB") and draw(st.booleans()) else "PNG"
    options = {"progressive": draw(st.booleans())} if fmt == "JPEG" else {}
    image.save(out := io.BytesIO(), fmt, **options)
    return out.getvalue()


@st.composite
def mutated(draw) -> bytes:
    """An image (random, or a real digit) with bytes flipped, a cut, or a splice of random bytes."""
    raw = bytearray(draw(st.one_of(images(), st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(raw) - 1))
        action = draw(st.sampled_from(["flip", "cut", "splice"]))
        if action == "flip":
            raw[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del raw[at:]
            if not raw:
                break
        else:
            raw[at:at] = draw(st.binary(max_size=64))
    return bytes(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=12) | st.dictionaries(st.text(max_size=8), children, max_size=12),
    max_leaves=60,
)
keys = st.sampled_from(["features", "pixels", "image", "inputs", "age", "id", "data", "shape", "datatype"])
shaped = st.dictionaries(keys, json_values, max_size=4) | st.lists(st.dictionaries(keys, json_values, max_size=3))


@FAST
@given(model=st.sampled_from(IMAGE_MODELS), body=st.one_of(images(), mutated()), media=st.sampled_from(MEDIA))
def test_any_image_bytes_decode_or_are_refused(model, body, media):
    decodes_or_refuses(model, body, media)


@FAST
@given(model=st.sampled_from(list(CODECS)), doc=st.one_of(json_values, shaped), raw=st.booleans())
def test_any_json_document_decodes_or_is_refused(model, doc, raw):
    body = json.dumps(doc).encode() if raw else doc
    decodes_or_refuses(model, body, "application/json")


@FAST
@given(
    model=st.sampled_from(list(CODECS)),
    rows=st.integers(1, 3),
    data=st.lists(st.one_of(json_values, st.floats()), max_size=40),
    datatype=st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", 3]),
)
def test_any_open_inference_protocol_tensor_decodes_or_is_refused(model, rows, data, datatype):
    doc = {"inputs": [{"name": "x", "shape": [rows, *row_shape(SPECS[model])], "datatype": datatype, "data": data}]}
    decodes_or_refuses(model, json.dumps(doc).encode(), "application/json")


@FAST
@given(model=st.sampled_from(list(CODECS)), body=st.binary(max_size=512), media=st.sampled_from(MEDIA))
def test_any_bytes_decode_or_are_refused(model, body, media):
    decodes_or_refuses(model, body, media)
