"""Both gates pass on a real export and can fail; a failed gate leaves no archive."""

import copy
from dataclasses import replace

import pytest
import torch

from training.export import export_torchscript
from training.gates import GateFailed, enforce, parity_gate, quality_gate
from training.specs import DIABETES
from training.train import train
from tsforge import build


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("gates")
    return out, train(DIABETES, out, replace(DIABETES.train, epochs=20), progress=False)


def test_parity_passes_for_the_scripted_export(trained):
    out, result = trained
    exported = export_torchscript(result.model, out / "model.pt")
    verdict = parity_gate(result.model, exported, result.splits.val, classifier=False)
    assert verdict.passed and verdict.value <= 1e-5


def test_parity_fails_when_the_export_differs_from_eager(trained):
    out, result = trained
    drifted = copy.deepcopy(result.model)
    with torch.no_grad():
        drifted.net[0].bias += 1e-3
    verdict = parity_gate(result.model, torch.jit.script(drifted), result.splits.val, classifier=False)
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
    verdict = parity_gate(Eager(), Flipped(), data, classifier=True)
    assert not verdict.passed and "4 predicted classes differ" in verdict.detail


def test_quality_gate_names_metric_value_and_threshold():
    verdict = quality_gate("accuracy", 0.9, 0.97)
    assert not verdict.passed
    with pytest.raises(GateFailed) as e:
        enforce([verdict])
    assert str(e.value) == "gate 'quality' failed: held-out accuracy = 0.9000 < threshold 0.97"


def test_a_failing_quality_gate_stops_the_build_and_writes_no_archive(tmp_path):
    unreachable = replace(DIABETES, gate_threshold=0.99, train=replace(DIABETES.train, epochs=5))
    with pytest.raises(GateFailed, match="gate 'quality' failed: held-out r2 = .* < threshold 0.99"):
        build.build(unreachable, store=tmp_path / "store", artifacts=tmp_path / "art", progress=False)
    assert not any((tmp_path / "store").glob("*.mar"))
    # The verdict is on disk for the user to read, beside the export that failed it.
    assert '"passed": false' in (tmp_path / "art" / "diabetes" / build.GATES).read_text()
