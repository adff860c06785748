"""The recommender through a real TorchServe (the session's `served`, both runtimes): every input
form, the quality gate recomputed from served answers, the two runtimes' top k against each
other, answers that do not depend on batchmates, every refusal by name, and live monitoring
counts."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from bench.worst_cases import worst_cases
from bench.worst_recommendation import REFUSED
from handlers.codecs import recommendation as codec
from models import movielens
from tests.conftest import served_name
from tsforge.paths import EXAMPLES

pytestmark = pytest.mark.integration

MODELS = (served_name("movielens", "torchscript"), served_name("movielens", "onnx"))
EXAMPLE = json.loads((EXAMPLES / "movielens.json").read_text())
ASKS_PER_REQUEST = 16  # held-out histories per request: well within max_json_values


def post(served, model: str, doc) -> requests.Response:
    headers = {**served.headers(), "Content-Type": "application/json"}
    body = doc if isinstance(doc, bytes) else json.dumps(doc)
    return requests.post(f"{served.inference_url}/predictions/{model}", data=body, headers=headers, timeout=60)


def answer(served, model: str, doc):
    r = post(served, model, doc)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def items(answers) -> list[int]:
    return [a["item"] for a in answers]


@pytest.fixture(scope="module")
def held_out():
    """Per user, (the history before their test target, as movie ids, the target's id)."""
    movielens.write_catalogue()
    cat = codec.catalogue(movielens.SPEC.contract.catalogue)
    train, val, test = movielens.time_split()
    return [([int(cat.ids[i]) for i in train[u] + [val[u]]], int(cat.ids[test[u]])) for u in sorted(test)]


@pytest.mark.parametrize("model", MODELS)
def test_every_form_gets_the_same_top_k(served, model):
    """The example history as one object, in a list, over the protocol in JSON and as
    tritonclient sends it (binary tensors, its defaults): the same items in the same order."""
    history, k = EXAMPLE["history"], EXAMPLE["k"]
    single = answer(served, model, EXAMPLE)
    assert len(single) == k and all(a["title"] and isinstance(a["score"], float) for a in single)
    assert not set(items(single)) & set(history)  # seen items are excluded by default
    assert [s["score"] for s in single] == sorted((s["score"] for s in single), reverse=True)
    listed = answer(served, model, [EXAMPLE, {"history": history, "k": 3}])
    assert [items(a) for a in listed] == [items(single), items(single)[:3]]
    doc = {"inputs": [{"name": "history", "shape": [1, len(history)], "datatype": "INT64", "data": history}],
           "parameters": {"k": k}}  # fmt: skip
    r = requests.post(f"{served.inference_url}/v2/models/{model}/infer", json=doc, headers=served.headers(), timeout=60)
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["items"]["data"] == items(single) and outputs["items"]["shape"] == [1, k]
    client = triton.InferenceServerClient(served.inference_url.split("://")[1], verbose=False)
    tensor = triton.InferInput("history", [1, len(history)], "INT64")
    tensor.set_data_from_numpy(np.asarray([history], np.int64))
    result = client.infer(model, [tensor], headers=served.headers(), parameters={"k": k})
    assert result.as_numpy("items").tolist() == [items(single)]
    # Not excluding: the user's own favourites may come back; a known user answers from their history.
    included = answer(served, model, {**EXAMPLE, "exclude_seen": False})
    assert len(included) == k and items(included) != items(single)
    known = answer(served, model, {"user": 196, "k": 5})
    cat = codec.catalogue(movielens.SPEC.contract.catalogue)
    assert len(known) == 5 and not set(items(known)) & {int(cat.ids[i]) for i in cat.users[196]}


@pytest.mark.parametrize("model", MODELS)
def test_the_gate_holds_on_served_answers(served, built, held_out, model):
    """HR@10 and NDCG@10 recomputed from the top ten TorchServe answers for each of the 943 test
    users (their history before the target): the build's figures, and above popularity's."""
    metrics = json.loads((built.artifacts / "movielens" / "metrics.json").read_text())["test"]
    asks = [{"history": history, "k": 10} for history, _ in held_out]
    chunks = [asks[i : i + ASKS_PER_REQUEST] for i in range(0, len(asks), ASKS_PER_REQUEST)]
    with ThreadPoolExecutor(4) as pool:
        answers = [a for part in pool.map(lambda c: answer(served, model, c), chunks) for a in part]
    ranks = [
        items(a).index(target) if target in items(a) else 10 for a, (_, target) in zip(answers, held_out, strict=True)
    ]
    hr = float(np.mean([r < 10 for r in ranks]))
    ndcg = float(np.mean([1 / np.log2(r + 2) if r < 10 else 0.0 for r in ranks]))
    # Within one user: two runtimes may order a tie either way (training.gates.ranking_parity).
    assert hr == pytest.approx(metrics["hr_at_10"], abs=1.01 / len(held_out))
    assert ndcg == pytest.approx(metrics["ndcg_at_10"], abs=1.01 / len(held_out))
    assert hr > metrics["popularity_hr_at_10"] and ndcg > metrics["popularity_ndcg_at_10"]


def test_both_runtimes_answer_the_same_top_k(served, held_out):
    """TorchScript and ONNX Runtime on 64 held-out users: the same items in the same order, but
    where two scores tie within the ONNX parity tolerance."""
    asks = [{"history": history, "k": 100} for history, _ in held_out[::15]]
    script, onnx = (answer(served, model, asks) for model in MODELS)
    for a, b in zip(script, onnx, strict=True):
        assert np.abs(np.subtract([x["score"] for x in a], [x["score"] for x in b])).max() <= 1e-4
        for x, y in zip(a, b, strict=True):
            assert x["item"] == y["item"] or abs(x["score"] - y["score"]) <= 1e-4


@pytest.mark.parametrize("model", MODELS)
def test_an_answer_does_not_depend_on_its_batchmates(served, held_out, model):
    """Eight histories of different lengths sent at once (one padded pass, batch size 8), in two
    orders, each against itself alone."""
    lengths = (3, 400, 17, 60, 1, 250, 90, 33)
    asks = [{"history": history[-n:], "k": 20} for (history, _), n in zip(held_out[:8], lengths, strict=True)]
    alone = [answer(served, model, ask) for ask in asks]
    for order in (range(8), reversed(range(8))):
        order = list(order)
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda i: answer(served, model, asks[i]), order))
        for i, got in zip(order, together, strict=True):
            assert items(got) == items(alone[i])
            assert np.abs(np.subtract([g["score"] for g in got], [a["score"] for a in alone[i]])).max() <= 1e-5


@pytest.mark.parametrize("model", MODELS)
def test_every_refusal_is_named_and_spares_the_good_asks_beside_it(served, model):
    cases = {c.name: c for c in worst_cases() if c.model == "movielens"}
    assert set(REFUSED) <= set(cases)
    bad = [(cases[name].body, code) for name, code in REFUSED.items()]
    bad += [({"history": []}, "empty_history"), ({"history": [50], "k": 0}, "k_out_of_range"),
            ({"history": [50], "exclude": True}, "unknown_field"), ({"user": 196, "history": [50]}, "unsupported_input")]  # fmt: skip
    good = answer(served, model, EXAMPLE)
    jobs = [bad[i // 2 % len(bad)] if i % 2 else (json.dumps(EXAMPLE).encode(), None) for i in range(48)]
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda job: post(served, model, job[0]), jobs))
    for (_, code), r in zip(jobs, replies, strict=True):
        if code is None:
            assert r.status_code == 200 and items(r.json()) == items(good)
        else:
            assert 400 <= r.status_code < 500 and r.json()["error"] == code, r.text[:300]
    # A binary protocol history of 100,000 ids: refused from its shape, before its ids are read.
    history = np.arange(100_000, dtype=np.int64) % 1682 + 1
    client = triton.InferenceServerClient(served.inference_url.split("://")[1], verbose=False)
    tensor = triton.InferInput("history", [1, len(history)], "INT64")
    tensor.set_data_from_numpy(history[None])
    with pytest.raises(triton.InferenceServerException, match="history_too_long"):
        client.infer(model, [tensor], headers=served.headers())


def test_live_monitoring_counts_the_recommenders_signals(served):
    """After answers, the worker's counts reach TorchServe's metrics: history length and
    popularity in, the top score out, labelled with the model."""
    for _ in range(3):
        answer(served, "movielens", EXAMPLE)
    deadline, text = time.monotonic() + 20, ""
    while time.monotonic() < deadline:
        text = requests.get(f"{served.metrics_url}/metrics", timeout=10).text
        lines = [
            line for line in text.splitlines() if line.startswith("MonitorRows") and 'ModelName="movielens"' in line
        ]
        signals = {s for s in ("history_length", "history_popularity", "top_score") if any(s in line for line in lines)}
        if len(signals) == 3 and any(float(line.rsplit(" ", 1)[1]) > 0 for line in lines):
            return
        time.sleep(1)
    raise AssertionError(f"no MonitorRows for movielens: {text[-1500:]}")
