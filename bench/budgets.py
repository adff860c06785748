"""What each model's budgets cost: one forward pass at max_pass_cost, in process, one thread.

The limits table of the README is generated from these figures (bench/publish.py),
beside the budgets each model declares, so a budget and the measurement behind it are read
from the same run; `ServingConfig.timeout_s` shows the responseTimeout they give.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from handlers import runtime as runtimes
from handlers.codec import Limits
from handlers.codecs import codec_for
from models.registry import SPECS
from tsforge.packaging import build
from tsforge.paths import ARTIFACTS

REPEATS = 5


@dataclass
class BudgetCost:
    model: str  # the served name: digits, digits-onnx, ...
    unit: str
    max_pass_cost: int
    max_call_cost: int
    pass_ms: float  # the best of REPEATS forward passes at max_pass_cost
    timeout_s: int  # TorchServe's responseTimeout, derived from the budgets


def worst_pass(spec, limits: Limits) -> np.ndarray:
    """A model input that costs exactly max_pass_cost in the kind's unit (text: rows of
    max_tokens; images: whole images; rows: rows)."""
    contract = spec.contract
    rng = np.random.default_rng(0)
    if contract.kind == "text":
        rows = max(1, limits.max_pass_cost // contract.max_tokens)
        batch = np.ones((rows, 2, contract.max_tokens), np.int64)
        batch[:, 0] = rng.integers(1000, 20000, (rows, contract.max_tokens))
        return batch
    if contract.kind == "image":
        images = max(1, limits.max_pass_cost // (contract.side * contract.side))
        return rng.random((images, contract.channels, contract.side, contract.side), dtype=np.float32)
    if contract.kind == "audio":  # as many of the longest recordings as a pass takes
        steps = -(-limits.max_audio_seconds * contract.sample_rate // contract.chunk)
        rows = max(1, limits.max_pass_cost // steps)
        return 0.1 * rng.standard_normal((rows, steps, contract.chunk + contract.context), dtype=np.float32)
    if contract.kind == "recommendation":  # as many of the longest histories as a pass takes (history ids)
        from handlers.codecs.recommendation import catalogue

        rows, length = max(1, limits.max_pass_cost // limits.max_history_ids), limits.max_history_ids
        batch = np.ones((rows, 3, length), np.int64)
        batch[:, 0] = rng.integers(0, len(catalogue(contract.catalogue).ids), (rows, length))
        return batch
    return rng.standard_normal((limits.max_pass_cost, len(contract.features)), dtype=np.float32)


def measure(artifacts=ARTIFACTS) -> list[BudgetCost]:
    """Every served archive's exported file, timed on its worst pass (what the worker runs)."""
    costs = []
    for spec in SPECS.values():
        limits = Limits.from_mapping(dict(spec.serving.limits))
        unit = codec_for(spec.contract.kind).COST_UNIT
        batch = worst_pass(spec, limits)
        for fmt in spec.formats:
            path = build.exported_file(spec, build.artifacts_dir(spec, artifacts), fmt)
            run = runtimes.load(str(path), torch.device("cpu"), spec.serving.threads_per_worker)
            run(batch)  # warm-up: the first call plans and allocates
            best = float("inf")
            for _ in range(REPEATS):
                started = time.perf_counter()
                run(batch)
                best = min(best, time.perf_counter() - started)
            costs.append(BudgetCost(build.served_name(spec, fmt), unit, limits.max_pass_cost,
                                    limits.max_call_cost, best * 1000, spec.serving.timeout_s))  # fmt: skip
    return costs


def table(costs: list[BudgetCost]) -> list[str]:
    rows = [
        "| served model | unit | `max_pass_cost` | `max_call_cost` | one full pass, one thread | a full call "
        "(passes at the pass's cost) | `responseTimeout` |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in costs:
        call = c.pass_ms * c.max_call_cost / c.max_pass_cost
        rows.append(
            f"| {c.model} | {c.unit} | {c.max_pass_cost:,} | {c.max_call_cost:,} | {c.pass_ms:.1f} ms | "
            f"{call:.1f} ms | {c.timeout_s} s |"
        )
    return rows
