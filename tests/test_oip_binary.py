"""The Open Inference Protocol's binary tensor data extension, against tritonclient's own code.

Request bodies are built by tritonclient.http (its defaults: binary inputs, binary outputs) and
responses are read back by its InferResult, so these tests pin the wire format, not our reading
of the spec. No server: the handler-facing functions are pure.
"""

import json
import struct

import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from handlers import oip
from handlers.codec import BINARY_HEADER, Limits, RequestError, header
from handlers.codecs import text as text_codec

LIMITS = Limits()
TEXTS = ["a first text", "héllo wörld ✓", "日本語のテキスト"]


def infer_input(name, array, binary=True):
    datatype = "BYTES" if array.dtype == object else {np.float32: "FP32", np.int64: "INT64"}[array.dtype.type]
    tensor = triton.InferInput(name, list(array.shape), datatype)
    return tensor.set_data_from_numpy(array, binary_data=binary)


def request(*inputs, outputs=None, **kwargs):
    """(body, header length) exactly as tritonclient's infer() would send them."""
    return triton.InferenceServerClient.generate_request_body(list(inputs), outputs=outputs, **kwargs)


def refused(raw, header_length, limits=LIMITS, status=400):
    with pytest.raises(RequestError) as e:
        oip.split_binary(raw, header_length, limits)
    assert e.value.status == status
    return e.value


def names_extension(error):
    text = f"{error.code} {error.detail}"
    return "binary tensor data extension" in text or oip.BINARY_HEADER in text or "binary_data_size" in text


def pixels():
    return np.random.default_rng(0).random((2, 28, 28), dtype=np.float32) * 255


# Requests in: tritonclient's bodies split back into the arrays it was given.


def test_tritonclient_defaults_send_binary_inputs_and_ask_binary_outputs():
    body, length = request(infer_input("x", pixels()))
    header = json.loads(body[:length])
    assert header["inputs"][0]["parameters"] == {"binary_data_size": 2 * 28 * 28 * 4}
    assert "data" not in header["inputs"][0]
    assert header["parameters"] == {"binary_data_output": True}  # no outputs given: all binary
    assert oip.binary_outputs(header) is True
    # Named outputs: InferRequestedOutput's default is binary_data true on each.
    body, length = request(infer_input("x", pixels()), outputs=[triton.InferRequestedOutput("label")])
    assert oip.binary_outputs(json.loads(body[:length])) == {"label"}


def test_fp32_images_round_trip_exactly_and_decode_as_rows():
    images = pixels()
    body, length = request(infer_input("x", images))
    doc = oip.split_binary(body, length, LIMITS)
    data = doc["inputs"][0]["data"]
    assert data.dtype == np.float32 and data.shape == (2 * 28 * 28,)
    np.testing.assert_array_equal(data.reshape(2, 28, 28), images)
    rows = oip.decode_v2(doc, (28, 28), LIMITS)
    assert rows.dtype == np.float32 and rows.shape == (2, 28, 28)
    np.testing.assert_array_equal(rows, images)


def test_header_length_may_arrive_as_the_header_string_in_any_case():
    body, length = request(infer_input("x", pixels()))
    headers = {"inference-header-content-length": str(length), "Content-Type": "application/octet-stream"}
    assert header(headers, BINARY_HEADER) == str(length)
    assert header({"Inference-Header-Content-Length": str(length).encode()}, BINARY_HEADER) == str(length)
    assert header({}, BINARY_HEADER) is None
    doc = oip.split_binary(bytearray(body), header(headers, BINARY_HEADER), LIMITS)
    np.testing.assert_array_equal(doc["inputs"][0]["data"].reshape(2, 28, 28), pixels())


def test_int64_rows_round_trip_exactly():
    values = np.array([[1, -2, 3], [2**40, 0, -(2**62)]], dtype=np.int64)
    body, length = request(infer_input("x", values))
    data = oip.split_binary(body, length, LIMITS)["inputs"][0]["data"]
    assert data.dtype == np.int64
    np.testing.assert_array_equal(data.reshape(2, 3), values)
    small = np.arange(20, dtype=np.int64).reshape(2, 10)
    body, length = request(infer_input("x", small))
    rows = oip.decode_v2(oip.split_binary(body, length, LIMITS), (10,), LIMITS)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, small.astype(np.float32))


def test_bytes_texts_round_trip_exactly_with_non_ascii():
    texts = np.array([t.encode() for t in TEXTS], dtype=object)
    body, length = request(infer_input("text", texts), request_id="réq-1")
    doc = oip.split_binary(body, length, LIMITS)
    assert doc["id"] == "réq-1"
    assert doc["inputs"][0]["data"] == [t.encode() for t in TEXTS]
    # text_codec's reader takes the bytes as it takes JSON strings.
    found, form, rid = text_codec._texts(doc)
    assert [text_codec._text(t, "t", LIMITS) for t in found] == TEXTS and form == "v2" and rid == "réq-1"


def test_bytes_of_str_and_empty_elements_round_trip():
    texts = np.array(["", "x", "ü" * 300], dtype=object)  # tritonclient encodes str as UTF-8
    body, length = request(infer_input("text", texts))
    assert oip.split_binary(body, length, LIMITS)["inputs"][0]["data"] == [b"", b"x", ("ü" * 300).encode()]


def test_several_inputs_split_in_order_and_json_inputs_stay_as_sent():
    images, ids = pixels(), np.array([7, 8, 9], dtype=np.int64)
    texts = np.array([b"one", b"two"], dtype=object)
    body, length = request(infer_input("a", images), infer_input("b", ids, binary=False), infer_input("c", texts))
    doc = oip.split_binary(body, length, LIMITS)
    a, b, c = (t["data"] for t in doc["inputs"])
    np.testing.assert_array_equal(a.reshape(2, 28, 28), images)
    assert b == [7, 8, 9] and c == [b"one", b"two"]


def test_an_all_json_request_needs_no_header_and_parses_as_before():
    body, length = request(infer_input("x", np.arange(10, dtype=np.float32).reshape(1, 10), binary=False))
    assert length is None
    doc = oip.split_binary(body, None, LIMITS)
    assert doc == orjson.loads(body) and doc["inputs"][0]["data"] == list(range(10))
    np.testing.assert_array_equal(oip.decode_v2(doc, (10,), LIMITS), np.arange(10, dtype=np.float32)[None])
    # And a body that is not a v2 request at all passes through untouched.
    assert oip.split_binary(b'{"texts": ["a"]}', None, LIMITS) == {"texts": ["a"]}


def test_empty_tensor_is_zero_bytes():
    body, length = request(infer_input("x", np.zeros((0, 3), np.float32)))
    data = oip.split_binary(body, length, LIMITS)["inputs"][0]["data"]
    assert data.shape == (0,) and data.dtype == np.float32


# Binary data through decode_v2: the JSON path's checks, in C.


def binary_doc(array):
    return oip.split_binary(*request(infer_input("x", array)), LIMITS)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_binary_fp32_is_refused_as_json_refuses_it(bad):
    values = np.zeros((1, 10), np.float32)
    values[0, 3] = bad
    with pytest.raises(RequestError) as e:
        oip.decode_v2(binary_doc(values), (10,), LIMITS)
    assert (e.value.status, e.value.code) == (400, "non_finite_number") and "data[3]" in e.value.detail


def test_binary_fp64_beyond_float32_is_out_of_range():
    values = np.zeros((1, 10), np.float64)
    values[0, 0] = 1e39
    body, length = request(triton.InferInput("x", [1, 10], "FP64").set_data_from_numpy(values))
    with pytest.raises(RequestError) as e:
        oip.decode_v2(oip.split_binary(body, length, LIMITS), (10,), LIMITS)
    assert e.value.code == "out_of_range"


def test_binary_data_keeps_the_shape_and_row_checks():
    with pytest.raises(RequestError) as e:
        oip.decode_v2(binary_doc(np.zeros((65, 10), np.float32)), (10,), LIMITS)
    assert (e.value.status, e.value.code) == (413, "too_many_rows")
    with pytest.raises(RequestError) as e:
        oip.decode_v2(binary_doc(np.zeros((2, 9), np.float32)), (10,), LIMITS)
    assert e.value.code == "wrong_shape"
    doc = binary_doc(np.zeros((1, 10), np.float32))
    doc["inputs"][0]["shape"] = [2, 10]  # a shape the array does not hold
    with pytest.raises(RequestError) as e:
        oip.decode_v2(doc, (10,), LIMITS)
    assert e.value.code == "wrong_shape"


def test_binary_bytes_input_to_a_numeric_model_is_the_usual_wrong_datatype():
    doc = oip.split_binary(*request(infer_input("x", np.array([b"a"], dtype=object))), LIMITS)
    with pytest.raises(RequestError) as e:
        oip.decode_v2(doc, (1,), LIMITS)
    assert e.value.code == "wrong_datatype"


# Malformed requests: each a 400 that names the extension.


def craft(inputs, tail, header_length=None, extra=None):
    header = json.dumps({"inputs": inputs, **(extra or {})}).encode()
    return header + tail, len(header) if header_length is None else header_length


FP32_4 = {"name": "x", "shape": [4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}


@pytest.mark.parametrize("value", ["abc", "", "-5", -5, "1_0", "+10", "1e3", "١٢", 3.0, True, "9" * 40])
def test_header_length_not_a_non_negative_integer_is_refused(value):
    body, _ = craft([FP32_4], bytes(16))
    error = refused(body, value)
    assert error.code == "invalid_binary_tensor" and oip.BINARY_HEADER in error.detail


@pytest.mark.parametrize("delta", [-1, 1, 5])
def test_a_header_length_that_lies_is_refused(delta):
    body, length = request(infer_input("x", pixels()))
    error = refused(body, length + delta)
    assert names_extension(error) and oip.BINARY_HEADER in error.detail


def test_header_length_zero_or_past_the_body_is_refused():
    body, length = request(infer_input("x", pixels()))
    for bad in (0, "0", len(body) + 1, str(10**12)):
        error = refused(body, bad)
        assert error.code == "invalid_binary_tensor" and oip.BINARY_HEADER in error.detail


def test_an_invalid_json_header_is_refused_naming_the_header():
    tail = bytes(16)
    for json_header in (b"{not json}", b'["inputs"]', b'{"inputs": 3}', b"\xff\xfe{}"):
        error = refused(json_header + tail, len(json_header))
        assert names_extension(error), error.detail


def test_sizes_not_adding_up_to_the_bytes_that_follow_are_refused():
    for tail in (bytes(15), bytes(17), b""):
        body, length = craft([FP32_4], tail)
        error = refused(body, length)
        assert error.code == "invalid_binary_tensor" and "binary_data_size" in error.detail
    # A body with binary data but no binary input declared.
    body, length = craft([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}], b"\0")
    assert refused(body, length).code == "invalid_binary_tensor"


@pytest.mark.parametrize(
    "tensor, tail",
    [
        ({**FP32_4, "shape": [5]}, bytes(16)),  # 5 x 4 bytes declared in 16
        ({**FP32_4, "shape": [2, 3]}, bytes(16)),
        ({**FP32_4, "datatype": "INT64"}, bytes(16)),  # 4 x 8 bytes
        ({**FP32_4, "shape": [2**40, 2**40, 2**40]}, bytes(16)),  # huge shape: no huge product
        ({**FP32_4, "shape": [-4]}, bytes(16)),
        ({**FP32_4, "shape": [True, 4]}, bytes(16)),
        ({**FP32_4, "shape": "4"}, bytes(16)),
        ({**FP32_4, "datatype": "FP8"}, bytes(16)),  # unknown datatype
        ({**FP32_4, "datatype": None}, bytes(16)),
        ({**FP32_4, "data": [1, 2, 3, 4]}, bytes(16)),  # both data and binary_data_size
        ({**FP32_4, "parameters": {"binary_data_size": -16}}, bytes(16)),
        ({**FP32_4, "parameters": {"binary_data_size": "16"}}, bytes(16)),
        ({**FP32_4, "parameters": {"binary_data_size": 16.0}}, bytes(16)),
    ],
)
def test_a_size_that_does_not_match_its_tensor_is_refused(tensor, tail):
    error = refused(*craft([tensor], tail))
    assert error.code == "invalid_binary_tensor" and names_extension(error)


def bytes_tensor(shape, tail):
    return craft(
        [{"name": "t", "shape": shape, "datatype": "BYTES", "parameters": {"binary_data_size": len(tail)}}], tail
    )


@pytest.mark.parametrize(
    "shape, tail",
    [
        ([1], struct.pack("<I", 5) + b"abcd"),  # element longer than what remains
        ([1], struct.pack("<I", 2**32 - 1) + b"abcd"),
        ([2], struct.pack("<I", 1) + b"a" + b"\0\0"),  # second length prefix cut short
        ([1], struct.pack("<I", 1) + b"ab"),  # bytes left after the last element
        ([3], struct.pack("<I", 0) * 2),  # shape needs more elements than the bytes can hold
        ([2**40], struct.pack("<I", 0) * 2),
        ([0], b"\0\0\0\0"),
    ],
)
def test_bytes_element_lengths_that_overflow_are_refused(shape, tail):
    error = refused(*bytes_tensor(shape, tail))
    assert error.code == "invalid_binary_tensor" and "binary_data_size" in error.detail


def test_bytes_elements_are_bounded_like_json_values():
    tail = struct.pack("<I", 0) * 100
    error = refused(*bytes_tensor([100], tail), limits=Limits(max_json_values=99), status=413)
    assert error.code == "too_many_values"
    assert oip.split_binary(*bytes_tensor([100], tail), LIMITS)["inputs"][0]["data"] == [b""] * 100


def test_body_over_the_limit_is_refused_before_reading():
    body, length = request(infer_input("x", pixels()))
    error = refused(body, length, limits=Limits(max_body_bytes=len(body) - 1), status=413)
    assert error.code == "body_too_large"


def test_binary_data_size_without_the_header_is_refused_naming_it():
    body, length = request(infer_input("x", pixels()))
    error = refused(body[:length], None)
    assert error.code == "invalid_binary_tensor" and oip.BINARY_HEADER in error.detail


def test_a_body_that_is_not_bytes_is_refused_with_a_header():
    error = refused('{"inputs": []}', 14)
    assert error.code == "invalid_binary_tensor"


# What the request asks for back.


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"inputs": []}, False),
        ({"inputs": [], "parameters": {"binary_data_output": True}}, True),
        ({"inputs": [], "parameters": {"binary_data_output": False}}, False),
        ({"inputs": [], "outputs": [{"name": "label", "parameters": {"binary_data": True}}, {"name": "p"}]}, {"label"}),
        ({"inputs": [], "outputs": [{"name": "label", "parameters": {"binary_data": False}}]}, False),
        ({"inputs": [], "outputs": [{"name": "label"}], "parameters": {"binary_data_output": True}}, True),
        (
            {
                "inputs": [],
                "outputs": [{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}],
                "parameters": {"binary_data_output": True},
            },
            {"b"},
        ),
        ({"inputs": [], "outputs": "label"}, False),
        ([1, 2], False),
    ],
)
def test_binary_outputs_follows_the_request_and_its_overrides(doc, expected):
    assert oip.binary_outputs(doc) == expected


@pytest.mark.parametrize(
    "doc",
    [
        {"inputs": [], "parameters": {"binary_data_output": "true"}},
        {"inputs": [], "outputs": [{"name": "label", "parameters": {"binary_data": 1}}]},
    ],
)
def test_binary_flags_that_are_not_booleans_are_refused(doc):
    with pytest.raises(RequestError) as e:
        oip.binary_outputs(doc)
    assert e.value.code == "invalid_binary_tensor"


# Responses out: read back by tritonclient's own InferResult.


def classification_body():
    probs = np.random.default_rng(1).random((3, 10), dtype=np.float32)
    outputs = [
        oip.tensor("probabilities", probs),
        oip.tensor("label", np.array([7, -1, 2**40], dtype=np.int64), "INT64"),
        {"name": "names", "shape": [3], "datatype": "BYTES", "data": ["cat", "chién", "猫"]},
    ]
    return oip.response("digits", outputs, "r-1"), probs


def test_binary_response_reads_back_in_tritonclient():
    body, probs = classification_body()
    raw, length = oip.encode_response(body, True)
    assert isinstance(raw, bytes) and isinstance(length, int)
    result = triton.InferResult.from_response_body(raw, verbose=False, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probs)
    assert result.as_numpy("probabilities").dtype == np.float32
    np.testing.assert_array_equal(result.as_numpy("label"), np.array([7, -1, 2**40], dtype=np.int64))
    assert result.as_numpy("names").tolist() == [s.encode() for s in ["cat", "chién", "猫"]]
    header = result.get_response()
    assert header["id"] == "r-1" and header["model_name"] == "digits"
    assert all("data" not in o and o["parameters"]["binary_data_size"] > 0 for o in header["outputs"])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 3 * 10 * 4


def test_binary_response_through_tritonclients_own_request_defaults():
    images = pixels()
    req, req_length = request(infer_input("x", images), outputs=[triton.InferRequestedOutput("label")])
    asked = oip.binary_outputs(oip.split_binary(req, req_length, LIMITS))
    body, probs = classification_body()
    raw, length = oip.encode_response(body, asked)
    result = triton.InferResult.from_response_body(raw, verbose=False, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("label"), np.array([7, -1, 2**40], dtype=np.int64))
    # Outputs not asked for in binary stay JSON in the same response, and read back too.
    assert "data" in result.get_output("probabilities")
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probs)


def test_selected_outputs_only_are_binary():
    body, probs = classification_body()
    raw, length = oip.encode_response(body, {"names"})
    header = json.loads(raw[:length])
    assert [("data" in o) for o in header["outputs"]] == [True, True, False]
    result = triton.InferResult.from_response_body(raw, verbose=False, header_length=length)
    assert result.as_numpy("names").tolist() == [b"cat", "chién".encode(), "猫".encode()]
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probs)


def test_numpy_data_in_outputs_encodes_the_same():
    probs = np.arange(6, dtype=np.float32).reshape(2, 3)
    listed = oip.response("m", [oip.tensor("p", probs)])
    arrays = oip.response("m", [{"name": "p", "shape": [2, 3], "datatype": "FP32", "data": probs.ravel()}])
    assert oip.encode_response(arrays, True) == oip.encode_response(listed, True)
    assert orjson.loads(oip.encode_response(arrays, False)[0]) == orjson.loads(oip.encode_response(listed, False)[0])


@pytest.mark.parametrize("binary", [False, set(), {"not-an-output"}])
def test_json_mode_is_the_same_json_and_no_header(binary):
    body, _ = classification_body()
    raw, length = oip.encode_response(body, binary)
    assert length is None
    assert orjson.loads(raw) == json.loads(json.dumps(body, allow_nan=False))
    result = triton.InferResult.from_response_body(raw, verbose=False, header_length=None)
    np.testing.assert_array_equal(result.as_numpy("label"), np.array([7, -1, 2**40], dtype=np.int64))


def test_an_empty_output_is_zero_binary_bytes():
    body = oip.response("m", [oip.tensor("p", np.zeros((0, 3), np.float32))])
    raw, length = oip.encode_response(body, True)
    result = triton.InferResult.from_response_body(raw, verbose=False, header_length=length)
    assert result.as_numpy("p").shape == (0, 3)
