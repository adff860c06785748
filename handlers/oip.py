"""Open Inference Protocol (KServe v2) tensors in and out, so KServe/Triton/MLServer clients work.

   {"inputs": [{"name": "...", "shape": [k, ...], "datatype": "FP32", "data": [...]}]}
-> {"model_name": "...", "outputs": [{"name", "shape", "datatype", "data"}]}

The binary tensor data extension (what tritonclient sends by default) puts that JSON first and
the tensors' raw bytes after it, in order: the Inference-Header-Content-Length header gives the
JSON's length in bytes, each tensor's parameters.binary_data_size the length of its data.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import numpy as np
import orjson

from handlers.codec import BINARY_HEADER, FLOAT32_MAX, Limits, RequestError, check_size, parse_json

NUMERIC_DATATYPES = ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
# Each datatype's elements on the wire: little-endian whatever the host, no padding.
_WIRE = ("<f2", "<f4", "<f8", "i1", "<i2", "<i4", "<i8", "u1", "<u2", "<u4", "<u8")
WIRE_DTYPES = {t: np.dtype(c) for t, c in zip(NUMERIC_DATATYPES, _WIRE, strict=True)}
_DIGITS = re.compile(r"[0-9]{1,15}")  # plain ASCII digits: int() would also take "1_0", "+1", "١"


def is_v2_request(doc: Any) -> bool:
    return isinstance(doc, dict) and "inputs" in doc


def request_id(doc: dict[str, Any]) -> str | None:
    """The request's "id", echoed in the response when it is a string."""
    return doc["id"] if isinstance(doc.get("id"), str) else None


def _binary_error(detail: str) -> RequestError:
    return RequestError(400, "invalid_binary_tensor", f"{detail} (binary tensor data extension).")


def split_binary(raw: bytes, header_length: int | str | None, limits: Limits) -> Any:
    """The parsed request, each binary input's "data" read from the bytes after the JSON header.

    `header_length` is the Inference-Header-Content-Length header; None: the body is plain JSON.
    Numeric inputs become flat arrays of their datatype (views of `raw`), BYTES lists of bytes.
    """
    if header_length is None:
        doc = parse_json(raw, limits)
        if is_v2_request(doc) and any("binary_data_size" in _params(t) for t in _list(doc["inputs"])):
            raise _binary_error(f"An input has binary_data_size but the request has no {BINARY_HEADER} header")
        return doc
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise _binary_error(f"With {BINARY_HEADER} the body must arrive as bytes: send application/octet-stream")
    view = memoryview(raw).cast("B")
    check_size(view, limits)
    text = "" if isinstance(header_length, bool) else str(header_length).strip()
    if not _DIGITS.fullmatch(text) or not 0 < int(text) <= len(view):
        raise _binary_error(f"{BINARY_HEADER} is {text[:20]!r}; it must be the JSON header's length, 1 to {len(view)}")
    n = int(text)
    try:
        doc = parse_json(bytes(view[:n]), limits)
    except RequestError as e:  # a header length that lies usually cuts the JSON short or runs past it
        raise RequestError(
            e.status, e.code, f"The JSON header (its first {n} bytes, per {BINARY_HEADER}): {e.detail}"
        ) from e
    if not is_v2_request(doc) or not isinstance(doc["inputs"], list):
        raise _binary_error(f'The JSON header ({BINARY_HEADER}: {n}) is not a request with a list of "inputs"')
    # All sizes are checked against the body before any tensor is read: nothing is allocated
    # beyond the body, and a size that lies cannot shift the next tensor's bytes.
    sizes = [_binary_size(t) for t in doc["inputs"]]
    declared = sum(s for s in sizes if s is not None)
    if declared != len(view) - n:
        raise _binary_error(f"binary_data_size adds up to {declared}; {len(view) - n} bytes follow {BINARY_HEADER}")
    offset = n
    for tensor, size in zip(doc["inputs"], sizes, strict=True):
        if size is not None:
            tensor["data"] = _binary_data(tensor, view[offset : offset + size], limits)
            offset += size
    return doc


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _params(tensor: Any) -> dict[str, Any]:
    params = tensor.get("parameters") if isinstance(tensor, dict) else None
    return params if isinstance(params, dict) else {}


def _binary_size(tensor: Any) -> int | None:
    """An input's binary_data_size, None when its data (if any) is in the JSON."""
    size = _params(tensor).get("binary_data_size")
    if size is None:
        return None
    name = str(tensor.get("name"))[:40]
    if type(size) is not int or size < 0:
        raise _binary_error(f"Input {name!r}: binary_data_size must be a non-negative integer, not {str(size)[:20]}")
    if "data" in tensor:
        raise _binary_error(f'Input {name!r} has both "data" and binary_data_size; send one')
    return size


def _binary_data(tensor: dict[str, Any], buf: memoryview, limits: Limits) -> np.ndarray | list[bytes]:
    """One input's bytes as a flat array of its datatype (no copy), or BYTES elements."""
    name, datatype, shape = str(tensor.get("name"))[:40], tensor.get("datatype"), tensor.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _binary_error(f"Input {name!r}: shape must be a list of non-negative integers")
    # Saturated past the buffer's length, so a huge shape costs nothing and never matches.
    count = 0 if 0 in shape else 1
    for d in shape:
        count = min(count * d, len(buf) + 1)
    if datatype == "BYTES":
        return _byte_elements(buf, count, name, limits)
    dtype = WIRE_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise _binary_error(
            f"Input {name!r}: datatype {str(datatype)[:20]!r} is not read; send BYTES or {'/'.join(WIRE_DTYPES)}"
        )
    if len(buf) != count * dtype.itemsize:
        raise _binary_error(
            f"Input {name!r}: binary_data_size {len(buf)} does not fit {datatype} {str(shape)[:40]}, {dtype.itemsize} bytes each"
        )
    return np.frombuffer(buf, dtype)


def _byte_elements(buf: memoryview, count: int, name: str, limits: Limits) -> list[bytes]:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes."""
    # Every element takes at least its 4-byte length, so the loop runs at most len(buf) / 4
    # times, and never over more elements than the JSON form may carry values.
    if count * 4 > len(buf):
        raise _binary_error(f"Input {name!r}: binary_data_size {len(buf)} cannot hold {count} BYTES elements")
    if count > limits.max_json_values:
        raise RequestError(413, "too_many_values", f"{count} BYTES elements; the limit is {limits.max_json_values}.")
    out, offset = [], 0
    for i in range(count):
        if len(buf) - offset < 4:
            raise _binary_error(f"Input {name!r}: BYTES element {i}'s length runs past its binary_data_size")
        (size,) = struct.unpack_from("<I", buf, offset)
        offset += 4
        if size > len(buf) - offset:
            raise _binary_error(f"Input {name!r}: BYTES element {i} ({size} bytes) runs past its binary_data_size")
        out.append(bytes(buf[offset : offset + size]))
        offset += size
    if offset != len(buf):
        raise _binary_error(f"Input {name!r}: {len(buf) - offset} bytes of binary_data_size follow its elements")
    return out


def decode_v2(doc: dict[str, Any], row_shape: tuple[int, ...], limits: Limits) -> np.ndarray:
    """The single input tensor as float32 rows of `row_shape`; shape [k, *row_shape] or row_shape."""
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, "wrong_v2_request", '"inputs" must be a list holding exactly one tensor object.')
    tensor = inputs[0]
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
    if missing:
        raise RequestError(400, "wrong_v2_request", f"The input tensor lacks {', '.join(missing)}.")
    if tensor["datatype"] not in NUMERIC_DATATYPES:
        raise RequestError(
            400,
            "wrong_datatype",
            f"datatype {str(tensor['datatype'])[:20]!r} is not accepted; use FP32 (or another numeric type).",
        )
    shape = tensor["shape"]
    expected = f"[k, {', '.join(map(str, row_shape))}]"
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise RequestError(400, "wrong_shape", f"shape must be a list of positive integers, {expected}.")
    if tuple(shape) == row_shape:
        shape = [1, *shape]
    if tuple(shape[1:]) != row_shape:
        raise RequestError(400, "wrong_shape", f"shape {tensor['shape']} does not fit this model: send {expected}.")
    if shape[0] > limits.max_rows:
        raise RequestError(413, "too_many_rows", f"{shape[0]} rows in one request; the limit is {limits.max_rows}.")
    return numbers(tensor["data"], tensor["shape"]).reshape(shape)


def numbers(data: Any, shape: list[int]) -> np.ndarray:
    """`data` as float32, flat (prod(shape) values) or nested as `shape`; or a binary tensor's array.

    Every length is checked against the declared shape before the level below is read, so
    the work is bounded by the shape (itself bounded by max_rows), not by the body's size.
    """
    count = math.prod(shape)
    if isinstance(data, np.ndarray):  # from split_binary: typed and flat already, so checked in C
        array = data.reshape(-1)
        if array.dtype.kind not in "iuf" or array.size != count:
            raise RequestError(400, "wrong_shape", f"data holds {array.size} values; shape {shape} needs {count}.")
        finite = np.isfinite(array)
        if not finite.all():  # JSON cannot carry NaN or Infinity; binary data can
            i = int(np.argmin(finite))
            raise RequestError(400, "non_finite_number", f"data[{i}] is {array[i]}; send finite numbers.")
    else:
        array = np.asarray(_json_numbers(data, shape, count), dtype=np.float64)
    if np.abs(array).max(initial=0) > FLOAT32_MAX:
        raise RequestError(400, "out_of_range", f"data holds values beyond float32's range (|x| <= {FLOAT32_MAX:.4g}).")
    return array.astype(np.float32)


def _json_numbers(data: Any, shape: list[int], count: int) -> list[int | float]:
    if not isinstance(data, list):
        raise RequestError(400, "wrong_type", "data must be a list of numbers.")
    values = data
    if len(shape) > 1 and data and type(data[0]) is list:  # nested: one level per dimension
        for depth, size in enumerate(shape[1:], start=1):
            if len(values) != math.prod(shape[:depth]) or not all(type(v) is list and len(v) == size for v in values):
                raise RequestError(
                    400, "wrong_shape", f"data is not nested as shape {shape}; nest it so, or send it flat."
                )
            values = [x for v in values for x in v]
    if len(values) != count:
        raise RequestError(400, "wrong_shape", f"data holds {len(values)} values; shape {shape} needs {count}.")
    # type(), not isinstance: a JSON `true` is a bool, and a bool is an int in Python.
    bad = next((v for v in values if type(v) not in (int, float)), None)
    if bad is not None:
        raise RequestError(400, "wrong_type", f"data holds {str(bad)[:40]!r}; expected numbers.")
    return values


def tensor(name: str, values: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": values.ravel().tolist()}


def tensor_metadata(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    """One tensor in a model's metadata (GET /v2/models/{name}): -1 is a dimension of any size."""
    return {"name": name, "datatype": datatype, "shape": shape}


def response(model_name: str, outputs: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model_name": model_name, "outputs": outputs}
    if request_id is not None:
        body["id"] = request_id
    return body


def _flag(params: Any, key: str) -> bool | None:
    value = params.get(key) if isinstance(params, dict) else None
    if value is not None and not isinstance(value, bool):
        raise _binary_error(f"parameters.{key} must be true or false, not {str(value)[:20]}")
    return value


def binary_outputs(doc: Any) -> bool | frozenset[str]:
    """Which outputs to answer in binary: True (all), these names, or False (all JSON).

    parameters.binary_data_output sets the default, an output's parameters.binary_data overrides
    it; with both, only listed outputs count (the protocol answers only those). tritonclient's
    defaults ask for binary: binary_data_output without outputs, else binary_data on each.
    """
    if not isinstance(doc, dict):
        return False
    default = _flag(doc.get("parameters"), "binary_data_output") or False
    outputs = [o for o in _list(doc.get("outputs")) if isinstance(o, dict) and isinstance(o.get("name"), str)]
    own = {o["name"]: _flag(o.get("parameters"), "binary_data") for o in outputs}
    if default and False not in own.values():
        return True
    return frozenset(name for name, flag in own.items() if (default if flag is None else flag)) or False


def encode_response(body: dict[str, Any], binary: bool | frozenset[str]) -> tuple[bytes, int | None]:
    """The response's bytes and, when binary outputs follow the JSON, the JSON's length.

    When the length is not None, set it as the Inference-Header-Content-Length response header
    (and Content-Type application/octet-stream); when None, the bytes are the plain JSON body.
    """
    return _encode(body, "outputs", binary)


def encode_request(inputs: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    """A request of `inputs` as tritonclient sends it by default: every tensor in binary after
    the JSON header, outputs asked for as JSON. Returns (body, headers)."""
    body, header_length = _encode({"inputs": inputs}, "inputs", True)
    return body, {"Content-Type": "application/octet-stream", BINARY_HEADER: str(header_length)}


def _encode(doc: dict[str, Any], key: str, binary: bool | frozenset[str]) -> tuple[bytes, int | None]:
    tensors, blobs = [], []
    for tensor in doc.get(key, []):
        if binary is True or (binary and tensor.get("name") in binary):
            blob = _wire_bytes(tensor["data"], tensor["datatype"])
            params = {**tensor.get("parameters", {}), "binary_data_size": len(blob)}
            tensor = {**{k: v for k, v in tensor.items() if k != "data"}, "parameters": params}
            blobs.append(blob)
        tensors.append(tensor)
    if not blobs:  # the extension sends its header only when binary data follows
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), None
    header = orjson.dumps({**doc, key: tensors}, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([header, *blobs]), len(header)


def _wire_bytes(data: Any, datatype: str) -> bytes:
    """An output's data as the extension sends it: little-endian elements, BYTES length-prefixed."""
    if datatype == "BYTES":
        values = data.ravel().tolist() if isinstance(data, np.ndarray) else data
        items = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        return b"".join(struct.pack("<I", len(b)) + b for b in items)
    if datatype not in WIRE_DTYPES:
        raise ValueError(f"output datatype {datatype!r} has no binary form")
    return np.asarray(data, dtype=WIRE_DTYPES[datatype]).tobytes()
