"""Monitoring inside the worker, without a server: the reference profile an archive carries, the
counts a handler keeps, and that monitoring never changes or fails an answer."""

import json

import numpy as np
import pytest

from handlers import monitoring
from handlers.codecs import tabular
from handlers.contracts import TabularContract
from tests.test_handler_inprocess import load, run
from training.profile import classes, numeric
from tsforge.monitoring.traffic import held_out, shifted

CONTRACT = TabularContract(features=("a", "b"), labels=("no", "yes"))


def profile_of(values: dict[str, np.ndarray], predicted: np.ndarray, confidence: np.ndarray) -> dict:
    signals = [numeric(name, monitoring.INPUT, v) for name, v in values.items()]
    signals += [
        classes(predicted, CONTRACT.labels),
        numeric("confidence", monitoring.OUTPUT, confidence, np.asarray(monitoring.CONFIDENCE_EDGES)),
    ]
    return {"signals": signals, "stats": {"rows": len(predicted), "mean_confidence": float(confidence.mean())}}


def test_numeric_buckets_are_right_closed_so_a_constant_reference_still_sees_a_rise():
    signal = numeric("unknown_share", monitoring.INPUT, np.zeros(50))
    assert signal["edges"] == [0.0]
    assert monitoring.bucket_of(signal, np.array([0.0, 0.01, -1.0])).tolist() == [0, 1, 0]
    assert signal["counts"] == [50, 0] and all(share > 0 for share in signal["shares"])


def test_past_the_class_limit_the_rarest_classes_share_an_other_bucket():
    labels = tuple(str(i) for i in range(100))
    predicted = np.repeat(np.arange(100), np.arange(100))  # class i predicted i times
    signal = classes(predicted, labels)
    assert len(signal["shares"]) == monitoring.MAX_CLASS_BUCKETS
    assert signal["bucket_names"][-1] == "other" and signal["classes"] == list(range(81, 100))
    assert monitoring.bucket_of(signal, np.array([99, 81, 3])).tolist() == [18, 0, 19]


def test_counts_are_the_same_whether_rows_come_together_or_apart():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(200, 2)).astype(np.float32)
    logits = rng.normal(size=(200, 2)).astype(np.float32)
    probs = monitoring.softmax(logits)
    profile = profile_of(tabular.input_signals(rows, CONTRACT), probs.argmax(1), probs.max(1))
    together, apart = (monitoring.Monitor(profile, CONTRACT, tabular.input_signals) for _ in range(2))
    together.add([rows[:7], rows[7:]], [logits[:7], logits[7:]])
    for i in range(len(rows)):
        apart.observe([rows[i : i + 1]], [logits[i : i + 1]])  # counted at once, call by call
    a, b = together.take(), apart.take()
    assert a.rows == b.rows and a.confidence_sum == pytest.approx(b.confidence_sum)
    assert sum(n for (_, signal, _), n in a.rows.items() if signal == "a") == len(rows)
    assert together.take().rows == {}  # taking starts again from zero


def test_the_archive_carries_its_reference_profile_and_the_handler_counts_what_it_answers(built, tmp_path):
    handler, ctx = load(built, "diabetes", tmp_path)
    profile = handler.card["reference_profile"]
    names = {s["name"] for s in profile["signals"]}
    assert set(handler.contract.features) | {"prediction"} == names
    assert profile["stats"]["rows"] == len(held_out("diabetes")) and "r2" in profile["stats"]["metrics"]
    rows = held_out("diabetes")[:5]
    batch = [{"body": json.dumps({"features": r.tolist()}).encode()} for r in rows] + [{"body": b"{}"}]
    _, statuses = run(handler, ctx, batch)
    assert statuses == [200] * 5 + [400]
    counts = handler.monitor.take()
    assert counts.requests == {"answered": 5, "rejected": 1}
    assert sum(n for (_, signal, _), n in counts.rows.items() if signal == "bmi") == 5


def test_a_monitoring_failure_never_fails_an_answer(built, tmp_path, monkeypatch, caplog):
    handler, ctx = load(built, "diabetes", tmp_path)
    body = json.dumps({"features": shifted("diabetes")[0].tolist()}).encode()
    expected, _ = run(handler, ctx, [{"body": body}])

    def broken(*args):
        raise RuntimeError("a signal could not be computed")

    monkeypatch.setattr(handler.monitor, "signal_values", broken)
    monkeypatch.setattr(monitoring, "MAX_PENDING_BYTES", 0)  # counted on the request path
    answers, statuses = run(handler, ctx, [{"body": body}])
    assert statuses == [200] and answers == expected
    assert "monitoring could not count a batch" in caplog.text


def test_recordings_of_different_lengths_in_one_call_are_each_counted(built, tmp_path):
    """The speech model's pass is padded to its longest recording: each recording is counted once,
    by its own chunks (its level and length, and its mean speech probability), not the padding."""
    from bench.worst_audio import encoded, speechlike

    handler, ctx = load(built, "silero_vad", tmp_path)
    profile = handler.card["reference_profile"]
    assert {s["name"] for s in profile["signals"]} == {"chunks", "level_dbfs", "speech_probability"}
    short, long = (encoded(speechlike(s, 16000, 1), "WAV", "PCM_16", 16000) for s in (1.0, 7.0))
    _, statuses = run(handler, ctx, [{"body": short}, {"body": long}])
    assert statuses == [200, 200]
    counts = handler.monitor.take()
    assert counts.requests == {"answered": 2}
    per_signal = {
        name: sum(n for (_, s, _), n in counts.rows.items() if s == name) for name in ("chunks", "speech_probability")
    }
    assert per_signal == {"chunks": 2, "speech_probability": 2}
    chunks = next(s for s in profile["signals"] if s["name"] == "chunks")
    buckets = sorted(b for (_, s, b), n in counts.rows.items() if s == "chunks")
    assert buckets == sorted(monitoring.bucket_of(chunks, np.array([32, 219])).tolist())  # 1 s and 7 s of 32 ms
