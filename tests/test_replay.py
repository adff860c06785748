"""The live replay: each archive's held-out sample and its gated answers (training.replay), and
`tsforge verify` sending it to a real TorchServe: agreeing with the archives it was built from,
disagreeing (exit 1, the cases named) when another version's model answers in their place.

The compose gateway and Swarm run it too (tests/test_docker_live.py, tests/test_swarm_live.py).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests

from handlers.codec import Limits, Payload
from handlers.codecs import codec_for
from handlers.oip import encode_request
from models.registry import SPECS
from tests.conftest import SERVED_PAIRS, build_other_digits, running_torchserve
from training.export import FORMATS
from training.replay import REPLAY, compare
from tsforge.packaging import build

TSFORGE = str(Path(sys.executable).with_name("tsforge"))


def decoded(spec, inputs):
    body, headers = encode_request(inputs)
    payload = Payload(body, "application/octet-stream", headers["Inference-Header-Content-Length"])
    return codec_for(spec.contract.kind).decode_request(payload, spec.contract, Limits(max_json_values=1 << 20))


@pytest.mark.parametrize("model", ["wine", "digits", "efficientnet_lite0", "minilm", "movielens"])
def test_each_codecs_replay_inputs_decode_back_to_the_rows(model):
    spec = SPECS[model]
    rng = np.random.default_rng(0)
    if spec.contract.kind == "tabular":
        rows = rng.normal(size=(3, len(spec.contract.features))).astype(np.float32)
    elif spec.contract.kind == "image":
        pixels = rng.random((2, *spec.contract.pixel_shape), dtype=np.float32)
        rows = decoded(spec, [{"name": "p", "shape": list(pixels.shape), "datatype": "FP32", "data": pixels}]).rows
    elif spec.contract.kind == "recommendation":  # two histories of unequal length, padded with -1
        ids = [[50, 172, 181, 174, 210], [1, 2, -1, -1, -1]]
        rows = decoded(spec, [{"name": "h", "shape": [2, 5], "datatype": "INT64", "data": np.asarray(ids)}]).rows
    else:
        text = {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a short text", "Another, longer text here."]}
        rows = decoded(spec, [text]).rows
    back = decoded(spec, codec_for(spec.contract.kind).replay_inputs(rows, spec.contract)).rows
    assert back.shape == rows.shape
    np.testing.assert_allclose(back, rows, atol=1e-6)


@pytest.fixture(scope="module")
def sample(built):
    with zipfile.ZipFile(built.archive(build.served_name(SPECS["digits"], "torchscript"))) as z:
        return json.loads(z.read(REPLAY))  # TorchScript's: held to max |diff| 1e-5


@pytest.mark.parametrize(("model", "runtime"), SERVED_PAIRS)
def test_every_archive_carries_its_sample_and_agrees_with_it(built, model, runtime):
    fmt = FORMATS[runtime]
    with zipfile.ZipFile(built.archive(build.served_name(SPECS[model], fmt.name))) as z:
        doc = json.loads(z.read(REPLAY))
    assert doc["model"] == build.served_name(SPECS[model], fmt.name) and doc["version"] == "1.0"
    assert doc["check"] == ({"min_cosine": fmt.cosine[1]} if fmt.cosine else {"max_abs_diff": fmt.tolerance})
    assert len(doc["held_out_rows"]) >= 1
    problems, _ = compare(doc, doc["expected"])
    assert problems == []


def test_a_changed_label_or_probability_is_named_by_case(sample):
    answer = copy.deepcopy(sample["expected"])
    label = next(o for o in answer["outputs"] if o["name"] == "label")
    label["data"][2] = (label["data"][2] + 1) % 10
    probabilities = next(o for o in answer["outputs"] if o["name"] == "probabilities")
    probabilities["data"][0] += 1e-3
    problems, worst = compare(sample, answer)
    row = sample["held_out_rows"][2]
    assert any(p.startswith(f"case 2 (held-out row {row}): label") for p in problems), problems
    assert any(p.startswith("case 0 ") and "max |diff| 0.001 > 1e-05" in p for p in problems), problems
    assert worst == pytest.approx(1e-3, rel=1e-3)
    # Noise well within the parity tolerance agrees.
    probabilities["data"][0] -= 1e-3 - 1e-7
    label["data"][2] = sample["expected"]["outputs"][1]["data"][2]
    assert compare(sample, answer)[0] == []


def test_an_answer_of_another_shape_or_kind_disagrees(sample):
    assert "not an Open Inference Protocol response" in compare(sample, {"label": 7})[0][0]
    short = copy.deepcopy(sample["expected"])
    short["outputs"] = short["outputs"][:1]
    assert compare(sample, short)[0] == [f"output 'label': missing, expected [{len(sample['held_out_rows'])}]"]


def test_int8_embeddings_are_held_to_the_cosine_gate(built):
    with zipfile.ZipFile(built.archive(build.served_name(SPECS["minilm"], "int8"))) as z:
        doc = json.loads(z.read(REPLAY))
    answer = copy.deepcopy(doc["expected"])
    data = np.asarray(answer["outputs"][0]["data"]).reshape(len(doc["held_out_rows"]), -1)
    data[1] = -data[1]  # the opposite direction: cosine -1
    answer["outputs"][0]["data"] = data.ravel().tolist()
    problems, worst = compare(doc, answer)
    assert len(problems) == 1 and problems[0].startswith("case 1 ") and "cosine -1.0000 < 0.97" in problems[0]
    assert worst == pytest.approx(-1.0)


def verify(url: str, store: Path, key: str, *models: str) -> subprocess.CompletedProcess:
    args = [TSFORGE, "verify", url, "--store", str(store), "--inference-key", key]
    for model in models:
        args += ["--model", model]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_verify_agrees_with_the_archives_a_torchserve_was_started_from(served, built):
    done = verify(served.inference_url, built.store, served.keys()["inference"], *build.SERVED)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("agrees ") == len(build.SERVED)
    assert f"all {len(build.SERVED)} archives answer" in done.stdout


@pytest.mark.integration
def test_verify_fails_naming_the_cases_when_another_versions_model_answers(built, tmp_path):
    """digits trained otherwise, archived as digits 1.0 and served: the replay of the real digits
    archive disagrees, and says where."""
    store = tmp_path / "store"
    build_other_digits(store, tmp_path / "artifacts", archive_name="digits-seed7")
    with running_torchserve(store, tmp_path / "run") as server:
        r = requests.post(
            f"{server.management_url}/models",
            params={"url": "digits-seed7.mar", "initial_workers": 1, "synchronous": "true"},
            headers=server.headers("management"),
            timeout=120,
        )
        assert r.status_code == 200, r.text
        key = server.keys()["inference"]
        done = verify(server.inference_url, built.store, key, "digits")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "DISAGREES digits.mar (digits 1.0)" in done.stdout
        assert "case " in done.stdout and "held-out row" in done.stdout
        assert "what runs is not what was gated" in done.stderr and "Traceback" not in done.stderr
        # Its own sample agrees: the replay tells the two apart, not the server's state.
        assert verify(server.inference_url, store, key, "digits").returncode == 0
        # An archive the server does not serve is a disagreement too, not a crash.
        missing = verify(server.inference_url, built.store, key, "wine")
        assert missing.returncode == 1 and "HTTP 404" in missing.stdout
