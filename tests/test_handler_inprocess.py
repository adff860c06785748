"""The real handlers inside TorchServe's real Context, with no server: batches and bad rows."""

import base64
import json
import random

import numpy as np
import pytest
import torch
import yaml
from ts.context import Context, RequestProcessor

from handlers import classification
from handlers import runtime as runtimes
from handlers.base import KEY_FILE_ENV
from handlers.codec import Payload
from handlers.codecs import codec_for
from handlers.codecs import image as image_codec
from handlers.handler import Handler
from models.registry import SPECS
from tests.conftest import SERVED_PAIRS, example, protocol_rows, same_answer, v2_request
from tsforge.packaging import build
from tsforge.paths import EXAMPLES

RUNTIMES = ["torchscript", "onnx"]  # the formats digits and diabetes declare


def load(built, name, tmp_path, metrics=None):
    model_dir = built.unpacked(name, tmp_path / name)
    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    config = yaml.safe_load((model_dir / "model-config.yaml").read_text())
    ctx = Context(name, str(model_dir), manifest, 8, None, "0.12.0", metrics=metrics, model_yaml_config=config)
    handler = Handler()
    handler.initialize(ctx)
    return handler, ctx


def run(handler, ctx, batch, headers=None):
    ctx.request_processor = [RequestProcessor(h) for h in (headers or [{} for _ in batch])]
    out = handler.handle(batch, ctx)
    statuses = [ctx.get_response_status(i)[0] for i in range(len(batch))]
    return [json.loads(o) for o in out], statuses


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_digits_batch_answers_each_image_like_the_model_alone(built, tmp_path, runtime):
    handler, ctx = load(built, build.served_name(SPECS["digits"], runtime), tmp_path)
    assert handler.runtime.name == runtime
    bodies = [(EXAMPLES / f"mnist-{i}.png").read_bytes() for i in range(10)]
    answers, statuses = run(handler, ctx, [{"body": b} for b in bodies])
    assert statuses == [200] * 10
    model = runtimes.load(str(built.exported("digits", runtime)), torch.device("cpu"), threads=1)
    for body, answer in zip(bodies, answers, strict=True):
        pixels = image_codec.decode_request(Payload(body), handler.contract, handler.limits).rows
        alone = classification.answer(model(pixels)[0], handler.contract.labels)
        assert answer["label"] == alone["label"]
        assert answer["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-6)
    # Real-world check (not a tuning target): most of the ten real MNIST digits are right.
    assert sum(a["label"] == i for i, a in enumerate(answers)) >= 7


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_bad_request_gets_its_own_4xx_and_the_rest_of_the_batch_succeeds(built, tmp_path, runtime):
    handler, ctx = load(built, build.served_name(SPECS["diabetes"], runtime), tmp_path)
    good = (EXAMPLES / "diabetes.json").read_bytes()
    batch = [{"body": good}, {"body": b'{"features": [1, 2]}'}, {"body": json.loads(good)}, {"body": b""}]
    answers, statuses = run(handler, ctx, batch)
    assert statuses == [200, 400, 200, 400]
    assert answers[1]["error"] == "wrong_shape" and "expected 10" in answers[1]["detail"]
    assert answers[3]["error"] == "empty_body"
    assert answers[0] == answers[2] and np.isfinite(answers[0]["prediction"])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_forward_pass_that_fails_on_one_request_fails_only_that_request(built, tmp_path, runtime, caplog):
    """The model raises whenever one crafted row is in its input: the pass is split until that
    request runs alone, every other request is answered as alone, and the 500 names no internals."""
    handler, ctx = load(built, build.served_name(SPECS["diabetes"], runtime), tmp_path)
    doc = json.loads((EXAMPLES / "diabetes.json").read_text())
    poison = {"features": [0.123] * len(doc["features"])}
    model = handler.runtime

    def fails_on_the_crafted_row(x):
        if np.any(np.all(np.isclose(x, 0.123), axis=1)):
            raise RuntimeError("simulated kernel failure at 0xdeadbeef")
        return model(x)

    alone = run(handler, ctx, [{"body": doc}])[0][0]["prediction"]
    handler.runtime = fails_on_the_crafted_row
    batch = [{"body": doc}, {"body": [doc, doc]}, {"body": poison}, {"body": doc}, {"body": b"{"}]
    answers, statuses = run(handler, ctx, batch)
    assert statuses == [200, 200, 500, 200, 400]
    assert [answers[0]["prediction"], answers[3]["prediction"]] == pytest.approx([alone, alone], abs=1e-4)
    assert [a["prediction"] for a in answers[1]] == pytest.approx([alone, alone], abs=1e-4)
    failed = answers[2]
    assert failed["error"] == "inference_failed" and "0xdeadbeef" not in json.dumps(failed)
    assert failed["request_id"] in failed["detail"] and failed["request_id"] in caplog.text
    assert "0xdeadbeef" in caplog.text  # the cause is logged, under the id the client got
    handler.runtime = model
    answers, statuses = run(handler, ctx, [{"body": doc}])
    assert statuses == [200] and answers[0]["prediction"] == pytest.approx(alone, abs=1e-4)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_random_batches_with_bad_requests_interleaved_answer_each_good_one_as_alone(built, tmp_path, runtime):
    """Property-style: whatever the mix and order, a good request's answer is its answer alone."""
    handler, ctx = load(built, build.served_name(SPECS["digits"], runtime), tmp_path)
    images = [(EXAMPLES / f"mnist-{i}.png").read_bytes() for i in range(10)]
    good = [{"body": b} for b in images] + [
        {"body": json.dumps({"image": base64.b64encode(images[3]).decode()}).encode()},
        {"body": {"pixels": np.full((28, 28), 0.2).tolist()}},
    ]
    bad = [{"body": b""}, {"body": b"not an image"}, {"body": images[2][:50]}, {"body": b'{"pixels": [1]}'}]
    alone = [run(handler, ctx, [g])[0][0] for g in good]
    rng = random.Random(7)
    for _ in range(25):
        picks = [
            ("good", rng.randrange(len(good))) if rng.random() < 0.6 else ("bad", rng.randrange(len(bad)))
            for _ in range(rng.randint(1, 8))
        ]
        answers, statuses = run(handler, ctx, [good[i] if kind == "good" else bad[i] for kind, i in picks])
        for (kind, i), answer, status in zip(picks, answers, statuses, strict=True):
            if kind == "bad":
                assert status in (400, 415) and set(answer) == {"error", "detail"}
            else:
                assert status == 200 and answer["label"] == alone[i]["label"]
                assert answer["probabilities"] == pytest.approx(alone[i]["probabilities"], abs=1e-6)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_rows_and_v2_requests_share_a_batch_with_single_ones(built, tmp_path, runtime):
    handler, ctx = load(built, build.served_name(SPECS["diabetes"], runtime), tmp_path)
    doc = json.loads((EXAMPLES / "diabetes.json").read_text())
    single = run(handler, ctx, [{"body": doc}])[0][0]["prediction"]
    v2 = {"inputs": [{"name": "x", "shape": [2, 10], "datatype": "FP64", "data": doc["features"] * 2}]}
    answers, statuses = run(handler, ctx, [{"body": [doc, doc, doc]}, {"body": v2}, {"body": doc}])
    assert statuses == [200, 200, 200]
    assert [a["prediction"] for a in answers[0]] == pytest.approx([single] * 3, abs=1e-4)
    assert answers[1]["outputs"][0]["data"] == pytest.approx([single] * 2, abs=1e-4)
    assert answers[2]["prediction"] == pytest.approx(single, abs=1e-4)


def test_the_content_type_comes_from_torchserve_request_headers(built, tmp_path):
    handler, ctx = load(built, "diabetes", tmp_path)
    body = (EXAMPLES / "diabetes.json").read_bytes()
    headers = [{"body": {"content-type": "text/plain"}}, {"Content-Type": "application/json; charset=utf-8"}]
    answers, statuses = run(handler, ctx, [{"body": body}, {"body": body}], headers)
    assert statuses == [415, 200] and answers[0]["error"] == "unsupported_media_type"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_describe_returns_the_model_card_only_to_the_management_key(built, tmp_path, runtime, monkeypatch):
    name = build.served_name(SPECS["digits"], runtime)
    handler, ctx = load(built, name, tmp_path)
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"management": {"key": "m-key"}, "inference": {"key": "i-key"}}))
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    describe = {"describe": "True", "Authorization": "Bearer m-key"}
    (card,), _ = run(handler, ctx, [{}], [describe])
    assert card["name"] == name and [g["gate"] for g in card["gates"]] == ["parity", "quality"]
    assert card["runtime"] == runtime and card["device"] in ("cpu", "CPUExecutionProvider")
    assert card["limits"]["max_image_pixels"] == 4096 * 4096 and card["threads"] == 1
    assert "accuracy" in card["metrics"]["test"] and "input" in card["schema"]

    # The same header on inference requests (the inference key) is ignored: one answer each.
    digit = (EXAMPLES / "mnist-7.png").read_bytes()
    copied = {"describe": "True", "Authorization": "Bearer i-key"}
    for batch, headers in (([{}], [copied]), ([{"body": digit}, {"body": digit}], [copied, {}])):
        answers, statuses = run(handler, ctx, batch, headers)
        assert len(answers) == len(batch) and all("gates" not in a for a in answers)
    assert statuses == [200, 200] and answers[0]["label"] == 7
    monkeypatch.delenv(KEY_FILE_ENV)  # no key file known: no card for anyone
    assert "gates" not in run(handler, ctx, [{}], [describe])[0][0]


@pytest.mark.parametrize("name, runtime", SERVED_PAIRS)
def test_every_model_answers_its_example_alone_in_a_batch_and_over_the_protocol(built, tmp_path, name, runtime):
    """Every registered model: its example, three copies in a batch with a bad request, and an
    Open Inference Protocol tensor of its row shape, each answered in the right form."""
    spec = SPECS[name]
    handler, ctx = load(built, build.served_name(SPECS[name], runtime), tmp_path)
    body, media = example(spec)
    headers = {"body": {"content-type": media}}
    (alone,), (status,) = run(handler, ctx, [{"body": body}], [headers])
    keys = set(alone[0]) if isinstance(alone, list) else set(alone)  # a recommender answers a list of items
    assert status == 200 and {"label" if spec.classifier else "prediction", "embedding", "segments", "item"} & keys
    if spec.classifier:
        assert alone["label"] in {classification.label_value(x) for x in spec.contract.labels}
    batch = [{"body": body}, {"body": b"\xff\xfe not UTF-8, nor an image"}, {"body": body}, {"body": body}]
    answers, statuses = run(handler, ctx, batch, [headers, {"body": {"content-type": media}}, headers, headers])
    assert statuses[0] == statuses[2] == statuses[3] == 200 and 400 <= statuses[1] < 500
    for other in (answers[2], answers[3]):  # one forward pass: rows may differ in the last bits
        assert same_answer(other, answers[0])
    body, v2_headers = v2_request(spec, 2, "t")
    (out,), (status,) = run(handler, ctx, [{"body": body}], [{k.lower(): v for k, v in v2_headers.items()}])
    assert status == 200 and out["model_name"] == build.served_name(SPECS[name], runtime) and out["id"] == "t"
    rows = protocol_rows(spec, 2)
    expected = {o["name"]: o["shape"] for o in codec_for(spec.contract.kind).oip_metadata(spec.contract)["outputs"]}
    assert set(expected) >= {o["name"] for o in out["outputs"]} and out["outputs"]
    for o in out["outputs"]:  # every fixed dimension as declared; the first is the rows where it varies
        declared = expected[o["name"]]
        assert len(o["shape"]) == len(declared) and all(d in (-1, g) for d, g in zip(declared, o["shape"], strict=True))
        if spec.contract.kind != "audio":
            assert o["shape"][0] == rows


def test_the_worker_drops_torchserves_per_batch_info_line_and_keeps_the_rest():
    """TorchServe's "Backend received inference" line (every batch) costs CPU and disk and is
    read by nothing; warnings, errors and the metric lines the frontend parses still pass."""
    import logging

    from handlers.base import DropPerBatchLine

    def record(level, msg):
        return logging.LogRecord("root", level, __file__, 1, msg, (), None)

    keep = DropPerBatchLine().filter
    assert not keep(record(logging.INFO, "Backend received inference at: %d"))
    assert keep(record(logging.WARNING, "Backend received inference at: %d"))
    assert keep(record(logging.INFO, "[METRICS]HandlerBatches.Count:1|#ModelName:digits"))
    assert keep(record(logging.INFO, "Torch worker started."))


def test_batch_figures_leave_the_worker_summed_once_a_second_not_per_batch(built, tmp_path):
    """handle() only adds to the batch sums; the worker's metrics thread sends them by batch
    size, a line per size and figure each FLUSH_SECONDS, whatever the number of batches."""
    import time

    from handlers.base import FLUSH_SECONDS
    from handlers.batch_metrics import BATCHES, STAGES

    class Metrics:  # TorchServe's metrics cache, as the handler calls it
        def __init__(self):
            self.sent = []

        def add_counter(self, name, value, idx=None, dimensions=()):
            self.sent.append((name, value, {d.name: d.value for d in dimensions}))

        def add_metric(self, name, value, unit, idx=None, dimensions=(), metric_type=None):
            self.sent.append((name, value, {d.name: d.value for d in dimensions}))

    metrics = Metrics()
    handler, ctx = load(built, "digits", tmp_path, metrics)
    body = {"body": (EXAMPLES / "mnist-3.png").read_bytes()}
    for _ in range(20):
        run(handler, ctx, [body] * 3, [{"content-type": "image/png"}] * 3)
    run(handler, ctx, [body] * 2, [{"content-type": "image/png"}] * 2)
    time.sleep(2.5 * FLUSH_SECONDS)
    batch_lines = [(value, dims) for name, value, dims in metrics.sent if name == BATCHES]
    assert {size: sum(v for v, d in batch_lines if d["BatchSize"] == size) for size in ("2", "3")} == {"2": 1, "3": 20}
    assert len(batch_lines) <= 4  # one line per size and send, not one per batch
    assert all(d["ModelName"] == "digits" and d["Version"] == handler.model_version for _, d in batch_lines)
    for stage in STAGES:
        spent = {d["BatchSize"]: v for name, v, d in metrics.sent if name == stage}
        assert set(spent) == {"2", "3"} and all(ms > 0 for ms in spent.values()), stage


@pytest.mark.parametrize("form", ["file", "base64 JSON"])
def test_a_call_defers_long_recordings_before_decoding_them(built, tmp_path, monkeypatch, form):
    """Audio files are admitted by the length their header states, cheapest first: the short
    example and as many 60 s recordings as the call's budget takes are decoded and answered,
    the rest get 429 at once, never decoded (decoding 60 s of OGG costs more than its pass)."""
    from bench.worst_audio import encoded, speechlike
    from handlers.codecs import audio

    spec = SPECS["silero_vad"]
    handler, ctx = load(built, build.served_name(spec, spec.formats[0]), tmp_path)
    decoded = []
    real = audio.decode_file
    monkeypatch.setattr(audio, "decode_file", lambda raw, *rest: decoded.append(raw) or real(raw, *rest))
    short, _ = example(spec)
    long = encoded(speechlike(60.0, 16000, 1), "WAV", "PCM_16", 16000)
    cost = {b: audio.declared_cost(Payload(b, "audio/wav"), handler.contract, handler.limits) for b in (short, long)}
    assert cost[long] == 1875 and 0 < cost[short] < cost[long]
    fits = min(3, (handler.limits.max_call_cost - cost[short]) // cost[long])
    assert 0 < fits < 3, "the budget should take the short one and some, not all, of the long ones"
    if form == "file":
        body, media = long, "audio/wav"
    else:
        body, media = json.dumps({"audio": base64.b64encode(long).decode()}).encode(), "application/json"
    # Refused from their headers, before the budget: they keep their own 4xx and take none of it.
    low_rate = encoded(speechlike(1.0, 4000, 1), "WAV", "PCM_16", 4000)
    too_long = encoded(np.zeros((70 * 8000, 1)), "WAV", "PCM_16", 8000)
    batch = [{"body": body}] * 3 + [{"body": short}, {"body": low_rate}, {"body": too_long}]
    headers = [{"body": {"content-type": media}}] * 3 + [{"body": {"content-type": "audio/wav"}}] * 3
    answers, statuses = run(handler, ctx, batch, headers)
    assert statuses == [200] * fits + [429] * (3 - fits) + [200, 400, 413]
    assert all(a["error"] == "worker_busy" and "max_call_cost" in a["detail"] for a in answers[fits:3])
    assert [a["error"] for a in answers[4:]] == ["unsupported_sample_rate", "audio_too_long"]
    assert len(decoded) == fits + 1 and decoded.count(long) == fits


def test_a_files_declared_cost_counts_its_decoding_and_is_what_decoding_finds():
    """A few seconds of eight channels at 192 kHz decode as many samples as the longest
    recording (max_audio_samples) and are costed as much; every accepted worst case declares
    the chunks decoding then finds, and every refused one is refused from its header alike."""
    from bench.worst_audio import cases, encoded
    from handlers.codec import Limits, RequestError
    from handlers.codecs import audio

    spec = SPECS["silero_vad"]
    limits = Limits.from_mapping(dict(spec.serving.limits))
    longest = limits.max_audio_seconds * spec.contract.sample_rate // spec.contract.chunk
    frames = limits.max_audio_samples // 8
    wide = encoded(np.zeros((frames, 8)), "FLAC", "PCM_16", limits.max_sample_rate)
    assert audio.declared_cost(Payload(wide, "audio/flac"), spec.contract, limits) == longest
    assert audio.decode_request(Payload(wide, "audio/flac"), spec.contract, limits).length < longest / 10
    for name, _, media, body, _, expected in cases():
        payload = Payload(body, media)
        if expected == 200:
            declared = audio.declared_cost(payload, spec.contract, limits)
            assert declared == audio.decode_request(payload, spec.contract, limits).length == longest, name
        elif name != "audio_flac_cut_mid_frame":  # a FLAC cut mid-frame shows only once decoded
            with pytest.raises(RequestError) as header:
                audio.declared_cost(payload, spec.contract, limits)
            with pytest.raises(RequestError) as decoding:
                audio.decode_request(payload, spec.contract, limits)
            assert (header.value.status, header.value.code) == (decoding.value.status, decoding.value.code), name
