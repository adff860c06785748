"""Export to TorchScript or ONNX, then gate the written file as the serving worker loads it.

TorchScript is scripted, not traced: no example input decides the graph. ONNX goes through
the dynamo exporter with a dynamic batch axis, the ONNX checker, and ONNX Runtime's offline
optimiser; the optimised copy is what ships.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from handlers import runtime as runtimes
from training.data import Splits
from training.gates import GateResult, parity_gate, quality_gate
from training.specs import ModelSpec
from training.train import score

OPTIMISED_SUFFIX = ".opt.onnx"


class ExportFailed(RuntimeError):
    """The exporter could not write or check a model; the message says which and why."""


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` to a temporary sibling, then rename: no half-written export under `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_torchscript(model: nn.Module, path: Path, example: torch.Tensor) -> Path:
    """Script `model` in eval mode to `path` (`example` is unused: scripting needs none)."""
    scripted = torch.jit.script(model.eval())
    _write_atomically(path, lambda tmp: scripted.save(str(tmp)))
    return path


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's noise that says nothing about our models (torchvision ops it skips,
    a deprecation inside torch itself); its errors still surface."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def export_onnx(model: nn.Module, path: Path, example: torch.Tensor) -> Path:
    """ONNX with a dynamic batch axis, checked, then optimised offline; returns the optimised file.

    `path` (`<name>.onnx`) keeps the exporter's graph for inspection; `<name>.opt.onnx` beside it
    is ONNX Runtime's graph-optimised copy that the archive ships.
    """
    import onnx
    import onnxruntime as ort

    def export(tmp: Path) -> None:
        with _quiet_exporter():
            program = torch.onnx.export(
                model.eval(),
                (example,),
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
        program.save(str(tmp), external_data=False)  # one self-contained file: these models are small
        onnx.checker.check_model(str(tmp), full_check=True)

    def optimise(tmp: Path) -> None:
        options = ort.SessionOptions()
        # Extended, not all: the "all" level adds CPU-specific layouts that may not load on
        # another machine; the handler applies those at load time on the serving CPU.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    _write_atomically(path, export)
    optimised = path.with_suffix(OPTIMISED_SUFFIX)
    _write_atomically(optimised, optimise)
    return optimised


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # of the archive and served model names ("" for the default format)
    file_suffix: str  # of the exporter's file
    shipped_suffix: str  # of the file the archive ships, which the export function returns
    export: Callable[[nn.Module, Path, torch.Tensor], Path]
    # Max |exported - eager| on the validation split. Scripting runs the same kernels (noise
    # only); ONNX Runtime has its own kernels and fusions, so float32 rounding differs more.
    tolerance: float
    # The packages that write the file, recorded in the model card for reproducing it.
    packages: tuple[str, ...]

    def served_name(self, base: str) -> str:
        return f"{base}{self.suffix}"


FORMATS: dict[str, ExportFormat] = {
    "torchscript": ExportFormat("torchscript", "", ".pt", ".pt", export_torchscript, 1e-5, ("torch",)),
    "onnx": ExportFormat(
        "onnx", "-onnx", ".onnx", OPTIMISED_SUFFIX, export_onnx, 1e-4, ("torch", "onnx", "onnxscript", "onnxruntime")
    ),
}


def export(spec: ModelSpec, model: nn.Module, out_dir: Path, fmt: ExportFormat, splits: Splits) -> Path:
    """Export `model` into `out_dir`; returns the file the archive ships. Raises ExportFailed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return fmt.export(model, out_dir / f"{spec.name}{fmt.file_suffix}", splits.val.x[:2])
    except Exception as e:  # the exporters' own errors are long; lead with what and where
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        others = " or ".join(f"`--runtime {name}`" for name in FORMATS if name != fmt.name)
        raise ExportFailed(
            f"{fmt.name} export of {spec.name} failed ({type(e).__name__}: {first}); nothing was archived. "
            f"The other formats build on their own: `tsforge build --model {spec.name}` with {others}."
        ) from e


def loaded(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exported file behind the handlers' runtime, on the CPU, as a tensor -> tensor call."""
    run = runtimes.load(str(path), torch.device("cpu"), threads=0)
    return lambda x: torch.from_numpy(run(x.numpy()))


def run_gates(
    spec: ModelSpec,
    eager: nn.Module,
    exported: Callable[[torch.Tensor], torch.Tensor],
    splits: Splits,
    tolerance: float,
) -> list[GateResult]:
    """Parity on the validation split; quality of the exported model on the held-out test split."""
    parity = parity_gate(eager, exported, splits.val, spec.classifier, tolerance)
    value = score(spec, exported(splits.test.x), splits.test.y)[spec.gate.metric]
    return [parity, quality_gate(spec.gate.metric, value, spec.gate.threshold, spec.gate.higher_is_better)]
