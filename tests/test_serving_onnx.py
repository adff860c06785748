"""Through a real TorchServe: the ONNX Runtime archives answer as the TorchScript ones do."""

import json

import numpy as np
import pytest
import requests

from models.registry import SPECS
from training.export import FORMATS
from tsforge.packaging import build
from tsforge.paths import EXAMPLES

DIGITS, DIABETES = SPECS["digits"], SPECS["diabetes"]

pytestmark = pytest.mark.integration

TOLERANCE = FORMATS["onnx"].tolerance


def both(served, model, body, content_type="application/json", route="predictions/{}"):
    """The same request to `model` (TorchScript) and `model`-onnx: (status, json) for each."""
    answers = []
    for name in (model, build.served_name(SPECS[model], "onnx")):
        r = requests.post(
            f"{served.inference_url}/{route.format(name)}",
            data=body,
            headers={**served.headers(), "Content-Type": content_type},
            timeout=60,
        )
        answers.append((r.status_code, r.json()))
    return answers


def outputs(answer):
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}


def test_real_digit_images_get_the_same_class_and_probabilities(served):
    for i in range(10):
        (s1, ts), (s2, ort) = both(served, "digits", (EXAMPLES / f"mnist-{i}.png").read_bytes(), "image/png")
        assert s1 == s2 == 200 and ts["label"] == ort["label"]
        assert ts["probabilities"].keys() == ort["probabilities"].keys()
        assert ort["probabilities"] == pytest.approx(ts["probabilities"], abs=TOLERANCE)


def test_held_out_digits_over_the_open_inference_protocol_agree_sample_by_sample(served):
    x = DIGITS.splits(DIGITS.train.seed).test.x[:, 0].numpy()  # (n, 28, 28), the gate's test split
    for start in range(0, len(x), 64):  # 64 rows: the request limit
        chunk = x[start : start + 64]
        doc = {
            "inputs": [
                {"name": "pixels", "shape": list(chunk.shape), "datatype": "FP32", "data": chunk.ravel().tolist()}
            ]
        }
        (s1, ts), (s2, ort) = both(served, "digits", json.dumps(doc), route="v2/models/{}/infer")
        assert s1 == s2 == 200
        ts, ort = outputs(ts), outputs(ort)
        assert (ts["label"] == ort["label"]).all()
        assert np.abs(ts["probabilities"] - ort["probabilities"]).max() <= TOLERANCE


def test_held_out_diabetes_rows_get_the_same_predictions(served):
    x = DIABETES.splits(DIABETES.train.seed).test.x.numpy()
    for start in range(0, len(x), 64):
        rows = [{"features": row.tolist()} for row in x[start : start + 64]]
        (s1, ts), (s2, ort) = both(served, "diabetes", json.dumps(rows))
        assert s1 == s2 == 200 and len(ts) == len(ort) == len(rows)
        diff = np.abs(np.array([a["prediction"] for a in ts]) - np.array([a["prediction"] for a in ort]))
        assert diff.max() <= TOLERANCE


@pytest.mark.parametrize(
    "model, body, content_type",
    [
        ("digits", b"not an image", "image/png"),
        ("digits", b'{"pixels": [1]}', "application/json"),
        ("diabetes", b'{"features": [1, 2]}', "application/json"),
        ("diabetes", b"{}", "text/plain"),
    ],
)
def test_bad_requests_get_the_same_error_from_both_runtimes(served, model, body, content_type):
    (s1, ts), (s2, ort) = both(served, model, body, content_type)
    assert s1 == s2 and 400 <= s1 < 500 and ts == ort and set(ts) == {"error", "detail"}
