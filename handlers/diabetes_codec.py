"""Diabetes codec: {"features": [10 raw numbers]} -> float32 row -> {"prediction": float}."""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers.codec import Limits, RequestError, finite_numbers, parse_json, request_body

# scikit-learn's load_diabetes column order: the order clients send raw values in.
FEATURE_NAMES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def decode_request(request: dict[str, Any], limits: Limits) -> np.ndarray:
    """One request -> (10,) float32 raw feature values, in FEATURE_NAMES order."""
    doc = parse_json(request_body(request), limits)
    if isinstance(doc, dict) and "features" in doc:
        return np.array(finite_numbers(doc["features"], "features", len(FEATURE_NAMES)), np.float32)
    raise RequestError(
        400,
        "unsupported_input",
        f'Send JSON {{"features": [{len(FEATURE_NAMES)} numbers]}} in the order {", ".join(FEATURE_NAMES)}.',
    )


def encode_response(output: np.ndarray) -> dict[str, float]:
    return {"prediction": float(output)}
