"""Export to TorchScript (script, not trace: no example input decides the graph) and gate it."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from training.data import Splits
from training.gates import GateResult, parity_gate, quality_gate
from training.specs import ModelSpec
from training.train import evaluate


def export_torchscript(model: nn.Module, path: Path) -> torch.jit.ScriptModule:
    """Script `model` in eval mode and save it atomically to `path`."""
    scripted = torch.jit.script(model.eval())
    tmp = path.with_suffix(".tmp")
    scripted.save(str(tmp))
    os.replace(tmp, path)
    return torch.jit.load(str(path))  # gate what was written, not what is in memory


def run_gates(spec: ModelSpec, eager: nn.Module, exported: nn.Module, splits: Splits) -> list[GateResult]:
    """Parity on the validation split; quality of the exported model on the held-out test split."""
    parity = parity_gate(eager, exported, splits.val, spec.classifier)
    value = evaluate(exported, spec, splits.test)[spec.gate_metric]
    return [parity, quality_gate(spec.gate_metric, value, spec.gate_threshold)]
