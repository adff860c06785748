"""Gates: a verdict with the measured value and the threshold. A failed gate stops the build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from training.data import Split
from training.errors import GateFailed


@dataclass
class GateResult:
    gate: str
    passed: bool
    value: float
    threshold: float
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def _whole(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return model(x)


@torch.no_grad()
def parity_gate(
    eager: nn.Module,
    exported: Callable[[torch.Tensor], torch.Tensor],
    data: Split,
    classifier: bool,
    tolerance: float,
    run: Callable = _whole,
    ranked: bool = False,
) -> GateResult:
    """Exported vs eager outputs on a whole split: max |diff| and, for classifiers, every argmax.

    Each export format sets its own tolerance (training.export.FORMATS); `run` runs a model
    over the split (ModelSpec.run: in chunks, each trimmed). A `ranked` model's outputs are top-k
    (scores, ids): see `ranking_parity`."""
    eager.eval()
    expected, actual = run(eager, data.x), run(exported, data.x)
    if expected.shape != actual.shape:  # broadcasting would otherwise hide it
        detail = f"exported output shape {tuple(actual.shape)} != eager {tuple(expected.shape)}"
        return GateResult("parity", False, float("inf"), tolerance, detail)
    if ranked:
        return ranking_parity(expected, actual, tolerance)
    max_diff = (expected - actual).abs().max().item()
    mismatched = int((expected.argmax(1) != actual.argmax(1)).sum()) if classifier else 0
    passed = max_diff <= tolerance and mismatched == 0
    detail = f"max |exported - eager| = {max_diff:.3g} (threshold {tolerance:g}) on {len(data)} samples"
    if classifier:
        detail += f", {mismatched} predicted classes differ (threshold 0)"
    return GateResult("parity", passed, max_diff, tolerance, detail)


def ranking_parity(expected: torch.Tensor, actual: torch.Tensor, tolerance: float) -> GateResult:
    """Top-k parity for (rows, 2, k) outputs of (scores, ids): every rank's score within the
    tolerance, and every rank's id the same unless the two items' scores tie within it (a
    runtime may order tied items either way; any other difference in the ids fails)."""
    scores, ids = expected[:, 0], expected[:, 1]
    max_diff = (scores - actual[:, 0]).abs().max().item()
    differ = ids != actual[:, 1]
    # Where the exported list has another item, that item must sit in eager's list at a rank of
    # the same score, or just past its end at the last rank's score.
    same_item = actual[:, 1, :, None] == ids[:, None, :]
    tied = (scores[:, :, None] - scores[:, None, :]).abs() <= tolerance
    in_tie = (same_item & tied).any(2) | (~same_item.any(2) & ((actual[:, 0] - scores[:, -1:]).abs() <= tolerance))
    unexplained = int((differ & ~in_tie).sum())
    passed = max_diff <= tolerance and unexplained == 0
    detail = (
        f"max |exported - eager| score = {max_diff:.3g} (threshold {tolerance:g}) on {len(expected)} samples; "
        f"{int(differ.sum())} of {ids.numel()} top-k ids differ, {unexplained} of them not between tied scores (threshold 0)"
    )
    return GateResult("parity", passed, max_diff, tolerance, detail)


@torch.no_grad()
def cosine_gate(
    eager: nn.Module,
    exported: Callable[[torch.Tensor], torch.Tensor],
    data: Split,
    mean_at_least: float,
    min_at_least: float,
    run: Callable = _whole,
) -> GateResult:
    """Parity for a lossy export (int8): each output row's cosine to eager's, mean and minimum."""
    eager.eval()
    cos = torch.nn.functional.cosine_similarity(run(eager, data.x), run(exported, data.x), dim=1)
    mean, low = cos.mean().item(), cos.min().item()
    passed = mean >= mean_at_least and low >= min_at_least
    detail = (
        f"cosine(exported, eager) mean {mean:.4f} (threshold {mean_at_least:g}), "
        f"min {low:.4f} (threshold {min_at_least:g}) on {len(data)} samples"
    )
    return GateResult("parity", passed, low, min_at_least, detail)


def quality_gate(metric: str, value: float, threshold: float, higher_is_better: bool = True) -> GateResult:
    """Held-out metric on the right side of its threshold (at or above it, or at or below)."""
    passed = value >= threshold if higher_is_better else value <= threshold
    relation = (">=" if passed else "<") if higher_is_better else ("<=" if passed else ">")
    return GateResult(
        "quality", passed, value, threshold, f"held-out {metric} = {value:.4f} {relation} threshold {threshold:g}"
    )


def enforce(results: list[GateResult]) -> None:
    for result in results:
        if not result.passed:
            raise GateFailed(result)
