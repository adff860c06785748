"""bench.breakdown reads the frontend's log as TorchServe 0.12 writes it: per-request means from
per-batch lines and from the workers' summed batch figures."""

import pytest

from bench import breakdown

PREFIX = "2026-12-07T09:00:00,000 [INFO ] W-9000-digits_1.0-stdout org.pytorch.serve.wlm.WorkerLifeCycle - result="
TAIL = "|#type:{kind}|#hostname:vm,1796588343,{ids}, pattern=[METRICS]"


def metric(name: str, unit: str, value: float, dims: str, kind: str, ids: str) -> str:
    return f"{PREFIX}[METRICS]{name}.{unit}:{value}|#{dims}" + TAIL.format(kind=kind, ids=ids)


def test_stage_and_handle_times_are_weighted_by_the_requests_that_waited_for_them():
    # Two batches: 3 requests (handle 6 ms) and 1 request (handle 2 ms); the stage sums say the
    # batch of 3 spent 3 ms decoding and the batch of 1 spent 1 ms.
    labels = "ModelName:digits,Level:Model,Version:1.0,BatchSize:{}"
    lines = [
        metric("PredictionTime", "Milliseconds", 6.0, "ModelName:digits,Level:Model", "GAUGE", "a-1,b-2,c-3"),
        metric("PredictionTime", "Milliseconds", 2.0, "ModelName:digits,Level:Model", "GAUGE", "d-4"),
        metric("HandlerBatches", "Count", 1.0, labels.format(3), "COUNTER", "d-4"),
        metric("HandlerBatches", "Count", 1.0, labels.format(1), "COUNTER", "d-4"),
        metric("HandlerPreprocessMs", "Count", 3.0, labels.format(3), "COUNTER", "d-4"),
        metric("HandlerPreprocessMs", "Count", 1.0, labels.format(1), "COUNTER", "d-4"),
        metric("HandlerPreprocessMs", "Count", 50.0, labels.format(3).replace("digits", "wine"), "COUNTER", "x"),
    ]
    logged = breakdown.parse("\n".join(lines), "digits")
    assert logged["handle_call"] == pytest.approx((6 * 3 + 2 * 1) / 4)
    assert logged["decode"] == pytest.approx((3 * 3 + 1 * 1) / 4)
    assert "inference" not in logged  # what the log lacks stays out
