"""What every model's codec shares: the error type, the limits, and safe JSON parsing."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

# Request keys TorchServe uses for a raw body ("body") or a form field ("data").
BODY_KEYS = ("body", "data")


class RequestError(ValueError):
    """One request is invalid: answered with `status` and a JSON body, the batch goes on."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


@dataclass(frozen=True)
class Limits:
    """Per-request limits, set in the archive's model-config.yaml under `handler:`."""

    max_body_bytes: int = 4 * 1024 * 1024
    # Checked from the image header, before decoding: a 40 kB PNG can inflate to gigabytes.
    max_image_pixels: int = 4096 * 4096
    max_json_depth: int = 8
    # Rows one request may carry (a list of rows, or an Open Inference Protocol tensor).
    max_rows: int = 64

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Limits:
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in values.items() if k in names})


@dataclass(frozen=True)
class Payload:
    """One request's body and its media type ("" when the caller sent none)."""

    value: Any  # bytes; or str / parsed JSON when TorchServe decoded the body itself
    media_type: str = ""


@dataclass(frozen=True)
class Decoded:
    """What one request asks for: `rows` (k, *input shape) and the form to answer in."""

    rows: np.ndarray
    form: str  # "single": one object; "rows": a list; "v2": Open Inference Protocol
    request_id: str | None = None


def request_payload(request: dict[str, Any], headers: dict[str, Any] | None = None) -> Payload:
    """The body of one TorchServe request and its media type, from the part or the request."""
    headers = headers or {}
    key = next((k for k in BODY_KEYS if request.get(k) is not None), None)
    # A multipart upload names its field as the client chose: take the first file-like one.
    key = key or next((k for k, v in request.items() if isinstance(v, (bytes, bytearray))), None)
    if key is None:
        raise RequestError(400, "empty_body", "The request has no body. Send the input as the request body.")
    part = headers.get(key)
    media = part.get("content-type", "") if isinstance(part, dict) else ""
    if not media:
        media = next((str(v) for k, v in headers.items() if k.lower() == "content-type"), "")
    return Payload(request[key], media.split(";")[0].strip().lower())


def check_media_type(payload: Payload, accepted: tuple[str, ...]) -> None:
    if payload.media_type and payload.media_type not in accepted:
        raise RequestError(
            415,
            "unsupported_media_type",
            f"Content-Type {payload.media_type} is not accepted; use one of: {', '.join(accepted)}.",
        )


def check_size(raw: bytes, limits: Limits) -> None:
    if not raw:
        raise RequestError(400, "empty_body", "The request body is empty.")
    if len(raw) > limits.max_body_bytes:
        raise RequestError(
            413,
            "body_too_large",
            f"The body is {len(raw)} bytes; the limit is {limits.max_body_bytes} bytes.",
        )


def parse_json(payload: Any, limits: Limits) -> Any:
    """Parse a JSON body (bytes or already parsed), refusing bad UTF-8 and deep nesting."""
    if isinstance(payload, (bytes, bytearray)):
        raw = bytes(payload)
        check_size(raw, limits)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestError(
                400, "invalid_utf8", f"The body is not valid UTF-8 ({e.reason} at byte {e.start})."
            ) from e
        if _nesting_depth(text) > limits.max_json_depth:
            raise RequestError(400, "json_too_deep", f"JSON nesting deeper than {limits.max_json_depth} levels.")
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as e:
            raise RequestError(400, "invalid_json", f"The body is not valid JSON: {e.msg} at position {e.pos}.") from e
    if isinstance(payload, str):
        return parse_json(payload.encode("utf-8"), limits)
    if _object_depth(payload) > limits.max_json_depth:
        raise RequestError(400, "json_too_deep", f"JSON nesting deeper than {limits.max_json_depth} levels.")
    return payload


def _object_depth(doc: Any) -> int:
    """Nesting depth of JSON TorchServe already parsed (iterative: no recursion limit)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _reject_constant(name: str) -> None:
    raise RequestError(400, "non_finite_number", f"{name} is not a valid input value; send finite numbers.")


def _nesting_depth(text: str) -> int:
    """Bracket depth outside strings, found without building anything (cheap on huge input)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def finite_numbers(values: Any, what: str, expected_len: int) -> list[float]:
    """A flat list of `expected_len` finite numbers, or a RequestError naming what was wrong."""
    if not isinstance(values, list):
        raise RequestError(400, "wrong_type", f"{what} must be a list of {expected_len} numbers.")
    if len(values) != expected_len:
        raise RequestError(400, "wrong_shape", f"{what} has {len(values)} values; expected {expected_len}.")
    out = []
    for i, v in enumerate(values):
        # bool is an int in Python, but `true` is not a measurement.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RequestError(400, "wrong_type", f"{what}[{i}] is {json.dumps(v)[:40]}; expected a number.")
        if not math.isfinite(v):
            raise RequestError(400, "non_finite_number", f"{what}[{i}] is {v}; send finite numbers.")
        out.append(float(v))
    return out
