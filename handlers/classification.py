"""A classifier's answers, shared by the kinds that classify: the label and top-k as JSON, the
probabilities and label as Open Inference Protocol tensors, and what the describe call and the
protocol's metadata say about them."""

from __future__ import annotations

from typing import Any

import numpy as np

from handlers import oip

TOP_K = 5


def label_value(label: str) -> int | str:
    """Labels that are integers answer as numbers ("7" -> 7); any other name as itself."""
    return int(label) if label.lstrip("-").isdigit() else label


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def answer(logits: np.ndarray, labels: tuple[str, ...], top_k: int = TOP_K) -> dict[str, Any]:
    """Logits for one input -> {"label": ..., "probabilities": {label: p}} (top k, descending)."""
    probs = softmax(logits)
    order = np.argsort(-probs)[:top_k]
    return {"label": label_value(labels[order[0]]), "probabilities": {labels[i]: float(probs[i]) for i in order}}


def v2_outputs(logits: np.ndarray, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """Open Inference Protocol outputs: probabilities [k, C] FP32 and label [k] (INT64 or BYTES)."""
    probs = softmax(logits).astype(np.float32)
    best = [labels[i] for i in probs.argmax(1)]
    if label_datatype(labels) == "INT64":
        label = oip.tensor("label", np.array([int(b) for b in best], dtype=np.int64), "INT64")
    else:
        label = {"name": "label", "shape": [len(best)], "datatype": "BYTES", "data": best}
    return [oip.tensor("probabilities", probs), label]


def label_datatype(labels: tuple[str, ...]) -> str:
    """The Open Inference Protocol's type of the label output: INT64 when every label is an integer."""
    return "INT64" if all(isinstance(label_value(x), int) for x in labels) else "BYTES"


def v2_metadata(labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """The outputs `v2_outputs` answers, as the protocol's model metadata lists them."""
    return [
        oip.tensor_metadata("probabilities", "FP32", [-1, len(labels)]),
        oip.tensor_metadata("label", label_datatype(labels), [-1]),
    ]


def schema(labels: tuple[str, ...], top_k: int = TOP_K, max_top_k: int = 0) -> dict[str, Any]:
    named = f"one of {list(map(label_value, labels))}" if len(labels) <= 20 else f"one of {len(labels)} labels"
    asked = f"; a request may ask for 1..{max_top_k}" if max_top_k else ""
    return {
        "json": f'{{"label": {named}, "probabilities": {{label: p}}}} (top {min(top_k, len(labels))}{asked})',
        "open_inference_protocol": [f"probabilities [k, {len(labels)}] FP32", "label [k] INT64 or BYTES"],
    }
