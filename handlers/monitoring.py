"""Drift and confidence monitoring: the rows a worker answers, counted into its archive's reference buckets.

The reference profile (training.profile, at build time, in the model card) holds per signal its
fixed bucket edges (or classes) and the held-out split's share of each bucket. A worker counts
the rows it answers into the same buckets (in bulk, off the request path: `Monitor.add` only
keeps them); `Monitor.take` hands the counts over as increments,
which handlers.base sends through TorchServe's metrics, so the frontend sums its workers and
Prometheus sums the replicas. Drift is computed there, over all of them (tsforge.monitoring);
never per worker. Inputs are never kept: only bucket counts.

Signals come from the model's own input rows and outputs, so the build computes the reference
the same way the worker computes live counts: each codec's `input_signals(rows, contract)`,
and `output_signals` here (class and top-1 confidence; regression value; an embedding's cosine
to the reference centroid).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from handlers.classification import softmax

INPUT, OUTPUT = "input", "output"
OUTCOMES = ("answered", "rejected", "failed")
# A classifier's class shares: every label, or past this many the reference's most frequent
# labels and one "other" bucket (1000 ImageNet classes would be 1000 mostly empty series).
MAX_CLASS_BUCKETS = 20
# Top-1 probability buckets: fixed, since a good model's confidences crowd near 1.
CONFIDENCE_EDGES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
# Model rows a worker keeps between counts (handlers.base counts every FLUSH_SECONDS): about 5,000
# digits, or 27 photos of 224 x 224; a busier worker counts on the request path instead.
MAX_PENDING_BYTES = 16 * 1024 * 1024
# Added to every bucket count before shares are taken, reference and live alike (Jeffreys'
# prior): no share is zero, so PSI and Jensen-Shannon stay finite when live traffic fills a
# bucket the reference left empty (tsforge.monitoring.rules smooths live counts the same way).
SMOOTHING = 0.5


def task_of(contract: Any) -> str:
    if getattr(contract, "labels", None) is not None:
        return "classification"
    return {"text": "embedding", "audio": "speech", "recommendation": "ranking"}.get(contract.kind, "regression")


def output_signals(outputs: np.ndarray, task: str, centroid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per row: the predicted class and its probability, the regression value, the embedding's
    cosine to the reference centroid, a recording's mean speech probability, or a ranking's top
    score."""
    if task == "classification":
        probs = softmax(outputs)
        return {"class": probs.argmax(1), "confidence": probs.max(1)}
    if task == "embedding":
        norms = np.linalg.norm(outputs, axis=1) * np.linalg.norm(centroid)
        return {"centroid_cosine": outputs @ centroid / np.maximum(norms, 1e-12)}
    if task == "speech":  # a recording's per-chunk speech probabilities: their mean
        return {"speech_probability": outputs.mean(1)}
    if task == "ranking":  # a recommender's (scores, items) top k: how sure its first pick is
        return {"top_score": outputs[:, 0, 0]}
    return {"prediction": outputs.reshape(len(outputs), -1)[:, 0]}


def bucket_of(signal: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """Bucket indices of `values`: numeric buckets are right-closed, (edge[i-1], edge[i]], so a
    signal that was constant (0 unknown tokens) still has a bucket above it; a class outside the
    profile's named classes goes to its last ("other") bucket."""
    if "classes" in signal:
        lookup = np.full(signal["labels"], len(signal["classes"]), np.int64)
        lookup[signal["classes"]] = np.arange(len(signal["classes"]))
        return lookup[np.asarray(values, np.int64)]
    return np.searchsorted(np.asarray(signal["edges"], np.float64), np.asarray(values, np.float64), side="left")


@dataclass
class Counts:
    """What one worker answered since the last `take`: rows per signal bucket, the sum of top-1
    confidences, and requests by outcome."""

    rows: dict[tuple[str, str, int], int]  # (side, signal, bucket) -> rows, non-zero only
    confidence_sum: float
    requests: dict[str, int]


class Monitor:
    """Counts a worker's answered rows into the profile's buckets; thread-safe (a flusher takes)."""

    def __init__(self, profile: dict[str, Any], contract: Any, input_signals: Callable[..., dict[str, np.ndarray]]):
        self.profile = profile
        self.contract = contract
        self.task = task_of(contract)
        self.input_signals = input_signals
        self.signals = profile["signals"]
        self.centroid = np.asarray(profile["centroid"], np.float32) if profile.get("centroid") else None
        sizes = [len(s["shares"]) for s in self.signals]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.series = [(s["side"], s["name"], b) for s, n in zip(self.signals, sizes, strict=True) for b in range(n)]
        # Every numeric signal bucketed by one comparison against a matrix of their edges
        # (padded with +inf): a handful of NumPy calls per worker call, whatever the signals.
        numeric = [i for i, s in enumerate(self.signals) if "edges" in s]
        self.numeric_names = [self.signals[i]["name"] for i in numeric]
        widest = max((len(self.signals[i]["edges"]) for i in numeric), default=0)
        self.edges = np.full((len(numeric), widest), np.inf)
        for row, i in enumerate(numeric):
            self.edges[row, : len(self.signals[i]["edges"])] = self.signals[i]["edges"]
        self.numeric_offsets = offsets[numeric]
        self.class_lookup = {s["name"]: offset + bucket_of(s, np.arange(s["labels"])) for s, offset in
                             zip(self.signals, offsets, strict=True) if "classes" in s}  # fmt: skip
        self._lock = threading.Lock()
        self._rows = np.zeros(len(self.series), np.int64)
        self._confidence = 0.0
        self._requests: Counter[str] = Counter()
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_bytes = 0

    def add(self, rows: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        """The answered requests of one worker call, kept to be counted at the next `take`: the
        request path only appends, and the counting runs vectorised over every call since
        (NumPy's cost per call, not per row, is what a small batch would pay). Past
        MAX_PENDING_BYTES the caller counts them at once, so memory stays bounded."""
        with self._lock:
            self._pending += zip(rows, outputs, strict=True)
            self._pending_bytes += sum(r.nbytes for r in rows)
            full = self._pending_bytes > MAX_PENDING_BYTES
        if full:
            self.count_pending()

    def count_pending(self) -> None:
        with self._lock:
            pending, self._pending, self._pending_bytes = self._pending, [], 0
        if pending:
            self.observe([rows for rows, _ in pending], [outputs for _, outputs in pending])

    def observe(self, rows: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        """Count answered requests now: their model rows and outputs."""
        values = self.signal_values(rows, outputs)
        numeric = np.stack([values[name] for name in self.numeric_names], 1).astype(np.float64)
        # Right-closed buckets: a value's bucket is the number of edges below it.
        index = [((numeric[:, :, None] > self.edges[None]).sum(2) + self.numeric_offsets).ravel()]
        index += [lookup[values[name]] for name, lookup in self.class_lookup.items()]
        counts = np.bincount(np.concatenate(index), minlength=len(self.series))
        confidence = float(values["confidence"].sum()) if "confidence" in values else 0.0
        with self._lock:
            self._rows += counts
            self._confidence += confidence

    def signal_values(self, rows: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every signal's value per row, input and output. Rows of one shape are stacked (one
        NumPy call per signal for the whole call); texts, padded per request, go one by one."""
        if len({r.shape[1:] for r in rows}) == 1:
            inputs = self.input_signals(np.concatenate(rows), self.contract)
        else:
            parts = [self.input_signals(r, self.contract) for r in rows]
            inputs = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        if len({o.shape[1:] for o in outputs}) == 1:
            produced = output_signals(np.concatenate(outputs), self.task, self.centroid)
        else:  # recordings of different lengths: one by one
            parts_out = [output_signals(o, self.task, self.centroid) for o in outputs]
            produced = {name: np.concatenate([p[name] for p in parts_out]) for name in parts_out[0]}
        return {**inputs, **produced}

    def count(self, outcome: str, requests: int = 1) -> None:
        with self._lock:
            self._requests[outcome] += requests

    def take(self) -> Counts:
        """The counts since the last take, and start again from zero."""
        self.count_pending()
        with self._lock:
            rows, self._rows = self._rows, np.zeros_like(self._rows)
            confidence, self._confidence = self._confidence, 0.0
            requests, self._requests = dict(self._requests), Counter()
        nonzero = {self.series[i]: int(rows[i]) for i in np.flatnonzero(rows)}
        return Counts(nonzero, confidence, requests)

    def reference(self) -> list[tuple[tuple[str, str, int], float]]:
        """Each bucket's reference share, in `series` order."""
        shares = [float(v) for s in self.signals for v in s["shares"]]
        return list(zip(self.series, shares, strict=True))
