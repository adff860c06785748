"""Export to TorchScript or ONNX, then gate the written file as the serving worker loads it.

TorchScript is scripted, not traced: no example input decides the graph. ONNX goes through
the dynamo exporter with a dynamic batch axis, the ONNX checker, and ONNX Runtime's offline
optimiser; the optimised copy is what ships.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from handlers import runtime as runtimes
from training.data import Splits
from training.errors import ExportFailed
from training.files import write_atomically
from training.gates import GateResult, cosine_gate, parity_gate, quality_gate
from training.per_row import quantize_rows
from training.smoothing import smoothed
from training.specs import ExportSettings, ModelSpec
from training.train import score

OPTIMISED_SUFFIX = ".opt.onnx"
INT8_SUFFIX = ".int8.onnx"
DEFAULT_SETTINGS = ExportSettings()


def export_torchscript(
    model: nn.Module, path: Path, example: torch.Tensor, settings: ExportSettings = DEFAULT_SETTINGS
) -> Path:
    """Script `model` in eval mode to `path`, or trace it on `example` when it is not scriptable
    (a traced graph is only as good as its shapes: the parity gate runs it on every shape of
    the validation split)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if settings.trace:
            graph = torch.jit.trace(model.eval(), (example,), strict=False, check_trace=False)
        else:
            graph = torch.jit.script(model.eval())
    write_atomically(path, lambda tmp: graph.save(str(tmp)))
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


def _write_onnx(model: nn.Module, example: torch.Tensor, settings: ExportSettings, path: Path) -> None:
    """The dynamo exporter's graph, with the model's dynamic axes, as one checked file (or the
    model's own assembled graph, `settings.onnx_graph`)."""
    import onnx

    if settings.onnx_graph is not None:
        settings.onnx_graph(path)
        onnx.checker.check_model(str(path), full_check=True)
        return

    with _quiet_exporter():
        program = torch.onnx.export(
            model.eval(),
            (example,),
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({axis: torch.export.Dim(f"axis{axis}") for axis in settings.dynamic_axes},),
            dynamo=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)  # one self-contained file: these models are small
    onnx.checker.check_model(str(path), full_check=True)


def export_onnx(
    model: nn.Module, path: Path, example: torch.Tensor, settings: ExportSettings = DEFAULT_SETTINGS
) -> Path:
    """ONNX with a dynamic batch axis, checked, then optimised offline; returns the optimised file.

    `path` (`<name>.onnx`) keeps the exporter's graph for inspection; `<name>.opt.onnx` beside it
    is ONNX Runtime's graph-optimised copy that the archive ships.
    """
    import onnxruntime as ort

    def optimise(tmp: Path) -> None:
        options = ort.SessionOptions()
        # Extended, not all: the "all" level adds CPU-specific layouts that may not load on
        # another machine; the handler applies those at load time on the serving CPU.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    write_atomically(path, lambda tmp: _write_onnx(model, example, settings, tmp))
    optimised = path.with_suffix(OPTIMISED_SUFFIX)
    write_atomically(optimised, optimise)
    return optimised


class _Rows:
    """ONNX Runtime's calibration reader: one input row per batch, as the model would get it."""

    def __init__(self, rows: list[np.ndarray]) -> None:
        self._rows = iter(rows)

    def get_next(self) -> dict[str, np.ndarray] | None:
        row = next(self._rows, None)
        return None if row is None else {"input": row}


def export_int8(
    model: nn.Module,
    path: Path,
    example: torch.Tensor,
    settings: ExportSettings = DEFAULT_SETTINGS,
    calibration: list[np.ndarray] | None = None,
) -> Path:
    """ONNX, then ONNX Runtime's static int8 quantization: weights per channel, activation
    scales fixed at build time from `calibration` (MinMax), so a row's answer never depends on
    the other rows of its pass (dynamic quantization scaled by the whole batch, and a client
    could move other clients' vectors). MatMul with a constant weight only (the attention's
    activation x activation products stay float32), QOperator form, and the nodes the model
    names in `int8_per_row` quantized per row at run time instead (training.per_row); the Linear
    layers it names in `int8_smoothed` are smoothed first (training.smoothing). Returns
    `<name>.int8.onnx`.

    Measured on MiniLM (README, "Text model"): QDQ form, symmetric activations or Percentile
    and Entropy calibration all lose cosine against this choice.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ValueError("int8 needs calibration rows (the training split, else the held-out test split)")

    def quantize(tmp: Path) -> None:
        graph = onnx.load(str(path), load_external_data=False).graph
        per_row = [
            node.name
            for node in graph.node
            if node.op_type == "MatMul"
            and any(
                re.search(p, prop.value)
                for prop in node.metadata_props
                if prop.key == "namespace"
                for p in settings.int8_per_row
            )
        ]
        if settings.int8_per_row and not per_row:
            raise ValueError(f"no ONNX node matches int8_per_row {settings.int8_per_row}: check the namespaces")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process: measured, no difference here
        try:
            quantize_static(
                str(path), str(tmp), _Rows(calibration),
                quant_format=QuantFormat.QOperator, op_types_to_quantize=["MatMul"], per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=per_row, reduce_range=False,
                extra_options={"MatMulConstBOnly": True},
            )  # fmt: skip
        finally:
            root.setLevel(level)
        if per_row:
            quantized = onnx.load(str(tmp))
            quantize_rows(quantized, set(per_row))
            onnx.checker.check_model(quantized, full_check=True)
            onnx.save(quantized, str(tmp))

    if settings.int8_smoothed:
        model = smoothed(model, settings.int8_smoothed, calibration)
    write_atomically(path, lambda tmp: _write_onnx(model, example, settings, tmp))
    quantized = path.with_suffix(INT8_SUFFIX)
    write_atomically(quantized, quantize)
    return quantized


def calibration_rows(spec: ModelSpec, splits: Splits) -> list[np.ndarray]:
    """Rows to fix int8 activation scales on, one at a time and trimmed as served: the training
    split, else the held-out test split; never the validation split, so the parity gate
    measures inputs the scales never saw."""
    x = splits.train.x if len(splits.train.x) else splits.test.x
    return [(spec.trim(x[i : i + 1]) if spec.trim else x[i : i + 1]).numpy() for i in range(len(x))]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    file_suffix: str  # of the exporter's file
    shipped_suffix: str  # of the file the archive ships, which the export function returns
    export: Callable[[nn.Module, Path, torch.Tensor], Path]
    # Max |exported - eager| on the validation split. Scripting runs the same kernels (noise
    # only); ONNX Runtime has its own kernels and fusions, so float32 rounding differs more.
    # A lossy format (int8) is held to the cosine of each output row instead: (mean, min).
    tolerance: float | None
    # The packages that write the file, recorded in the model card for reproducing it.
    packages: tuple[str, ...]
    cosine: tuple[float, float] | None = None
    # The export takes calibration rows (static quantization's activation scales).
    calibrated: bool = False


FORMATS: dict[str, ExportFormat] = {
    "torchscript": ExportFormat("torchscript", ".pt", ".pt", export_torchscript, 1e-5, ("torch",)),
    "onnx": ExportFormat(
        "onnx", ".onnx", OPTIMISED_SUFFIX, export_onnx, 1e-4, ("torch", "onnx", "onnxscript", "onnxruntime")
    ),
    # Only for models that declare it (ModelSpec.formats): a quantized graph is held to cosine
    # similarity with eager, mean >= 0.99 and every row >= 0.97.
    "int8": ExportFormat(
        "int8",
        ".onnx",
        INT8_SUFFIX,
        export_int8,
        None,
        ("torch", "onnx", "onnxscript", "onnxruntime"),
        cosine=(0.99, 0.97),
        calibrated=True,
    ),  # fmt: skip
}


def export(spec: ModelSpec, model: nn.Module, out_dir: Path, fmt: ExportFormat, splits: Splits) -> Path:
    """Export `model` into `out_dir`; returns the file the archive ships. Raises ExportFailed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        example = splits.val.x[:2] if spec.trim is None else spec.trim(splits.val.x[:2])
        extra = {"calibration": calibration_rows(spec, splits)} if fmt.calibrated else {}
        return fmt.export(model, out_dir / f"{spec.name}{fmt.file_suffix}", example, spec.export, **extra)
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
    fmt: ExportFormat,
) -> list[GateResult]:
    """Parity on the validation split; quality of the exported model on the held-out test split."""
    run = spec.run
    if fmt.cosine:
        parity = cosine_gate(eager, exported, splits.val, *fmt.cosine, run=run)
    else:
        parity = parity_gate(
            eager, exported, splits.val, spec.classifier, fmt.tolerance, run=run, ranked=spec.export.ranked
        )
    value = score(spec, run(exported, splits.test.x), splits.test.y)[spec.gate.metric]
    return [parity, quality_gate(spec.gate.metric, value, spec.gate.threshold, spec.gate.higher_is_better)]
