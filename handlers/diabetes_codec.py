"""Diabetes codec: raw feature values in, {"prediction": float} out (scaling is in the model).

Accepted: {"features": [10 numbers]}, {"age": ..., "sex": ..., ...} (all ten named), a list
of rows (each either form), or an Open Inference Protocol tensor of shape [k, 10].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers import oip
from handlers.codec import Decoded, Limits, Payload, RequestError, check_media_type, finite_numbers, parse_json
from handlers.oip import decode_v2, is_v2_request

# scikit-learn's load_diabetes column order: the order clients send raw values in.
FEATURE_NAMES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
ACCEPTED_MEDIA = ("application/json",)
USAGE = (
    f'Send JSON {{"features": [{len(FEATURE_NAMES)} numbers]}} in the order {", ".join(FEATURE_NAMES)}, '
    "an object with those ten names, a list of rows, or an Open Inference Protocol tensor [k, 10]."
)


def decode_request(payload: Payload, limits: Limits) -> Decoded:
    """One request -> Decoded rows (k, 10) of raw feature values, in FEATURE_NAMES order."""
    check_media_type(payload, ACCEPTED_MEDIA)
    doc = parse_json(payload.value, limits)
    if is_v2_request(doc):
        return Decoded(decode_v2(doc, (len(FEATURE_NAMES),), limits), "v2", oip.request_id(doc), FEATURE_NAMES)
    if isinstance(doc, list):
        if not doc:
            raise RequestError(400, "wrong_shape", f"The list of rows is empty; send 1 to {limits.max_rows} rows.")
        if len(doc) > limits.max_rows:
            raise RequestError(413, "too_many_rows", f"{len(doc)} rows in one request; the limit is {limits.max_rows}.")
        return Decoded(np.stack([_row(r, f"rows[{i}]") for i, r in enumerate(doc)]), "rows", None, FEATURE_NAMES)
    return Decoded(_row(doc, "body")[None], "single", None, FEATURE_NAMES)


def _row(doc: Any, where: str) -> np.ndarray:
    if isinstance(doc, dict) and "features" in doc:
        return np.array(finite_numbers(doc["features"], f"{where}.features", len(FEATURE_NAMES)), np.float32)
    if isinstance(doc, dict) and set(doc) & set(FEATURE_NAMES):
        missing = [n for n in FEATURE_NAMES if n not in doc]
        unknown = [str(k)[:40] for k in doc if k not in FEATURE_NAMES]
        if missing or unknown:
            shown = f"{unknown[:5]}{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}"
            raise RequestError(
                400, "wrong_features", f"{where}: missing {missing or 'none'}, unknown {shown if unknown else 'none'}."
            )
        return np.array(finite_numbers([doc[n] for n in FEATURE_NAMES], where, len(FEATURE_NAMES)), np.float32)
    if isinstance(doc, list):
        return np.array(finite_numbers(doc, where, len(FEATURE_NAMES)), np.float32)
    raise RequestError(400, "unsupported_input", USAGE)


def encode_response(output: np.ndarray) -> dict[str, float]:
    return {"prediction": float(output)}


def encode_outputs(outputs: np.ndarray, decoded: Decoded, model_name: str) -> Any:
    """The (k,) predictions of one request, in the form the request came in."""
    if decoded.form == "v2":
        return oip.response(model_name, [oip.tensor("prediction", outputs.astype(np.float32))], decoded.request_id)
    answers = [encode_response(v) for v in outputs]
    return answers[0] if decoded.form == "single" else answers
