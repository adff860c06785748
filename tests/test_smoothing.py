"""SmoothQuant before static int8 (training/smoothing.py): same function in float32, flatter
activations, and a smaller int8 error where one input channel dwarfs the others."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from training import export
from training.smoothing import Smoothed, smoothed
from training.specs import ExportSettings

# Inputs whose channel 0 is 100 times the others: one activation scale per tensor spends the
# whole 8-bit range on it.
GENERATOR = torch.Generator().manual_seed(0)
GAINS = torch.ones(16)
GAINS[0] = 100.0


def rows(n: int) -> list[np.ndarray]:
    """Rows of (1, 4, 16): a 3-d input exports nn.Linear as MatMul, which int8 quantizes."""
    return [(torch.randn(1, 4, 16, generator=GENERATOR) * GAINS).numpy() for _ in range(n)]


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()


def test_a_smoothed_network_computes_the_same_function_with_flatter_inputs():
    model = network()
    smooth = smoothed(model, (r"^0$",), rows(32))
    assert isinstance(smooth[0], Smoothed) and isinstance(model[0], nn.Linear)  # the original is untouched
    x = torch.from_numpy(np.concatenate(rows(8)))
    torch.testing.assert_close(smooth(x), model(x), rtol=1e-5, atol=1e-4)
    seen = x.abs().reshape(-1, 16).amax(0)
    flattened = (x * smooth[0].inverse_scale).abs().reshape(-1, 16).amax(0)
    assert flattened.max() / flattened.min() < (seen.max() / seen.min()) / 5


def test_smoothing_cuts_the_int8_error_of_an_outlier_channel(tmp_path):
    model, calibration = network()[:1], rows(64)  # one layer: its input is the outlier one
    x = np.concatenate(rows(16))
    expected = model(torch.from_numpy(x)).detach().numpy()
    errors = {}
    for name, smoothed_layers in (("plain", ()), ("smoothed", (r"^0$",))):
        settings = ExportSettings(int8_smoothed=smoothed_layers)
        path = export.export_int8(model, tmp_path / name / "m.onnx", torch.from_numpy(x[:2]), settings, calibration)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        errors[name] = np.abs(session.run(None, {"input": x})[0] - expected).mean()
    # Measured: about half (the scaled weight column now takes part of the range); unsmoothed,
    # the two files would be the same graph and the same error.
    assert errors["smoothed"] < 0.7 * errors["plain"], errors


def test_a_pattern_that_names_no_linear_layer_is_refused():
    with pytest.raises(ValueError, match="no Linear layer matches"):
        smoothed(network(), (r"attention\.nowhere",), rows(2))
