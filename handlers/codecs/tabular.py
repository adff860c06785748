"""Tabular kind: named numeric features in; a regression's value or a classification's label out.

Accepted: {"features": [n numbers]} in the contract's order, an object with every feature by
name, a list of rows (each either form), or an Open Inference Protocol tensor of shape [k, n].
Feature scaling, if any, lives in the model: clients send raw values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers import classification, oip
from handlers.codec import Decoded, Limits, Payload, RequestError, check_media_type, finite_numbers
from handlers.contracts import TabularContract
from handlers.oip import decode_v2, is_v2_request

ACCEPTED_MEDIA = ("application/json",)
# A forward pass's work grows with its rows.
COST_UNIT = "rows"


def usage(contract: TabularContract) -> str:
    n = len(contract.features)
    return (
        f'Send JSON {{"features": [{n} numbers]}} in the order {", ".join(contract.features)}, '
        f"an object with those {n} names, a list of rows, or an Open Inference Protocol tensor [k, {n}]."
    )


def decode_request(payload: Payload, contract: TabularContract, limits: Limits) -> Decoded:
    """One request -> Decoded rows (k, n) of raw feature values, in the contract's order."""
    check_media_type(payload, ACCEPTED_MEDIA)
    doc = oip.split_binary(payload.value, payload.binary_header, limits)
    names = contract.features
    if is_v2_request(doc):
        rows = decode_v2(doc, (len(names),), limits)
        return Decoded(rows, "v2", oip.request_id(doc), names, binary_outputs=oip.binary_outputs(doc))
    if isinstance(doc, list):
        if not doc:
            raise RequestError(400, "wrong_shape", f"The list of rows is empty; send 1 to {limits.max_rows} rows.")
        if len(doc) > limits.max_rows:
            raise RequestError(413, "too_many_rows", f"{len(doc)} rows in one request; the limit is {limits.max_rows}.")
        return Decoded(np.stack([_row(r, f"rows[{i}]", contract) for i, r in enumerate(doc)]), "rows", None, names)
    return Decoded(_row(doc, "body", contract)[None], "single", None, names)


def _row(doc: Any, where: str, contract: TabularContract) -> np.ndarray:
    names = contract.features
    if isinstance(doc, dict) and "features" in doc:
        return np.array(finite_numbers(doc["features"], f"{where}.features", len(names)), np.float32)
    if isinstance(doc, dict) and not set(doc).isdisjoint(names):
        missing = [n for n in names if n not in doc]
        unknown = [str(k)[:40] for k in doc if k not in names]
        if missing or unknown:
            shown = f"{unknown[:5]}{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}"
            raise RequestError(
                400, "wrong_features", f"{where}: missing {missing or 'none'}, unknown {shown if unknown else 'none'}."
            )
        return np.array(finite_numbers([doc[n] for n in names], where, len(names)), np.float32)
    if isinstance(doc, list):
        return np.array(finite_numbers(doc, where, len(names)), np.float32)
    raise RequestError(400, "unsupported_input", usage(contract))


def encode_outputs(outputs: np.ndarray, decoded: Decoded, contract: TabularContract, model_name: str) -> Any:
    """One request's outputs ((k,) values or (k, C) logits), in the form the request came in."""
    if contract.labels is None:
        if decoded.form == "v2":
            tensors = [oip.tensor("prediction", outputs.astype(np.float32))]
            return oip.response(model_name, tensors, decoded.request_id)
        answers_ = [{"prediction": float(v)} for v in outputs]
    else:
        if decoded.form == "v2":
            return oip.response(model_name, classification.v2_outputs(outputs, contract.labels), decoded.request_id)
        answers_ = [classification.answer(row, contract.labels) for row in outputs]
    return answers_[0] if decoded.form == "single" else answers_


def input_signals(rows: np.ndarray, contract: TabularContract) -> dict[str, np.ndarray]:
    """Every feature's raw value, per row."""
    return {name: rows[:, i] for i, name in enumerate(contract.features)}


def replay_inputs(rows: np.ndarray, contract: TabularContract) -> list[dict[str, Any]]:
    """The protocol's input that decodes back to `rows` (k, n): the raw features, as they are."""
    values = rows.astype(np.float32)
    return [{"name": "features", "shape": list(values.shape), "datatype": "FP32", "data": values}]


def oip_metadata(contract: TabularContract) -> dict[str, list[dict[str, Any]]]:
    """The tensors `decode_request` and `encode_outputs` take and give in the protocol's form."""
    if contract.labels is None:
        outputs = [oip.tensor_metadata("prediction", "FP32", [-1])]
    else:
        outputs = classification.v2_metadata(contract.labels)
    return {"inputs": [oip.tensor_metadata("features", "FP32", [-1, len(contract.features)])], "outputs": outputs}


def schema(contract: TabularContract) -> dict[str, Any]:
    """The input and output contract that the management API's describe call shows."""
    n, names = len(contract.features), ", ".join(contract.features)
    if contract.labels is None:
        output = {"json": '{"prediction": float} (a list of them for a list of rows)',
                  "open_inference_protocol": ["prediction [k] FP32"]}  # fmt: skip
    else:
        output = classification.schema(contract.labels)
    return {
        "input": {
            "application/json": [
                f'{{"features": [{names}]}} (raw values)',
                f'{{"{contract.features[0]}": ..., ...}} (all {n} named)',
                "[row, row, ...] (each row either form)",
            ],
            "open_inference_protocol": f"one tensor, shape [k, {n}], numeric datatype",
        },
        "output": output,
    }
