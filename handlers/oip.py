"""Open Inference Protocol (KServe v2) tensors in and out, so KServe/Triton/MLServer clients work.

   {"inputs": [{"name": "...", "shape": [k, ...], "datatype": "FP32", "data": [...]}]}
-> {"model_name": "...", "outputs": [{"name", "shape", "datatype", "data"}]}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from handlers.codec import Limits, RequestError

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
    flat = _flatten_numbers(tensor["data"])
    if len(flat) != math.prod(shape):
        raise RequestError(
            400, "wrong_shape", f"data holds {len(flat)} values; shape {shape} needs {math.prod(shape)}."
        )
    return np.asarray(flat, dtype=np.float32).reshape(shape)


def _flatten_numbers(data: Any) -> list[float]:
    out: list[float] = []
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            if not math.isfinite(node):
                raise RequestError(400, "non_finite_number", f"data holds {node}; send finite numbers.")
            out.append(float(node))
        else:
            raise RequestError(400, "wrong_type", f"data holds {str(node)[:40]!r}; expected numbers.")
    return out


def tensor(name: str, values: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": values.ravel().tolist()}


def response(model_name: str, outputs: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model_name": model_name, "outputs": outputs}
    if request_id is not None:
        body["id"] = request_id
    return body
