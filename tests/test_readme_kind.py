"""The README's worked example of a new input kind, run as written: its contract class and its
codec module, with the real shared helpers, through the same entry points the handler, the
archive's schema and the protocol's metadata use."""

from __future__ import annotations

import json
import re
import sys
import types

import numpy as np
import pytest

from handlers import contracts
from handlers.codec import Limits, Payload, RequestError
from handlers.codecs import codec_for
from tsforge.paths import ROOT


def block(marker: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(rf"<!-- kind:{marker} -->\n```python\n(.*?)```", readme, re.S).group(1)


@pytest.fixture
def signal(monkeypatch):
    """The README's SignalContract registered, and its codec importable as handlers.codecs.signal."""
    namespace = dict(vars(contracts))
    exec(block("contract"), namespace)
    contract_class = namespace["SignalContract"]
    monkeypatch.setattr(contracts, "SignalContract", contract_class, raising=False)
    monkeypatch.setitem(contracts.CONTRACTS, "signal", contract_class)
    module = types.ModuleType("handlers.codecs.signal")
    module.__file__ = "handlers/codecs/signal.py"
    monkeypatch.setitem(sys.modules, "handlers.codecs.signal", module)
    exec(compile(block("codec"), module.__file__, "exec"), vars(module))
    return contract_class(labels=("calm", "burst"), length=8)


def decode(contract, body, media_type="application/json"):
    return codec_for("signal").decode_request(Payload(json.dumps(body).encode(), media_type), contract, Limits())


def test_the_kind_is_found_by_its_name_and_round_trips_through_the_archive_config(signal):
    assert codec_for(signal.kind).COST_UNIT == "rows"
    assert contracts.from_yaml(contracts.to_yaml(signal)) == signal


def test_json_and_protocol_requests_decode_and_answer_in_their_own_form(signal):
    codec = codec_for("signal")
    one = decode(signal, {"samples": [0.5] * 8})
    assert one.rows.shape == (1, 8) and one.rows.dtype == np.float32
    answer = codec.encode_outputs(np.array([[0.0, 2.0]], np.float32), one, signal, "sig")
    assert answer["label"] == "burst" and set(answer["probabilities"]) == {"calm", "burst"}
    v2 = decode(
        signal, {"id": "r1", "inputs": [{"name": "samples", "shape": [2, 8], "datatype": "FP32", "data": [0.0] * 16}]}
    )
    assert v2.rows.shape == (2, 8) and v2.form == "v2"
    out = codec.encode_outputs(np.zeros((2, 2), np.float32), v2, signal, "sig")
    assert out["id"] == "r1" and [t["name"] for t in out["outputs"]] == ["probabilities", "label"]
    assert [t["name"] for t in codec.oip_metadata(signal)["outputs"]] == ["probabilities", "label"]
    assert codec.oip_metadata(signal)["inputs"][0]["shape"] == [-1, 8] and codec.schema(signal)["output"]


def test_the_kinds_monitoring_signals_build_a_reference_profile_and_bucket_live_rows(signal):
    from handlers.monitoring import INPUT, bucket_of
    from training.profile import numeric

    rows = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    values = codec_for("signal").input_signals(rows, signal)
    profile = [numeric(name, INPUT, v) for name, v in values.items()]
    assert [p["name"] for p in profile] == ["mean", "spread"] and sum(profile[0]["counts"]) == 60
    assert bucket_of(profile[0], values["mean"]).max() == len(profile[0]["shares"]) - 1


def test_the_kinds_replay_inputs_decode_back_to_its_rows(signal):
    from handlers.oip import encode_request

    rows = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    body, headers = encode_request(codec_for("signal").replay_inputs(rows, signal))
    payload = Payload(body, "application/json", headers["Inference-Header-Content-Length"])
    np.testing.assert_array_equal(codec_for("signal").decode_request(payload, signal, Limits()).rows, rows)


@pytest.mark.parametrize(
    ("body", "media_type", "status", "code"),
    [
        ({"samples": [0.5] * 7}, "application/json", 400, "wrong_shape"),
        ({"samples": [0.5] * 7 + ["x"]}, "application/json", 400, "wrong_type"),
        ({"sample": []}, "application/json", 400, "unsupported_input"),
        ({"samples": [0.5] * 8}, "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_bad_requests_are_refused_with_the_shared_codes(signal, body, media_type, status, code):
    with pytest.raises(RequestError) as refused:
        decode(signal, body, media_type)
    assert (refused.value.status, refused.value.code) == (status, code)
