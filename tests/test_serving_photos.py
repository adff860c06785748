"""The pretrained photo classifier through a real TorchServe, in every form the image kind takes:
the same photo as a JPEG, PNG and WebP body, a form upload, base64 JSON asking for top_k, and
Open Inference Protocol tensors from Triton's own client with its defaults (binary), UINT8
channels-last and FP32 channels-first; each answers as the model does in process."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from handlers import runtime as runtimes
from handlers.codec import Limits, Payload
from handlers.codecs import image as codec
from models.registry import SPECS
from tests.conftest import RUNTIME_OF, served_name
from tsforge.paths import EXAMPLES

pytestmark = pytest.mark.integration

SPEC = SPECS["efficientnet_lite0"]
PHOTO = EXAMPLES / SPEC.example
TOLERANCE = 0.02  # per class probability: WebP and PNG re-encodings of one photo differ slightly


def codec_limits() -> Limits:
    return Limits.from_mapping(dict(SPEC.serving.limits))


def post(served, model, **kwargs):
    r = requests.post(f"{served.inference_url}/predictions/{model}", timeout=60, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("model", [served_name("efficientnet_lite0", r) for r in ("torchscript", "onnx")])
def test_every_body_form_of_one_photo_gets_the_same_answer(served, built, model):
    photo = Image.open(PHOTO)
    jpeg = PHOTO.read_bytes()
    png = io.BytesIO()
    photo.save(png, "PNG")
    webp = io.BytesIO()
    photo.save(webp, "WEBP", lossless=True)
    auth = served.headers()
    reference = post(served, model, data=jpeg, headers={**auth, "Content-Type": "image/jpeg"})
    runtime = RUNTIME_OF[model]
    run = runtimes.load(str(built.exported("efficientnet_lite0", runtime)), torch.device("cpu"), threads=1)
    rows = codec.decode_request(Payload(jpeg, "image/jpeg"), SPEC.contract, codec_limits()).rows
    alone = codec.encode_outputs(
        run(rows), codec.decode_request(Payload(jpeg), SPEC.contract, codec_limits()), SPEC.contract, model
    )
    assert reference["label"] == alone["label"] == "espresso"
    assert reference["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)
    answers = [
        post(served, model, data=png.getvalue(), headers={**auth, "Content-Type": "image/png"}),
        post(served, model, data=webp.getvalue(), headers={**auth, "Content-Type": "image/webp"}),
        post(served, model, files={"data": ("coffee.jpg", jpeg, "image/jpeg")}, headers=auth),
    ]
    for answer in answers:
        assert answer["label"] == reference["label"]
        for label, p in reference["probabilities"].items():
            assert abs(answer["probabilities"].get(label, 0.0) - p) <= TOLERANCE, (answer, reference)
    asked = post(served, model, json={"image": base64.b64encode(jpeg).decode(), "top_k": 3}, headers=auth)
    assert list(asked["probabilities"]) == list(reference["probabilities"])[:3]


def test_tritonclient_defaults_and_both_layouts_answer_like_the_photo(served, built):
    import tritonclient.http

    client = tritonclient.http.InferenceServerClient(url=served.inference_url.removeprefix("http://"))
    jpeg = PHOTO.read_bytes()
    pixels = codec.decode_image(jpeg, SPEC.contract, codec_limits())  # (3, 224, 224) in [0, 1]
    reference = post(
        served, "efficientnet_lite0", data=jpeg, headers={**served.headers(), "Content-Type": "image/jpeg"}
    )
    best = SPEC.contract.labels.index(reference["label"])
    uint8 = np.round(pixels * 255).astype(np.uint8)
    for data, datatype in (
        (pixels[None].astype(np.float32), "FP32"),  # [1, 3, 224, 224], FP32 in 0..1
        (uint8.transpose(1, 2, 0)[None], "UINT8"),  # [1, 224, 224, 3], UINT8 in 0..255
    ):
        tensor = tritonclient.http.InferInput("pixels", list(data.shape), datatype)
        tensor.set_data_from_numpy(data)  # binary, as tritonclient sends by default
        answer = client.infer("efficientnet_lite0", [tensor], headers=served.headers())
        probabilities = answer.as_numpy("probabilities")
        assert probabilities.shape == (1, 1000) and int(probabilities.argmax()) == best, datatype
        assert abs(float(probabilities[0, best]) - reference["probabilities"][reference["label"]]) < TOLERANCE
