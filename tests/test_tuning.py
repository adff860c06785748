"""Each model's shipped configuration comes from its own sweep (models/tuned.json, `tsforge bench
--tune`): the choice rule, the registry applying it, the plain name serving the chosen runtime,
and the peer the sweep measures against answering exactly as ours."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import pytest
import requests

from bench import baselines, tuning
from bench.codec_model import CodecModel, peer_body
from bench.points import Point
from models import registry
from models.registry import SPECS
from tests.conftest import example
from training.specs import ServingConfig
from tsforge.packaging import build


def point(model: str, setting: str, c: int, throughput: float, p50: float, errors: int = 0) -> Point:
    return Point("tune", model, setting, c, 100, throughput, p50, p50, p50, errors)


def test_the_choice_is_the_most_throughput_whose_single_request_latency_stays_near_the_best():
    fast, wide, broken = "2w x 1t, batch 8, 1 ms", "2w x 1t, batch 32, 10 ms", "1w x 2t, batch 16, 5 ms"
    a, b = (build.served_name(SPECS["digits"], runtime) for runtime in SPECS["digits"].formats)
    points = [
        point(a, fast, 1, 100, 4.0), point(a, fast, 32, 900, 30),
        point(b, fast, 1, 100, 4.9), point(b, fast, 32, 1000, 30),
        point(a, wide, 1, 100, 12.0), point(a, wide, 32, 2000, 20),  # c=1 p50 3x the best: out
        point(a, broken, 1, 100, 3.0, errors=1), point(a, broken, 32, 5000, 5),  # errors: out
    ]  # fmt: skip
    choice = tuning.choose(points, "digits")
    # broken's 3.0 ms does not count as the best either: 4.9 is within 1.25x of 4.0.
    assert (choice.served_name, choice.setting, choice.throughput) == (b, fast, 1000)
    assert choice.runtime == SPECS["digits"].formats[1]
    assert tuning.parse_label(wide) == {"workers": 2, "threads_per_worker": 1, "batch_size": 32,
                                        "max_batch_delay_ms": 10}  # fmt: skip
    with pytest.raises(RuntimeError, match="no setting served wine"):
        tuning.choose(points, "wine")


def test_digits_single_request_target_is_judged_like_for_like_and_as_printed():
    chosen = {"digits": {"p50_ms": 7.3}}
    alone = tuning.single_request_line({"chosen": chosen, "digits_alone_p50_ms": 4.704, "floor_p50_ms": 4.7})
    assert "p50 4.70 ms" in alone and "4.70 ms (median of 3 alternating rounds" in alone and alone.endswith(": met")
    slower = tuning.single_request_line({"chosen": chosen, "digits_alone_p50_ms": 5.21, "floor_p50_ms": 4.7})
    assert slower.endswith("missed (≤ the floor's, over by 0.51 ms)")
    # A run from before the rounds: the sweep's figure, named as such.
    old = tuning.single_request_line({"chosen": chosen, "floor_p50_ms": 4.7})
    assert "p50 7.30 ms" in old and "with every archive loaded" in old and "over by 2.60 ms" in old


def test_a_missed_in_process_bar_says_whether_torchserve_itself_could_reach_it():
    published = json.loads((tuning.ROOT / "bench" / "published" / "results.json").read_text())["tuning"]
    inprocess = dict.fromkeys(tuning.INPROCESS_BAR, 1000.0)
    chosen = {m: {**c, "throughput": 900.0} for m, c in published["chosen"].items()}  # every bar met
    chosen["movielens"]["throughput"] = 500.0  # 0.50x: missed
    figures = {**published, "chosen": chosen, "inprocess": {**published["inprocess"], **inprocess}}
    lines = tuning.table({**figures, "ceiling": {**dict.fromkeys(tuning.INPROCESS_BAR, 5000.0), "movielens": 600.0}})
    (why,) = [line for line in lines if "ceiling_handler" in line]  # the met bars get none
    assert why.startswith("- movielens, served / in process missed") and "600/s, 0.60×" in why
    assert why.endswith("the bar is above what TorchServe itself carries here")
    lines = tuning.table({**figures, "ceiling": {"movielens": 850.0}})
    assert [line for line in lines if "ceiling_handler" in line][0].endswith("so the miss is the handler's")
    before = {k: v for k, v in figures.items() if k != "ceiling"}  # a run from before it was measured
    assert not [line for line in tuning.table(before) if "ceiling_handler" in line]


def test_the_registry_ships_the_recorded_choice_under_the_plain_name():
    recorded = json.loads(registry.TUNED.read_text())["models"]
    assert set(recorded) == set(SPECS)
    for name, spec in SPECS.items():
        choice = recorded[name]
        assert spec.formats[0] == choice["runtime"] and build.served_name(spec, choice["runtime"]) == name
        assert {k: getattr(spec.serving, k) for k in registry.KNOBS} == {k: choice[k] for k in registry.KNOBS}
        others = [build.served_name(spec, r) for r in spec.formats[1:]]
        assert others == [f"{name}-{r}" for r in spec.formats[1:]]
    assert len(set(build.SERVED)) == len(build.SERVED)
    # The choice changes TorchServe's knobs only: the model's own limits and costs stay.
    spec = replace(SPECS["minilm"], formats=("torchscript", "onnx", "int8"))
    chosen = registry.tuned(spec, {"runtime": "int8", "workers": 1, "threads_per_worker": 2, "batch_size": 16,
                                   "max_batch_delay_ms": 5})  # fmt: skip
    assert chosen.formats == ("int8", "torchscript", "onnx")
    assert (chosen.serving.limits, chosen.serving.pass_seconds) == (spec.serving.limits, spec.serving.pass_seconds)
    assert registry.tuned(spec, None) is spec
    with pytest.raises(SystemExit, match="exports"):
        registry.tuned(SPECS["digits"], {"runtime": "int8"})


@pytest.mark.integration
@pytest.mark.parametrize("model", ["digits", "minilm", "movielens"])
def test_the_litserve_peer_answers_as_our_codec_does_in_process(built, tmp_path, model):
    """What the sweep measures LitServe on is the same file and codec: the same answer."""
    with zipfile.ZipFile(built.archive(model)) as z:
        z.extractall(tmp_path / "model")
    body = peer_body(*example(SPECS[model]))
    ours = CodecModel(str(tmp_path / "model"), threads=1)
    decoded = ours.decode(json.loads(body))
    expected = ours.encode(ours.predict([decoded])[0], decoded)
    setting = ServingConfig(batch_size=4, max_batch_delay_ms=1, workers=1, threads_per_worker=1)
    with baselines.peer_server(tmp_path / "model", setting, tmp_path / "litserve.log") as url:
        answer = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == json.loads(json.dumps(expected))
