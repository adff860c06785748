"""Heavy beside light, through a real TorchServe: the largest requests the limits accept, sent
continuously by eight clients, neither take the text model down nor hold up a one-sentence
request (bench/fairness.py, which `make bench` runs for every kind)."""

import json

import pytest
import requests

from bench import fairness
from handlers.codec import Limits
from models.registry import SPECS

pytestmark = pytest.mark.integration

SPEC = SPECS["minilm"]
LIMITS = Limits.from_mapping(dict(SPEC.serving.limits))
# ~16 KB of text (max_text_bytes), cut to max_tokens: the dearest text the limits accept.
HEAVY_TEXT = ("tokenization " * 1300)[: LIMITS.max_text_bytes - 16]
# As many of them as one request may carry: max_rows, and the pass budget in padded tokens.
HEAVY_ROWS = min(LIMITS.max_rows, LIMITS.max_pass_cost // SPEC.contract.max_tokens)
DURATION_S = 10  # the light request alone for as long first: the same run's baseline
LIGHT_P99_MS = 1000


def test_the_largest_request_the_limits_accept_is_served_and_one_row_more_is_refused(served):
    url = f"{served.inference_url}/predictions/minilm"
    ok = requests.post(url, json={"texts": [HEAVY_TEXT] * HEAVY_ROWS}, headers=served.headers(), timeout=30)
    assert ok.status_code == 200 and len(ok.json()) == HEAVY_ROWS and all(a["truncated"] for a in ok.json())
    if HEAVY_ROWS < LIMITS.max_rows:  # the pass budget binds before max_rows: its 413 names it
        over = requests.post(url, json={"texts": [HEAVY_TEXT] * (HEAVY_ROWS + 1)}, headers=served.headers(), timeout=30)
        assert over.status_code == 413 and over.json()["error"] == "request_too_costly"
        assert "max_pass_cost" in over.json()["detail"]


def test_heavy_requests_never_fail_the_model_and_light_ones_stay_fast(served):
    body = json.dumps({"texts": [HEAVY_TEXT] * HEAVY_ROWS}).encode()
    pids = worker_pids(served)
    result = fairness.measure(
        served, "minilm", fairness.Body(body, "application/json"),
        fairness.Body(b"The cat sat on the mat.", "text/plain"), f"{HEAVY_ROWS} texts of 256 tokens", DURATION_S,
    )  # fmt: skip
    print("\n".join(fairness.table([result])))
    assert not result.errors, result.errors[:5]
    assert set(result.heavy_statuses) <= {200, 429} and result.heavy_statuses.get(200, 0) > 0, result.heavy_statuses
    assert set(result.light_statuses) == {200}, result.light_statuses
    assert result.light_p99_ms <= LIGHT_P99_MS, f"light p99 {result.light_p99_ms:.0f} ms beside the heavy clients"
    assert worker_pids(served) == pids, "a worker was restarted"


def worker_pids(served) -> list[int]:
    """The minilm workers' process ids, from the management API's describe."""
    r = requests.get(f"{served.management_url}/models/minilm", headers=served.headers("management"), timeout=10)
    return sorted(w["pid"] for w in r.json()[0]["workers"])
