"""Against a real TorchServe on free ports: register the built archives, predict over HTTP."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch

from handlers.classification import answer as classify
from handlers.codec import Limits, Payload
from handlers.codecs import image as image_codec
from models.registry import SPECS
from tests.conftest import example, same_answer, v2_request
from training.export import FORMATS
from tsforge.packaging import build
from tsforge.paths import EXAMPLES
from tsforge.server import client

pytestmark = pytest.mark.integration


def test_every_archive_is_registered_with_its_declared_batch_size_and_a_ready_worker(served):
    r = requests.get(f"{served.management_url}/models", headers=served.headers("management"), timeout=10)
    assert {m["modelName"] for m in r.json()["models"]} == set(build.SERVED)
    for name in build.SERVED:
        desc = requests.get(f"{served.management_url}/models/{name}", headers=served.headers("management"), timeout=10)
        (model,) = desc.json()
        spec = SPECS[build.MODEL_OF[name]]
        assert model["batchSize"] == spec.serving.batch_size and model["workers"][0]["status"] == "READY"


@pytest.mark.parametrize("name", list(SPECS))
def test_every_model_answers_its_example_in_both_runtimes_and_over_the_protocol(served, name):
    spec = SPECS[name]
    body, media = example(spec)
    answers = []
    for served_name in (build.served_name(SPECS[name], fmt) for fmt in ("torchscript", "onnx")):
        r = requests.post(
            f"{served.inference_url}/predictions/{served_name}",
            data=body,
            headers={**served.headers(), "Content-Type": media},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        answers.append(r.json())
    assert same_answer(answers[1], answers[0], FORMATS["onnx"].tolerance)
    body, headers = v2_request(spec, 3)
    url = f"{served.inference_url}/v2/models/{name}/infer"
    r = requests.post(url, data=body, headers={**served.headers(), **headers}, timeout=60)
    assert r.status_code == 200 and r.json()["model_name"] == name
    if spec.contract.kind == "audio":  # one recording: its segments and speech share
        assert {out["name"] for out in r.json()["outputs"]} == {"segments", "speech_share"}
    else:
        assert all(out["shape"][0] == 3 for out in r.json()["outputs"])


def test_digit_predictions_over_http_equal_the_model_in_process(served, built):
    model = torch.jit.load(str(built.exported("digits")))
    contract = SPECS["digits"].contract
    for i in range(10):
        path = EXAMPLES / f"mnist-{i}.png"
        answer = client.Client(served).predict_file("digits", path)
        pixels = image_codec.decode_request(Payload(path.read_bytes()), contract, Limits()).rows
        expected = classify(model(torch.from_numpy(pixels)).detach().numpy()[0], contract.labels)
        assert answer["label"] == expected["label"]
        assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)


def test_diabetes_prediction_over_http_equals_the_model_in_process(served, built):
    features = json.loads((EXAMPLES / "diabetes.json").read_text())["features"]
    answer = client.Client(served).predict_file("diabetes", EXAMPLES / "diabetes.json")
    model = torch.jit.load(str(built.exported("diabetes")))
    assert answer["prediction"] == pytest.approx(model(torch.tensor([features])).item(), abs=1e-4)


def test_concurrent_requests_with_bad_ones_each_get_their_own_answer(served):
    good = (EXAMPLES / "diabetes.json").read_bytes()
    bodies = [good if i % 3 else b'{"features": [1, 2, 3]}' for i in range(24)]

    def send(body):
        r = requests.post(
            f"{served.inference_url}/predictions/diabetes",
            data=body,
            headers={**served.headers(), "Content-Type": "application/json"},
            timeout=30,
        )
        return r.status_code, r.json()

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(send, bodies))
    predictions = set()
    for i, (status, body) in enumerate(results):
        if i % 3:
            assert status == 200
            predictions.add(round(body["prediction"], 4))
        else:
            assert (status, body["error"]) == (400, "wrong_shape")
    assert len(predictions) == 1 and np.isfinite(predictions.pop())


@pytest.mark.parametrize("api", ["inference", "management"])
def test_requests_without_the_right_token_are_refused(served, api):
    url = f"{served.inference_url}/ping" if api == "inference" else f"{served.management_url}/models"
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        r = requests.get(url, headers=headers, timeout=10)
        assert r.status_code == 400 and r.json()["type"] == "InvalidKeyException"


def test_registering_from_a_url_outside_the_model_store_is_refused(served):
    for url in ("https://example.com/evil.mar", "file:///etc/evil.mar"):
        r = requests.post(
            f"{served.management_url}/models", params={"url": url}, headers=served.headers("management"), timeout=30
        )
        assert r.status_code in (400, 404) and "allowed URL" in r.json()["message"]


TABULAR = [name for name, spec in SPECS.items() if spec.contract.kind == "tabular"]


@pytest.mark.parametrize("name", TABULAR)
def test_a_tabular_model_answers_every_accepted_form_alike(served, name):
    """Features in order, features by name, a list of rows, and the Open Inference Protocol."""
    spec = SPECS[name]
    features = spec.contract.features
    values = spec.splits(42).test.x[0].tolist()
    named = dict(zip(features, values, strict=True))
    v2 = {"inputs": [{"name": "x", "shape": [2, len(features)], "datatype": "FP64", "data": values * 2}]}

    def post(doc, path=f"predictions/{name}"):
        r = requests.post(f"{served.inference_url}/{path}", json=doc, headers=served.headers(), timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def same(answer, expected):
        if spec.classifier:
            return answer["label"] == expected["label"] and answer["probabilities"] == pytest.approx(
                expected["probabilities"], abs=1e-5
            )
        return answer["prediction"] == pytest.approx(expected["prediction"], abs=1e-3)

    one = post({"features": values})
    assert same(post(named), one)
    rows = post([named, {"features": values}, values])
    assert len(rows) == 3 and all(same(r, one) for r in rows)
    outputs = {o["name"]: o for o in post(v2, f"v2/models/{name}/infer")["outputs"]}
    if spec.classifier:
        assert outputs["label"]["data"] == [one["label"]] * 2
    else:
        assert outputs["prediction"]["data"] == pytest.approx([one["prediction"]] * 2, abs=1e-3)
