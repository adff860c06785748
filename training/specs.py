"""The declaration a model module makes (`SPEC = ModelSpec(...)` in models/<name>.py).

Everything else (the training loop, export, gates, archive, handler, demo, bench, tests)
reads a ModelSpec. Defaults come from the task: a classifier gets cross-entropy, accuracy /
precision / recall / F1 / confusion matrix over its labels; a regressor MSE, MAE and R².
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchmetrics
from torch import nn

from handlers.codec import Limits
from handlers.contracts import Contract
from training.data import Split, Splits
from training.metrics import classification_loss, classification_metrics, regression_loss, regression_metrics

# Rows per forward pass when a whole split is evaluated (gates, metrics).
CHUNK = 32
# The slowest request to decode within the limits (README, "Worst-case inputs": every input
# class under ~70 ms of a worker's CPU here).
DECODE_SECONDS = 0.07
TIMEOUT_MARGIN = 4
MIN_TIMEOUT_S = 5


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    # Epochs without a better validation loss before training stops.
    patience: int
    seed: int = 42
    # Train on the first N training samples only (smoke tests); None means all.
    limit: int | None = None


@dataclass(frozen=True)
class ServingConfig:
    """Written to the archive's model-config.yaml; TorchServe and the handler read it."""

    batch_size: int
    max_batch_delay_ms: int
    workers: int
    threads_per_worker: int
    # Per-request limits (handlers.codec.Limits field -> value) that differ from the defaults;
    # max_pass_cost and max_call_cost are the budgets of one forward pass and one worker call.
    limits: tuple[tuple[str, int], ...] = ()
    # Seconds one forward pass of max_pass_cost takes on one thread on the 2-core reference
    # machine: measured, and written beside the model's limits.
    pass_seconds: float = 0.05
    # Seconds one request at the decode limits takes to decode, measured the same way: the
    # image and row kinds' DECODE_SECONDS, or the kind's own (audio: an OGG Vorbis at 60 s).
    decode_seconds: float = DECODE_SECONDS
    # None derives TorchServe's responseTimeout from the budgets (`timeout_s`); a number
    # overrides it (the fault tests' 2 s).
    response_timeout_s: int | None = None

    @property
    def timeout_s(self) -> int:
        """TorchServe's responseTimeout: a worker call at its full budget, with room to spare.

        A call decodes at most batch_size requests (each bounded by the decode limits) and runs
        at most max_call_cost of work; TIMEOUT_MARGIN covers a machine twice as slow, twice.
        """
        if self.response_timeout_s is not None:
            return self.response_timeout_s
        limits = Limits.from_mapping(dict(self.limits))
        call = self.pass_seconds * limits.max_call_cost / limits.max_pass_cost + self.batch_size * self.decode_seconds
        return max(MIN_TIMEOUT_S, math.ceil(TIMEOUT_MARGIN * call))


@dataclass(frozen=True)
class ExportSettings:
    """How the network exports: what a model that is not scriptable or has more dynamic
    axes than the batch needs to say."""

    # torch.jit.trace instead of torch.jit.script (transformers are not scriptable); the parity
    # gate then checks the traced graph on every shape of the validation split.
    trace: bool = False
    dynamic_axes: tuple[int, ...] = (0,)  # of the one input: the batch, and for text the sequence
    # ONNX node namespaces (regular expressions) of MatMuls that int8 quantizes with scales per
    # row computed at run time instead of static ones (training.per_row).
    int8_per_row: tuple[str, ...] = ()
    # Linear module names (regular expressions) smoothed before int8 (training.smoothing).
    int8_smoothed: tuple[str, ...] = ()
    # A model whose ONNX graph is assembled rather than exported (silero-vad: the wheel's own
    # step graph inside an ONNX Scan): writes the graph to the path it is given.
    onnx_graph: Callable[[Path], Path] | None = None
    # Outputs are top-k (scores, ids) pairs (rows, 2, k): parity compares the scores, and the ids
    # wherever the scores are not tied (training.gates.ranking_parity).
    ranked: bool = False


@dataclass(frozen=True)
class Gate:
    """The held-out metric a build must reach, and which way is better."""

    metric: str
    threshold: float
    higher_is_better: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """One model, declared in one module. Training settings are None for a model whose
    weights come from elsewhere (`weights`, or `tsforge build --weights FILE`)."""

    name: str
    contract: Contract  # what it takes and answers: the input kind's codec derives the rest
    model_config: Callable[[], Any]  # a dataclass saved inside the checkpoint
    build: Callable[[Any], nn.Module]
    splits: Callable[[int], Splits]  # seed -> train / val / test (val gates parity, test quality)
    gate: Gate
    serving: ServingConfig
    example: str  # a request body in examples/, sent by the demo, the benchmark and the tests
    # Export formats (training.export.FORMATS), each its own archive; the first is served under the
    # plain name (<name>, <name>-torchscript, ...): models/tuned.json reorders them (models.registry).
    formats: tuple[str, ...] = ("torchscript", "onnx")
    train: TrainConfig | None = None
    weights: Callable[[], Path] | None = None  # a state_dict checkpoint or safetensors file
    seed: int = 42  # the split seed when there is no training
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    prepare: Callable[[nn.Module, Split], None] = lambda model, train: None
    # Applied to each training batch only (never to validation, test or gates).
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    export: ExportSettings = ExportSettings()
    # Metrics for a task that is neither classification nor regression (embeddings).
    custom_metrics: Callable[[], torchmetrics.MetricCollection] | None = None
    # Cuts a chunk of the input to what it needs (text: to its longest sequence), so the gates
    # and metrics run a large split in chunks of CHUNK rows without padding them all to the max.
    trim: Callable[[torch.Tensor], torch.Tensor] | None = None
    # Each row's own length in a split whose rows are padded to the longest (audio: the chunks
    # labelled >= 0), so the reference profile reads each recording's own part only.
    row_lengths: Callable[[Split], list[int]] | None = None
    # Files that decide the metrics besides the code (evaluation sets): part of the fingerprint.
    data_files: tuple[Path, ...] = ()
    # Maps a weights file's tensors onto the network's state_dict names (default: as they are).
    adapt_weights: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda state: state
    # Where the weights, the network's code and the data come from, under which licences:
    # (what, source) pairs, written into the model card.
    provenance: tuple[tuple[str, str], ...] = ()
    # Writes the files the contract names when they are derived from data (the recommender's
    # catalogue of titles and users): run before the codec first reads them (the gates' profile
    # and replay) and before the archive copies them.
    make_files: Callable[[], Any] = lambda: None

    @property
    def classifier(self) -> bool:
        return getattr(self.contract, "labels", None) is not None

    @property
    def gate_metric(self) -> str:
        return self.gate.metric

    def metrics(self) -> torchmetrics.MetricCollection:
        if self.custom_metrics is not None:
            return self.custom_metrics()
        if self.classifier:
            return classification_metrics(len(self.contract.labels))
        return regression_metrics()

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """`model` over `x` in chunks of CHUNK rows, each trimmed (`trim`): the gates' and
        metrics' way to run a whole split."""
        chunks = [x[i : i + CHUNK] for i in range(0, len(x), CHUNK)] or [x]
        return torch.cat([model(self.trim(c) if self.trim else c) for c in chunks])

    def compute_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        default = classification_loss if self.classifier else regression_loss
        return (self.loss or default)(model, x, y)
