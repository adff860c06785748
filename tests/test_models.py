import pytest
import torch

from models.diabetes import DiabetesConfig, DiabetesRegressor
from models.digits import DigitsCNN, DigitsConfig
from models.registry import SPECS


def test_digits_cnn_maps_a_batch_of_28x28_images_to_10_logits():
    model = DigitsCNN(DigitsConfig()).eval()
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)


def test_digits_cnn_has_the_mnist_example_layers():
    model = DigitsCNN()
    assert (model.conv1.out_channels, model.conv2.out_channels) == (32, 64)
    assert (model.fc1.out_features, model.fc2.out_features) == (128, 10)


def test_diabetes_scaling_lives_inside_the_model():
    model = DiabetesRegressor(DiabetesConfig()).eval()
    x = torch.randn(50, 10) * 30 + 100
    y = torch.randn(50) * 70 + 150
    model.fit_scaling(x, y)
    # Standardised inputs: the first layer sees mean 0 / std 1 columns.
    z = (x - model.feature_mean) / model.feature_std
    assert torch.allclose(z.mean(0), torch.zeros(10), atol=1e-4)
    # Outputs come back in target units: forward = scaled prediction * std + mean.
    assert torch.allclose(model(x), model.forward_scaled(x) * y.std() + y.mean(), atol=1e-3)


@pytest.mark.parametrize("name", list(SPECS))
def test_every_registered_model_exports_to_torchscript_and_keeps_its_outputs(name):
    """Scripted, or traced for a model that says so (a transformer is not scriptable)."""
    spec = SPECS[name]
    model = spec.build(spec.model_config()).eval()
    x = spec.splits(42).val.x[:3]
    x = spec.trim(x) if spec.trim else x
    with torch.no_grad():
        graph = torch.jit.trace(model, (x,), strict=False) if spec.export.trace else torch.jit.script(model)
        assert torch.allclose(graph(x), model(x), atol=1e-6)
