"""The monitoring rules under `promtool test rules`: silent on reference-like series, firing on shifted ones.

The series are what workers export (handlers.monitoring): reference shares as gauges, bucket
counts and requests as counters that grow every scrape. Three models: `calm` answers like its
reference, `shifted` has its input, output and confidence moved and a quarter of its requests
refused, `idle` has no traffic. The PSI the rules record is checked against the same formula
computed here in Python.
"""

import math
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from handlers.monitoring import SMOOTHING
from tsforge.monitoring import rules
from tsforge.paths import ROOT

STEP = "15s"
THRESHOLDS = rules.Thresholds(window="1m", hold="30s", min_rows=20, min_requests=5)
REFERENCE = {  # (side, signal) -> reference shares per bucket
    ("input", "x"): [0.25, 0.25, 0.25, 0.25],
    ("output", "class"): [0.5, 0.5],
    ("output", "confidence"): [0.1, 0.9],
}
MEAN_CONFIDENCE = 0.9
ROWS_PER_STEP = 40
# Per model, rows per scrape in each bucket, then requests per scrape by outcome, confidence sum per scrape.
TRAFFIC = {
    "calm": ({k: [s * ROWS_PER_STEP for s in v] for k, v in REFERENCE.items()}, {"answered": 40, "rejected": 0}, 36.0),
    "shifted": (
        {("input", "x"): [0, 0, 0, 40], ("output", "class"): [40, 0], ("output", "confidence"): [40, 0]},
        {"answered": 30, "rejected": 10},
        8.0,
    ),
    "idle": ({k: [0] * len(v) for k, v in REFERENCE.items()}, {"answered": 0, "rejected": 0}, 0.0),
}


def labels(model: str, **more: str) -> str:
    pairs = {"ModelName": model, "Version": "1.0", "Level": "Model", "Hostname": "replica-1", **more}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def counter(per_step: float, steps: int = 40) -> str:
    return f"0+{per_step}x{steps}"


def input_series() -> list[dict[str, str]]:
    series = []
    for model, (rows, requests, confidence) in TRAFFIC.items():
        for (side, signal), shares in REFERENCE.items():
            for bucket, share in enumerate(shares):
                at = {"Side": side, "Signal": signal, "Bucket": str(bucket)}
                series.append({"series": "MonitorReferenceShare" + labels(model, **at), "values": f"{share}x40"})
                series.append(
                    {"series": "MonitorRows" + labels(model, **at), "values": counter(rows[side, signal][bucket])}
                )
        series.append(
            {"series": "MonitorReference" + labels(model, Stat="mean_confidence"), "values": f"{MEAN_CONFIDENCE}x40"}
        )
        series.append({"series": "MonitorConfidenceSum" + labels(model), "values": counter(confidence)})
        for outcome in ("answered", "rejected", "failed"):
            series.append(
                {
                    "series": "MonitorRequests" + labels(model, Outcome=outcome),
                    "values": counter(requests.get(outcome, 0)),
                }
            )
    return series


def python_psi(live_counts: list[float], reference: list[float]) -> float:
    """PSI as the rules compute it: live counts smoothed like the reference, over the same buckets."""
    live = (np.asarray(live_counts) + SMOOTHING) / (sum(live_counts) + SMOOTHING * len(live_counts))
    ref = np.asarray(reference)
    return float(np.sum((live - ref) * np.log(live / ref)))


def expected_alerts(name: str) -> list[dict[str, dict[str, str]]]:
    drift = {
        "ModelInputDrift": [("input", "x")],
        "ModelOutputDrift": [("output", "class"), ("output", "confidence")],
    }
    base = {"ModelName": "shifted", "Version": "1.0", "severity": "warning"}
    if name in drift:
        return [{"exp_labels": {**base, "Side": side, "Signal": signal}} for side, signal in drift[name]]
    if name == "ModelNoTraffic":
        return [{"exp_labels": {**base, "ModelName": "idle"}}]
    return [{"exp_labels": base}]  # confidence drop and error rate: the shifted model alone


def test_rules_fire_on_shifted_series_and_stay_silent_on_reference_like_ones(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/bootstrap.sh installs Debian's prometheus package"
    rendered = rules.render(THRESHOLDS)
    for group in rendered["groups"]:  # templates are checked by `promtool check rules` below
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rendered, sort_keys=False))
    window_rows = 4 * ROWS_PER_STEP  # increase over 1m of a counter scraped every 15 s
    shifted_x = python_psi([0, 0, 0, window_rows], REFERENCE["input", "x"])
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": STEP,
        "tests": [
            {
                "interval": STEP,
                "input_series": input_series(),
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": name, "exp_alerts": expected_alerts(name)} for name in rules.ALERTS
                ],
                "promql_expr_test": [
                    {
                        "expr": 'round(tsforge:psi{ModelName="shifted", Signal="x"}, 1e-6)',
                        "eval_time": "5m",
                        "exp_samples": [
                            {
                                "labels": '{ModelName="shifted", Version="1.0", Side="input", Signal="x"}',
                                "value": round(shifted_x, 6),
                            }
                        ],
                    },
                    {  # reference-like traffic: every signal scores under a tenth of the threshold
                        "expr": f'count(tsforge:psi{{ModelName="calm"}} < {THRESHOLDS.psi / 10})',
                        "eval_time": "5m",
                        "exp_samples": [{"labels": "{}", "value": len(REFERENCE)}],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert shifted_x > 10 * THRESHOLDS.psi and math.isfinite(shifted_x)


def test_the_shipped_rules_are_the_rendered_defaults_and_valid():
    """docker/prometheus/rules.yml is what `tsforge monitor rules` writes with its defaults."""
    shipped = ROOT / "docker" / "prometheus" / "rules.yml"
    assert yaml.safe_load(shipped.read_text()) == rules.render(rules.Thresholds())
    result = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "rules", str(shipped)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_window_that_is_not_a_duration_is_refused():
    with pytest.raises(ValueError, match="Prometheus duration"):
        rules.Thresholds(window="15 minutes")
