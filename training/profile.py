"""The reference profile of an archive: its held-out split's signals, bucketed, through the exported model.

Written into the model card (`reference_profile`), shown by describe, and read by the worker
(handlers.monitoring), which counts live rows into the same buckets; Prometheus compares the
two (tsforge.monitoring.rules). Bucket edges are fixed here, once: quantiles of the held-out
values, so each bucket holds a similar share of the reference and a shift shows in any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from handlers.codecs import codec_for
from handlers.monitoring import (
    CONFIDENCE_EDGES,
    INPUT,
    MAX_CLASS_BUCKETS,
    OUTPUT,
    SMOOTHING,
    bucket_of,
    output_signals,
    task_of,
)
from training.data import Split
from training.specs import ModelSpec
from training.train import score

# Buckets per numeric signal: ten, fewer for a small split (about ten rows per bucket, at
# least three), so a reference share is never one or two rows.
MAX_BUCKETS, MIN_BUCKETS, ROWS_PER_BUCKET = 10, 3, 10


def shares(counts: np.ndarray) -> list[float]:
    smoothed = counts + SMOOTHING
    return (smoothed / smoothed.sum()).tolist()


def numeric(name: str, side: str, values: np.ndarray, edges: np.ndarray | None = None) -> dict[str, Any]:
    """A numeric signal: quantile edges of the reference (or the given ones), right-closed buckets."""
    values = np.asarray(values, np.float64)
    if edges is None:
        buckets = int(np.clip(len(values) // ROWS_PER_BUCKET, MIN_BUCKETS, MAX_BUCKETS))
        edges = np.unique(np.quantile(values, np.linspace(0, 1, buckets + 1)[1:-1]))
    signal = {"name": name, "side": side, "edges": np.asarray(edges, np.float64).tolist()}
    # The worker's own bucketing (handlers.monitoring), so reference and live counts agree.
    counts = np.bincount(bucket_of(signal, values), minlength=len(signal["edges"]) + 1)
    return {**signal, "counts": counts.tolist(), "shares": shares(counts)}


def classes(predicted: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """The predicted class's share: every label, or the most frequent and "other" past MAX_CLASS_BUCKETS."""
    per_label = np.bincount(predicted, minlength=len(labels))
    if len(labels) <= MAX_CLASS_BUCKETS:
        named = list(range(len(labels)))
    else:  # most frequent first, ties by label order
        named = sorted(np.argsort(-per_label, kind="stable")[: MAX_CLASS_BUCKETS - 1].tolist())
    counts = [int(per_label[i]) for i in named]
    if len(named) < len(labels):
        counts.append(int(per_label.sum()) - sum(counts))
    names = [labels[i] for i in named] + (["other"] if len(named) < len(labels) else [])
    return {
        "name": "class",
        "side": OUTPUT,
        "classes": named,
        "labels": len(labels),
        "bucket_names": names,
        "counts": counts,
        "shares": shares(np.asarray(counts, np.float64)),
    }


@torch.no_grad()
def reference_profile(
    spec: ModelSpec, exported: Callable[[torch.Tensor], torch.Tensor], held_out: Split
) -> dict[str, Any]:
    """Every signal of the held-out split through the exported model, with its held-out metrics
    (the model's own: accuracy for digits, R² for diabetes, ...)."""
    contract = spec.contract
    answers = spec.run(exported, held_out.x)
    outputs = answers.numpy().astype(np.float32)
    rows = held_out.x.numpy()
    task = task_of(contract)
    centroid = None
    if task == "embedding":
        mean = outputs.mean(0)
        centroid = mean / np.linalg.norm(mean)
    inputs, outs = _signals(spec, rows, outputs, task, centroid, held_out)
    signals = [numeric(name, INPUT, v) for name, v in inputs.items()]
    scored = score(spec, answers, held_out.y) if held_out.y is not None else {}
    metrics = {name: value for name, value in scored.items() if isinstance(value, float)}
    stats: dict[str, Any] = {"rows": len(rows), "metrics": metrics}
    if task == "classification":
        signals.append(classes(outs["class"], contract.labels))
        signals.append(numeric("confidence", OUTPUT, outs["confidence"], np.asarray(CONFIDENCE_EDGES)))
        stats["mean_confidence"] = float(outs["confidence"].mean())
    else:
        signals += [numeric(name, OUTPUT, v) for name, v in outs.items()]
    profile = {"split": "test (held out)", "signals": signals, "stats": stats}
    if centroid is not None:
        profile["centroid"] = centroid.tolist()
    return profile


def _signals(
    spec: ModelSpec, rows: np.ndarray, outputs: np.ndarray, task: str, centroid: np.ndarray | None, held_out: Split
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Input and output signals per held-out row; row by row, each cut to its own length, when
    the split pads its rows (a served request is never padded to another's length)."""
    codec = codec_for(spec.contract.kind)
    if spec.row_lengths is None:
        return codec.input_signals(rows, spec.contract), output_signals(outputs, task, centroid)
    lengths = spec.row_lengths(held_out)
    ins = [codec.input_signals(rows[i : i + 1, :n], spec.contract) for i, n in enumerate(lengths)]
    outs = [output_signals(outputs[i : i + 1, :n], task, centroid) for i, n in enumerate(lengths)]

    def joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    return joined(ins), joined(outs)
