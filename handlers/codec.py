"""What every model's codec shares: the error type, the limits, and safe JSON parsing."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import orjson

# The largest magnitude the models' float32 inputs can hold.
FLOAT32_MAX = float(np.finfo(np.float32).max)
BINARY_HEADER = "Inference-Header-Content-Length"
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
    # Checked from the image's headers, before decoding: a 2 kB PNG can hold 16 M pixels.
    max_image_pixels: int = 4096 * 4096
    # The largest buffer decoding may fill (PNG: pixels x bytes per pixel; progressive JPEG:
    # its DCT coefficients), which is what sets a decode's CPU time and memory.
    # 8 MiB decodes in about 50 ms of a worker's CPU here (a 2896 x 2896 8-bit grayscale PNG).
    max_decoded_bytes: int = 8 * 1024 * 1024
    # Structure that costs work however small the pixels: PNG chunks, JPEG scans.
    max_image_chunks: int = 4096
    max_jpeg_scans: int = 16  # libjpeg's progressive colour script has 10
    max_json_depth: int = 8
    # Numbers, strings and keys in one JSON body: parsing costs per value, not per byte.
    # 64 rows of 28 x 28 pixels (50,176) fit.
    max_json_values: int = 65536
    # Rows one request may carry (a list of rows, or an Open Inference Protocol tensor).
    max_rows: int = 64
    # Form fields (multipart parts) or query parameters one request may carry.
    max_parts: int = 4
    # UTF-8 bytes of one text (text models): tokenizing costs per byte, before truncation.
    max_text_bytes: int = 16 * 1024
    # Audio models, checked from the file's header before decoding (handlers.codecs.audio):
    # its duration, its sample rate, and the samples decoding fills (frames x channels at the
    # file's own rate: a 46 kB FLAC of silence can hold 60 s x 8 channels at 96 kHz, 184 MB
    # of float32). 60 s of 48 kHz stereo is 5.76 M samples: about 130 ms to decode and resample.
    max_audio_seconds: int = 60
    max_audio_samples: int = 60 * 48000 * 2
    max_sample_rate: int = 192000
    # Recommendation: the ids of one history (a user's vector and what the answer excludes).
    # MovieLens 100k's most active user has 737 interactions.
    max_history_ids: int = 2048
    # The work of one forward pass, in the kind's cost unit (codec COST_UNIT: padded tokens,
    # pixels, rows); a request that alone costs more is refused with a 413. And the work of one
    # worker call: past it, the dearest requests are answered 429 at once (handlers.scheduling).
    # Each model sets both from a measurement (models/<name>.py); these defaults bind nothing
    # the other limits allow (64 rows of 64 x 64 pixels).
    max_pass_cost: int = 64 * 64 * 64
    max_call_cost: int = 8 * 64 * 64 * 64

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Limits:
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in values.items() if k in names})


@dataclass(frozen=True)
class Payload:
    """One request's body and its media type ("" when the caller sent none)."""

    value: Any  # bytes; or str / parsed JSON when TorchServe decoded the body itself
    media_type: str = ""
    # The Open Inference Protocol's Inference-Header-Content-Length: the body is a JSON header
    # of that many bytes, then the inputs' binary data (the binary tensor data extension).
    binary_header: str | None = None


@dataclass(frozen=True)
class Decoded:
    """What one request asks for: `rows` (k, *input shape) and the form to answer in."""

    rows: np.ndarray
    form: str  # "single": one object; "rows": a list; "v2": Open Inference Protocol
    request_id: str | None = None
    # Names of the values in a row (tabular models), so an error can point at one.
    feature_names: tuple[str, ...] | None = None
    # Per row, whether the input was cut to fit the model (texts over max_tokens).
    truncated: tuple[bool, ...] = ()
    # Cost units of one row as the model runs it (text: its padded tokens; image: pixels).
    length: int = 1
    # Open Inference Protocol answers: which outputs go in binary (True: all; False: none).
    binary_outputs: bool | frozenset[str] = False
    # Labels a classifier's JSON answer lists (0: the contract's default).
    top_k: int = 0
    # What else a kind's answer needs (audio: the samples before padding, whether to list
    # per-chunk probabilities).
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def cost(self) -> int:
        return len(self.rows) * self.length


def undecodable(error: Exception) -> RequestError:
    """Any other exception while decoding a request: still that request's own 400."""
    return RequestError(
        400, "undecodable_input", f"The input could not be read ({type(error).__name__}: {error}"[:300] + ")."
    )


def check_cost(decoded: Decoded, limits: Limits, unit: str) -> None:
    """A request that alone exceeds one forward pass's budget is refused before it is queued."""
    if decoded.cost > limits.max_pass_cost:
        raise RequestError(
            413,
            "request_too_costly",
            f"The request costs {decoded.cost} {unit} ({len(decoded.rows)} rows of {decoded.length}); the limit is "
            f"{limits.max_pass_cost} {unit} per request (max_pass_cost). Split it into smaller requests.",
        )


def busy(limits: Limits, unit: str) -> RequestError:
    """A valid request that this worker call had no budget left for: the client retries it."""
    return RequestError(
        429,
        "worker_busy",
        f"This worker call already spends its budget of {limits.max_call_cost} {unit} (max_call_cost) on cheaper "
        "requests; retry in a moment.",
    )


def non_finite_output(decoded: Decoded) -> RequestError:
    """The model answered NaN or infinity for this request: name its most extreme input value."""
    rows = decoded.rows.reshape(len(decoded.rows), -1)
    row, col = np.unravel_index(int(np.argmax(np.abs(rows))), rows.shape)
    name = decoded.feature_names[col] if decoded.feature_names else f"value {col}"
    return RequestError(
        422,
        "non_finite_output",
        f"The model's output for row {row} is not finite; its most extreme input is {name} = {rows[row, col]:g}. "
        "Send values in the range the model was trained on.",
    )


def request_payload(request: dict[str, Any], limits: Limits, headers: dict[str, Any] | None = None) -> Payload:
    """The body of one TorchServe request and its media type, from the part or the request.

    A multipart upload arrives as one entry per form field: the fields are counted and their
    bytes summed against the same limits as a plain body, so a form cannot carry more.
    """
    headers = headers or {}
    if len(request) > limits.max_parts:
        raise RequestError(
            413, "too_many_parts", f"The request has {len(request)} parts; the limit is {limits.max_parts}."
        )
    total = sum(len(v) for v in request.values() if isinstance(v, (bytes, bytearray, str)))
    if total > limits.max_body_bytes:
        raise RequestError(
            413, "body_too_large", f"The request carries {total} bytes; the limit is {limits.max_body_bytes} bytes."
        )
    key = next((k for k in BODY_KEYS if request.get(k) is not None), None)
    # A multipart upload names its field as the client chose: take the first file-like one.
    key = key or next((k for k, v in request.items() if isinstance(v, (bytes, bytearray))), None)
    if key is None:
        raise RequestError(400, "empty_body", "The request has no body. Send the input as the request body.")
    part = headers.get(key)
    media = part.get("content-type", "") if isinstance(part, dict) else ""
    if not media:
        media = header(headers, "content-type") or ""
    return Payload(request[key], media.split(";")[0].strip().lower(), header(headers, BINARY_HEADER))


def header(headers: dict[str, Any], name: str) -> str | None:
    """A request header by name, whatever its case (TorchServe keeps the client's), as text."""
    value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else None if value is None else str(value)


def check_media_type(payload: Payload, accepted: tuple[str, ...]) -> None:
    if payload.binary_header is not None:  # a protocol body: JSON header + tensors, any label
        accepted = (*accepted, "application/octet-stream")
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
    """Parse a JSON body, refusing bad UTF-8, deep nesting, NaN and Infinity; all in C.

    orjson is strict JSON (no NaN/Infinity constants, numbers too large for a double are
    refused) and caps nesting at 1024 by itself; the tighter depth limit is found by
    `json_shape` with bytes.replace and NumPy, never a Python loop over the characters.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    elif not isinstance(payload, (bytes, bytearray)):  # already parsed (in-process callers)
        payload = json.dumps(payload).encode()
    raw = bytes(payload)
    check_size(raw, limits)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, "invalid_utf8", f"The body is not valid UTF-8 ({e.reason} at byte {e.start}).") from e
    depth, values = json_shape(raw)
    if depth > limits.max_json_depth:
        raise RequestError(400, "json_too_deep", f"JSON nesting deeper than {limits.max_json_depth} levels.")
    if values > limits.max_json_values:
        raise RequestError(
            413, "too_many_values", f"The JSON holds about {values} values; the limit is {limits.max_json_values}."
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if "depth" in e.msg:
            raise RequestError(400, "json_too_deep", f"JSON nesting deeper than {limits.max_json_depth} levels.") from e
        if "infinity" in e.msg or raw[e.pos :].startswith((b"NaN", b"Infinity", b"-Infinity")):
            detail = f"{raw[e.pos : e.pos + 12].decode(errors='replace')!r} at position {e.pos} is not a finite number."
            raise RequestError(400, "non_finite_number", f"{detail} Send finite numbers.") from e
        raise RequestError(400, "invalid_json", f"The body is not valid JSON: {e.msg} at position {e.pos}.") from e


# +1 for an opening bracket, -1 for a closing one, 0 for any other byte.
_BRACKET_STEP = np.zeros(256, np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1
_QUOTE, _COMMA = ord('"'), ord(",")


def json_shape(raw: bytes) -> tuple[int, int]:
    """(bracket depth, values) outside strings, in C: escapes dropped, quotes paired by a cumsum.

    Values are counted as commas + 1, an upper bound on the elements of any one container,
    so the parser never sees more values than the limit (parsing cost is per value).

    Dropping escaped backslashes, then escaped quotes (left to right, as bytes.replace does)
    leaves only the quotes that open and close strings; a byte lies outside every string
    when an even number of quotes comes before it.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    chars = np.frombuffer(unescaped, np.uint8)
    # One byte per character until the final depth sum: a 4 MiB body stays near 30 MiB.
    outside = np.bitwise_xor.accumulate((chars == _QUOTE).view(np.uint8)) == 0
    steps = np.where(outside, _BRACKET_STEP[chars], np.int8(0))
    commas = int(np.count_nonzero((chars == _COMMA) & outside))
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0)), commas + 1


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
        if abs(v) > FLOAT32_MAX:  # finite here, infinite once the model casts it to float32
            raise RequestError(400, "out_of_range", f"{what}[{i}] is {v:g}; the model takes |x| <= {FLOAT32_MAX:.4g}.")
        out.append(float(v))
    return out
