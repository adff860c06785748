"""Open Inference Protocol (KServe v2) tensors in and out, so KServe/Triton/MLServer clients work.

   {"inputs": [{"name": "...", "shape": [k, ...], "datatype": "FP32", "data": [...]}]}
-> {"model_name": "...", "outputs": [{"name", "shape", "datatype", "data"}]}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handlers.codec import FLOAT32_MAX, Limits, RequestError

NUMERIC_DATATYPES = ("FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


def is_v2_request(doc: Any) -> bool:
    return isinstance(doc, dict) and "inputs" in doc


def request_id(doc: dict[str, Any]) -> str | None:
    """The request's "id", echoed in the response when it is a string."""
    return doc["id"] if isinstance(doc.get("id"), str) else None


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
    return _numbers(tensor["data"], tensor["shape"]).reshape(shape)


def _numbers(data: Any, shape: list[int]) -> np.ndarray:
    """`data` as float32, flat (prod(shape) values) or nested as `shape`.

    Every length is checked against the declared shape before the level below is read, so
    the work is bounded by the shape (itself bounded by max_rows), not by the body's size.
    """
    count = math.prod(shape)
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
    array = np.asarray(values, dtype=np.float64)
    if np.abs(array).max(initial=0.0) > FLOAT32_MAX:
        raise RequestError(400, "out_of_range", f"data holds values beyond float32's range (|x| <= {FLOAT32_MAX:.4g}).")
    return array.astype(np.float32)


def tensor(name: str, values: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": values.ravel().tolist()}


def response(model_name: str, outputs: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model_name": model_name, "outputs": outputs}
    if request_id is not None:
        body["id"] = request_id
    return body
