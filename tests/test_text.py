"""The text kind and MiniLM: forms, limits, truncation, padding that changes nothing, pinned files."""

import json

import numpy as np
import pytest

import models.minilm as minilm
from handlers.codec import Limits, Payload, RequestError
from handlers.codecs import text as text_codec
from handlers.handler import Handler
from models.registry import SPECS
from tests.test_handler_inprocess import load, run
from training.weights import WeightsError
from tsforge.packaging import build

SPEC = SPECS["minilm"]
CONTRACT = SPEC.contract
LIMITS = Limits(max_rows=16)
LONG = " ".join(["tokenization"] * 400)  # far over 256 tokens


def decode(body, media="application/json"):
    body = json.dumps(body).encode() if not isinstance(body, bytes) else body
    return text_codec.decode_request(Payload(body, media), CONTRACT, LIMITS)


def test_every_form_decodes_to_packed_ids_and_masks():
    plain = decode(b"The cat sat on the mat.", "text/plain")
    assert plain.form == "single" and plain.rows.dtype == np.int64 and plain.rows.shape[:2] == (1, 2)
    assert np.array_equal(decode({"text": "The cat sat on the mat."}).rows, plain.rows)
    rows = decode({"texts": ["short", "a somewhat longer text than the first"]})
    assert rows.form == "rows" and rows.rows.shape[0] == 2 and rows.rows[0, 1].sum() < rows.rows[1, 1].sum()
    v2 = decode({"id": "q", "inputs": [{"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]})
    assert (v2.form, v2.request_id, v2.rows.shape[0]) == ("v2", "q", 2)
    long = decode({"texts": [LONG, "short"]})
    assert long.truncated == (True, False) and long.rows.shape[-1] == CONTRACT.max_tokens


@pytest.mark.parametrize(
    "body, media, status, code",
    [
        ({"texts": ["ok", ""]}, None, 400, "empty_text"),
        ({"text": "   \n\t"}, None, 400, "empty_text"),
        ({"texts": ["ok", 3]}, None, 400, "wrong_type"),
        ({"texts": []}, None, 400, "wrong_type"),
        ({"texts": ["x"] * 17}, None, 413, "too_many_rows"),
        ({"text": "é" * 9000}, None, 413, "text_too_long"),
        (b"\xff\xfe bad", "text/plain", 400, "invalid_utf8"),
        ({"inputs": [{"name": "t", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, None, 400, "wrong_datatype"),
        ({"inputs": [{"name": "t", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}, None, 400, "wrong_shape"),
        ({"words": ["a"]}, None, 400, "unsupported_input"),
    ],
)
def test_bad_texts_are_refused_with_a_code(body, media, status, code):
    with pytest.raises(RequestError) as e:
        decode(body, media or "application/json")
    assert (e.value.status, e.value.code) == (status, code)


def test_a_body_without_a_content_type_is_a_text_unless_it_opens_like_json():
    bare = decode(b"The cat sat on the mat.", "")
    assert bare.form == "single" and np.array_equal(bare.rows, decode(b"The cat sat on the mat.", "text/plain").rows)
    assert decode(b' {"texts": ["a", "b"]}', "").form == "rows"


def test_a_batch_is_padded_to_its_longest_text_only():
    a, b = decode({"text": "one"}).rows, decode({"text": "a few more words here"}).rows
    batch = text_codec.collate([a, b])
    assert batch.shape == (2, 2, b.shape[-1]) and batch[0, 1].sum() == a[0, 1].sum()


@pytest.mark.parametrize("runtime", SPEC.formats)
def test_a_requests_answer_never_depends_on_its_batchmates(built, tmp_path, runtime):
    """Each request alone, then inside batches with long texts in every order: the same answer,
    within float32 rounding (cosine >= 0.99999), int8 included: its activation scales are fixed
    at build time, where dynamic quantization moved a text by its batchmates (cosine 0.988)."""
    handler, ctx = load(built, build.served_name(SPECS["minilm"], runtime), tmp_path)
    assert isinstance(handler, Handler)
    requests = [
        {"text": "Short one."},
        {"text": "A medium length sentence about the weather in Zürich."},
        {"texts": ["ok", "A second text in the same request."]},
        {"text": LONG},
    ]
    alone = [run(handler, ctx, [{"body": r}])[0][0] for r in requests]
    # Long batchmates, within the call budget (max_call_cost 512 padded tokens) with the four.
    mates = [{"texts": [LONG[:500], "tiny"]}]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        batch = [{"body": requests[i]} for i in order] + [{"body": m} for m in mates]
        answers, statuses = run(handler, ctx, batch)
        assert set(statuses) == {200}
        for position, i in enumerate(order):
            got, want = answers[position], alone[i]
            got, want = (got if isinstance(got, list) else [got]), (want if isinstance(want, list) else [want])
            for g, w in zip(got, want, strict=True):
                assert g["truncated"] == w["truncated"]
                a, b = np.array(g["embedding"]), np.array(w["embedding"])
                assert abs(np.linalg.norm(a) - 1) < 1e-4 and float(a @ b) >= 0.99999, (runtime, i)


def test_files_that_differ_from_the_recorded_hashes_stop_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(minilm, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(WeightsError, match="not the recorded 0000.*refusing to build"):
        build.build(SPEC, store=tmp_path / "store", artifacts=tmp_path / "artifacts", progress=False)
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob("*.mar"))


@pytest.mark.integration
@pytest.mark.parametrize("binary", [True, False])
def test_tritons_own_http_client_gets_embeddings_from_every_text_archive(served, binary):
    """tritonclient.http with its defaults (binary tensors both ways), and in the JSON form."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=served.inference_url.removeprefix("http://"))
    texts = triton.InferInput("text", [2], "BYTES")
    pair = np.array(["The cat sat on the mat.", "A feline rested on the rug."], dtype=object)
    if binary:
        texts.set_data_from_numpy(pair)  # the client's default: binary_data=True
        outputs = None  # the default: every output, in binary
    else:
        texts.set_data_from_numpy(pair, binary_data=False)
        outputs = [triton.InferRequestedOutput("embedding", binary_data=False)]
    for runtime in SPEC.formats:
        name = build.served_name(SPECS["minilm"], runtime)
        answer = client.infer(name, [texts], outputs=outputs, headers=served.headers())
        vectors = answer.as_numpy("embedding")
        assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
        assert float(vectors[0] @ vectors[1]) > 0.4  # paraphrases
        assert (answer.get_output("embedding").get("parameters", {}).get("binary_data_size") is not None) == binary


@pytest.mark.integration
def test_tritons_client_defaults_work_for_images_and_rows_and_a_bad_binary_header_is_named(served):
    import requests
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=served.inference_url.removeprefix("http://"))
    pixels = triton.InferInput("pixels", [2, 28, 28], "FP32")
    pixels.set_data_from_numpy(np.zeros((2, 28, 28), np.float32))
    answer = client.infer("digits", [pixels], headers=served.headers())
    assert answer.as_numpy("probabilities").shape == (2, 10) and answer.as_numpy("label").shape == (2,)
    rows = triton.InferInput("features", [1, 10], "FP32")
    rows.set_data_from_numpy(np.zeros((1, 10), np.float32))
    assert client.infer("diabetes", [rows], headers=served.headers()).as_numpy("prediction").shape == (1,)
    body, length = triton.InferenceServerClient.generate_request_body([rows])
    headers = {**served.headers(), "Inference-Header-Content-Length": str(length + 7)}
    r = requests.post(f"{served.inference_url}/v2/models/diabetes/infer", data=body, headers=headers, timeout=30)
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["detail"]
