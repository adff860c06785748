"""Through a real TorchServe (batch size 8): every input format, every bad input, batching."""

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from tests.conftest import metrics_until
from tsforge.paths import EXAMPLES

pytestmark = pytest.mark.integration

DIGIT = (EXAMPLES / "mnist-3.png").read_bytes()
FEATURES = json.loads((EXAMPLES / "diabetes.json").read_text())["features"]


def post(served, model, body, content_type="application/json", path=None, **kwargs):
    url = f"{served.inference_url}/{path or f'predictions/{model}'}"
    headers = {**served.headers(), **({"Content-Type": content_type} if content_type else {})}
    return requests.post(url, data=body, headers=headers, timeout=60, **kwargs)


def big_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


def test_every_digits_input_format_gives_the_same_answer(served):
    raw = post(served, "digits", DIGIT, "image/png").json()
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(DIGIT)).convert("RGB").save(jpeg, format="JPEG", quality=100)
    same = [
        post(served, "digits", json.dumps({"image": base64.b64encode(DIGIT).decode()})),
        requests.post(
            f"{served.inference_url}/predictions/digits",
            files={"data": ("3.png", DIGIT, "image/png")},
            headers=served.headers(),
            timeout=60,
        ),
    ]
    for r in same:
        assert r.status_code == 200 and r.json() == raw
    assert post(served, "digits", jpeg.getvalue(), "image/jpeg").json()["label"] == raw["label"] == 3


def test_every_diabetes_input_format_gives_the_same_answer(served):
    one = post(served, "diabetes", json.dumps({"features": FEATURES})).json()["prediction"]
    named = dict(zip(("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"), FEATURES, strict=True))
    assert post(served, "diabetes", json.dumps(named)).json()["prediction"] == pytest.approx(one, abs=1e-4)
    rows = post(served, "diabetes", json.dumps([named, {"features": FEATURES}])).json()
    assert [r["prediction"] for r in rows] == pytest.approx([one, one], abs=1e-4)


def test_open_inference_protocol_request_and_response(served):
    doc = {"id": "q-1", "inputs": [{"name": "input-0", "shape": [2, 10], "datatype": "FP32", "data": FEATURES * 2}]}
    r = post(served, "diabetes", json.dumps(doc), path="v2/models/diabetes/infer")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "diabetes" and body["id"] == "q-1"
    (out,) = body["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("prediction", [2], "FP32")
    one = post(served, "diabetes", json.dumps({"features": FEATURES})).json()["prediction"]
    assert out["data"] == pytest.approx([one, one], abs=1e-4)

    pixels = {"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}
    r = post(served, "digits", json.dumps(pixels), path="v2/models/digits/infer")
    assert r.status_code == 200 and [o["name"] for o in r.json()["outputs"]] == ["probabilities", "label"]


BAD_INPUTS = [
    ("digits", b"", "image/png", 400, "empty_body"),
    ("digits", DIGIT, "text/plain", 415, "unsupported_media_type"),
    ("digits", DIGIT[: len(DIGIT) // 2], "image/png", 400, "invalid_image"),
    ("digits", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png", 400, "invalid_image"),
    ("digits", b"%PDF-1.4 not an image", "image/png", 415, "unsupported_image"),
    ("digits", big_png(4097), "image/png", 413, "image_too_large"),
    (
        "digits",
        b'{"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "BYTES", "data": ["a"]}]}',
        None,
        400,
        "wrong_datatype",
    ),
    (
        "digits",
        b'{"inputs": [{"name": "x", "shape": [1, 27, 28], "datatype": "FP32", "data": [0]}]}',
        None,
        400,
        "wrong_shape",
    ),
    ("diabetes", b'{"features": [1, 2, 3]}', None, 400, "wrong_shape"),
    ("diabetes", b'{"features": [1, 2, 3, 4, 5, 6, 7, 8, 9, NaN]}', None, 400, "non_finite_number"),
    ("diabetes", b'{"features": [1, 2, 3, 4, 5, 6, 7, 8, 9, Infinity]}', None, 400, "non_finite_number"),
    ("diabetes", b'{"features": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1e999]}', None, 400, "non_finite_number"),
    ("diabetes", b'{"features": ["1", 2, 3, 4, 5, 6, 7, 8, 9, 10]}', None, 400, "wrong_type"),
    ("diabetes", b"[" * 5000 + b"]" * 5000, None, 400, "json_too_deep"),
    ("diabetes", b'{"features": [' + b"1," * 2_500_000 + b"1]}", None, 413, "body_too_large"),
    ("diabetes", b'{"features": "\xff\xfe"}', None, 400, "invalid_utf8"),
    ("diabetes", b'{"features": [1, 2', None, 400, "invalid_json"),
    ("diabetes", b'{"features": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}', "text/plain", 415, "unsupported_media_type"),
    (
        "diabetes",
        b'{"inputs": [{"name": "x", "shape": [1, 10], "datatype": "BOOL", "data": [true]}]}',
        None,
        400,
        "wrong_datatype",
    ),
    (
        "diabetes",
        b'{"inputs": [{"name": "x", "shape": [3, 10], "datatype": "FP32", "data": [1]}]}',
        None,
        400,
        "wrong_shape",
    ),
]


@pytest.mark.parametrize(
    "model, body, content_type, status, code", BAD_INPUTS, ids=[b[-1] + "-" + b[0] for b in BAD_INPUTS]
)
def test_bad_input_gets_its_own_4xx_json_and_the_model_keeps_serving(served, model, body, content_type, status, code):
    r = post(served, model, body, content_type or "application/json")
    assert (r.status_code, r.json()["error"]) == (status, code), r.text
    assert r.json()["detail"]
    good = post(served, "diabetes", json.dumps({"features": FEATURES}))
    assert good.status_code == 200


def test_concurrent_traffic_with_bad_requests_forms_batches_and_answers_each(served):
    expected = post(served, "digits", DIGIT, "image/png").json()
    bodies = [(DIGIT, 200) if i % 4 else (b"not an image at all", 415) for i in range(96)]
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda b: post(served, "digits", b[0], "image/png"), bodies))
    for (_, status), r in zip(bodies, results, strict=True):
        assert r.status_code == status
        if status == 200:
            assert r.json()["label"] == expected["label"]
            assert r.json()["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
        else:
            assert r.json()["error"] == "unsupported_image"

    def sizes(text: str) -> list[int]:
        return [
            int(line.split('BatchSize="')[1].split('"')[0])
            for line in text.splitlines()
            if line.startswith("HandlerBatches{") and 'ModelName="digits"' in line
        ]

    metrics = metrics_until(served, lambda text: max(sizes(text), default=0) > 1)
    assert max(sizes(metrics), default=0) > 1, metrics[:2000]
    assert "HandlerRejectedRequests{" in metrics and 'Reason="unsupported_image"' in metrics
    for name in ("HandlerPreprocessMs", "HandlerInferenceMs", "HandlerPostprocessMs"):
        assert name in metrics


def test_describe_shows_the_model_card(served):
    r = requests.get(
        f"{served.management_url}/models/digits",
        params={"customized": "true"},
        headers=served.headers("management"),
        timeout=30,
    )
    card = r.json()[0]["customizedMetadata"]  # TorchServe parses the handler's JSON
    assert card["schema"]["input"] and card["limits"]["max_body_bytes"] == 4 * 1024 * 1024
    assert all(g["passed"] for g in card["gates"]) and card["metrics"]["test"]["accuracy"] >= 0.97
