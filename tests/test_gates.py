"""Both gates pass on real exports (TorchScript and ONNX) and can fail; a failed gate leaves no archive."""

import copy
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from handlers import runtime
from models.registry import SPECS
from training import export
from training.gates import GateFailed, enforce, parity_gate, quality_gate
from training.specs import Gate
from training.train import train
from tsforge.packaging import build

DIABETES = SPECS["diabetes"]

TS, ONNX = export.FORMATS["torchscript"], export.FORMATS["onnx"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("gates")
    return out, train(DIABETES, out, replace(DIABETES.train, epochs=20), progress=False)


def drifted(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose outputs differ from `model`'s by far more than either tolerance."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.net[0].bias += 1e-3
    return other


@pytest.mark.parametrize("fmt", [TS, ONNX], ids=lambda f: f.name)
def test_parity_passes_for_the_written_export(trained, fmt):
    out, result = trained
    path = fmt.export(result.model, out / f"model{fmt.file_suffix}", result.splits.val.x[:2])
    verdict = parity_gate(result.model, export.loaded(path), result.splits.val, False, fmt.tolerance)
    assert verdict.passed and verdict.value <= fmt.tolerance


def test_onnx_export_is_checked_has_a_dynamic_batch_axis_and_an_optimised_copy(trained):
    out, result = trained
    shipped = export.export_onnx(result.model, out / "model.onnx", result.splits.val.x[:2])
    assert shipped.name == "model.opt.onnx" and (out / "model.onnx").exists()
    graph = onnx.load(str(out / "model.onnx")).graph
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
    (batch, features) = graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param and not batch.dim_value and features.dim_value == 10
    session = runtime.load(str(shipped), torch.device("cpu"), threads=1)
    x = result.splits.test.x
    with torch.no_grad():
        expected = result.model(x).numpy()
    for n in (1, 7, len(x)):  # none of them the example's batch of 2
        assert np.abs(session(x[:n].numpy()) - expected[:n]).max() <= ONNX.tolerance


def test_parity_fails_when_the_export_differs_from_eager(trained):
    out, result = trained
    verdict = parity_gate(result.model, torch.jit.script(drifted(result.model)), result.splits.val, False, TS.tolerance)
    assert not verdict.passed and verdict.value > 1e-5
    with pytest.raises(GateFailed, match=r"gate 'parity' failed: max \|exported - eager\|"):
        enforce([verdict])


def test_parity_fails_on_a_flipped_class_even_within_tolerance():
    class Eager(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0], x[:, 0] + 1e-7], 1)

    class Flipped(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0] + 1e-7, x[:, 0]], 1)

    from training.data import Split

    data = Split(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    verdict = parity_gate(Eager(), Flipped(), data, classifier=True, tolerance=1e-4)
    assert not verdict.passed and "4 predicted classes differ" in verdict.detail


def test_parity_fails_on_a_different_output_shape_instead_of_broadcasting():
    from training.data import Split

    data = Split(torch.zeros(4, 1), torch.zeros(4))
    verdict = parity_gate(torch.nn.Identity(), lambda x: x[:, 0], data, classifier=False, tolerance=1e-4)
    assert not verdict.passed and verdict.detail == "exported output shape (4,) != eager (4, 1)"


def test_quality_gate_names_metric_value_and_threshold():
    verdict = quality_gate("accuracy", 0.9, 0.97)
    assert not verdict.passed
    with pytest.raises(GateFailed) as e:
        enforce([verdict])
    assert str(e.value) == "gate 'quality' failed: held-out accuracy = 0.9000 < threshold 0.97"


@pytest.mark.parametrize("fmt", [TS, ONNX], ids=lambda f: f.name)
@pytest.mark.parametrize("gate", ["parity", "quality"])
def test_a_failing_gate_stops_the_build_and_writes_no_archive(tmp_path, monkeypatch, fmt, gate):
    spec = replace(DIABETES, train=replace(DIABETES.train, epochs=5))
    if gate == "quality":
        spec, message = replace(spec, gate=Gate("r2", 0.99)), "gate 'quality' failed: held-out r2 = .* < threshold 0.99"
    else:  # an exporter that gets the graph wrong: what the parity gate is there to catch
        broken = replace(
            fmt, export=lambda model, path, example, settings: fmt.export(drifted(model), path, example, settings)
        )
        monkeypatch.setitem(export.FORMATS, fmt.name, broken)
        message = rf"gate 'parity' failed: max \|exported - eager\| = .* \(threshold {fmt.tolerance:g}\)"
    with pytest.raises(GateFailed, match=message):
        build.build(spec, store=tmp_path / "store", artifacts=tmp_path / "art", progress=False, runtime=fmt.name)
    assert not any((tmp_path / "store").glob("*.mar"))
    # The verdict is on disk for the user to read, beside the export that failed it.
    verdicts = (tmp_path / "art" / "diabetes" / fmt.name / build.GATES).read_text()
    assert '"passed": false' in verdicts


def test_a_failing_onnx_export_stops_the_build_with_a_clear_message_and_no_files(tmp_path, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("Unsupported FX node: aten.fancy\n(a long exporter trace follows)")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    spec = replace(DIABETES, train=replace(DIABETES.train, epochs=5))
    with pytest.raises(export.ExportFailed) as e:
        build.build(spec, store=tmp_path / "store", artifacts=tmp_path / "art", progress=False, runtime="onnx")
    assert str(e.value).startswith(
        "onnx export of diabetes failed (RuntimeError: Unsupported FX node: aten.fancy); nothing was archived."
    )
    assert not any((tmp_path / "store").glob("*.mar"))
    assert list((tmp_path / "art" / "diabetes" / "onnx").iterdir()) == []  # no half-written file


def test_a_lower_is_better_gate_passes_at_or_below_its_threshold():
    assert quality_gate("mae", 40.0, 45.0, higher_is_better=False).passed
    failed = quality_gate("mae", 50.0, 45.0, higher_is_better=False)
    assert not failed.passed and failed.detail == "held-out mae = 50.0000 > threshold 45"
