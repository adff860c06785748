"""The real handlers inside TorchServe's real Context, with no server: batches and bad rows."""

import json

import numpy as np
import pytest
import torch
import yaml
from ts.context import Context, RequestProcessor

from handlers import digits_codec
from handlers.diabetes_handler import DiabetesHandler
from handlers.digits_handler import DigitsHandler
from tsforge.paths import EXAMPLES


def load(handler_cls, built, name, tmp_path):
    model_dir = built.unpacked(name, tmp_path / name)
    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    config = yaml.safe_load((model_dir / "model-config.yaml").read_text())
    ctx = Context(name, str(model_dir), manifest, 8, None, "0.12.0", model_yaml_config=config)
    handler = handler_cls()
    handler.initialize(ctx)
    return handler, ctx


def run(handler, ctx, batch):
    ctx.request_processor = [RequestProcessor({}) for _ in batch]
    out = handler.handle(batch, ctx)
    statuses = [ctx.get_response_status(i)[0] for i in range(len(batch))]
    return [json.loads(o) for o in out], statuses


def test_digits_batch_answers_each_image_like_the_model_alone(built, tmp_path):
    handler, ctx = load(DigitsHandler, built, "digits", tmp_path)
    bodies = [(EXAMPLES / f"mnist-{i}.png").read_bytes() for i in range(10)]
    answers, statuses = run(handler, ctx, [{"body": b} for b in bodies])
    assert statuses == [200] * 10
    model = torch.jit.load(str(built.artifacts / "digits" / "digits.pt"))
    for body, answer in zip(bodies, answers, strict=True):
        pixels = digits_codec.decode_request({"body": body}, handler.limits)
        logits = model(torch.from_numpy(pixels)[None, None]).detach().numpy()[0]
        alone = digits_codec.encode_response(logits, handler.labels)
        assert answer["label"] == alone["label"]
        assert answer["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-6)
    # Real-world check (not a tuning target): most of the ten real MNIST digits are right.
    assert sum(a["label"] == i for i, a in enumerate(answers)) >= 7


def test_one_bad_request_gets_its_own_4xx_and_the_rest_of_the_batch_succeeds(built, tmp_path):
    handler, ctx = load(DiabetesHandler, built, "diabetes", tmp_path)
    good = (EXAMPLES / "diabetes.json").read_bytes()
    batch = [{"body": good}, {"body": b'{"features": [1, 2]}'}, {"body": json.loads(good)}, {"body": b""}]
    answers, statuses = run(handler, ctx, batch)
    assert statuses == [200, 400, 200, 400]
    assert answers[1]["error"] == "wrong_shape" and "expected 10" in answers[1]["detail"]
    assert answers[3]["error"] == "empty_body"
    assert answers[0] == answers[2] and np.isfinite(answers[0]["prediction"])


def test_a_failing_forward_pass_answers_500_json_and_the_handler_keeps_working(built, tmp_path):
    handler, ctx = load(DiabetesHandler, built, "diabetes", tmp_path)
    good = {"body": (EXAMPLES / "diabetes.json").read_bytes()}
    model = handler.model

    def explode(x):
        raise RuntimeError("simulated kernel failure")

    handler.model = explode
    answers, statuses = run(handler, ctx, [good, good])
    assert statuses == [500, 500] and answers[0]["error"] == "inference_failed"
    handler.model = model
    answers, statuses = run(handler, ctx, [good])
    assert statuses == [200] and "prediction" in answers[0]
