"""Prometheus recording and alert rules for drift, confidence, errors and traffic, rendered from one place.

The workers export bucket counts (`MonitorRows`) and their archive's reference shares
(`MonitorReferenceShare`), both labelled ModelName, Version, Side, Signal, Bucket
(handlers.monitoring). Here they become, over a window that `Thresholds.window` sets and
summed over every worker and replica:
- `tsforge:live_share` and `tsforge:reference_share` per bucket, live shares smoothed like the
  reference's (training.profile.SMOOTHING), so no share is zero;
- `tsforge:psi` (population stability index, sum of (live - ref) ln(live / ref)) and
  `tsforge:js` (Jensen-Shannon divergence in bits, 0..1) per signal;
- `tsforge:confidence` (mean top-1 probability) against `tsforge:reference_confidence`,
  `tsforge:error_rate` (rejected and failed over all requests) and `tsforge:requests`;
and five alerts: ModelInputDrift, ModelOutputDrift, ModelConfidenceDrop, ModelErrorRate,
ModelNoTraffic. The compose and Swarm Prometheus load the rendered file
(docker/prometheus/rules.yml, `tsforge monitor rules` writes another window's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from handlers.monitoring import SMOOTHING
from training.files import write_text

BUCKET = "ModelName, Version, Side, Signal, Bucket"
SIGNAL = "ModelName, Version, Side, Signal"
MODEL = "ModelName, Version"
LN2 = 0.6931471805599453
DRIFT_ALERTS = ("ModelInputDrift", "ModelOutputDrift", "ModelConfidenceDrop")
ALERTS = (*DRIFT_ALERTS, "ModelErrorRate", "ModelNoTraffic")


@dataclass(frozen=True)
class Thresholds:
    """What the rules compare against; every field is a `tsforge monitor rules` option."""

    window: str = "15m"  # the span each drift score and rate covers
    hold: str = "5m"  # how long a condition must last before its alert fires
    # PSI over 0.25 is the usual "significant shift" (Siddiqi's scorecard practice); 0.1-0.25 "some".
    psi: float = 0.25
    # Rows in the window before a drift score counts: with B buckets, reference-like traffic
    # of n rows scores PSI about (B - 1) / n, 0.09 for 10 buckets at 100 rows.
    min_rows: int = 100
    confidence_drop: float = 0.1  # mean top-1 probability this far under the reference's
    error_rate: float = 0.05  # rejected and failed over all requests
    min_requests: int = 20

    def __post_init__(self) -> None:
        for name in ("window", "hold"):
            if not re.fullmatch(r"(\d+[smhd])+", getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)!r} is not a Prometheus duration such as 30s, 15m or 1h")

    @property
    def window_seconds(self) -> int:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", self.window))


def recording_rules(t: Thresholds) -> list[dict[str, str]]:
    w = t.window
    live, ref = "tsforge:live_share", "tsforge:reference_share"
    rules = {
        "tsforge:window_seconds": f"vector({t.window_seconds})",
        "tsforge:rows": f"sum by ({BUCKET}) (increase(MonitorRows[{w}]))",
        ref: f"max by ({BUCKET}) (MonitorReferenceShare)",
        "tsforge:signal_rows": f"sum by ({SIGNAL}) (tsforge:rows)",
        live: (
            f"(tsforge:rows + {SMOOTHING}) / on({SIGNAL}) group_left() "
            f"(tsforge:signal_rows + {SMOOTHING} * count by ({SIGNAL}) ({ref}))"
        ),
        "tsforge:psi": f"sum by ({SIGNAL}) (({live} - {ref}) * ln({live} / {ref}))",
        "tsforge:js": (
            f"sum by ({SIGNAL}) (0.5 * {live} * ln(2 * {live} / ({live} + {ref}))"
            f" + 0.5 * {ref} * ln(2 * {ref} / ({live} + {ref}))) / {LN2}"
        ),
        "tsforge:requests": f"sum by ({MODEL}, Outcome) (increase(MonitorRequests[{w}]))",
        "tsforge:error_rate": (
            f'sum by ({MODEL}) (tsforge:requests{{Outcome!="answered"}}) / on({MODEL}) sum by ({MODEL}) (tsforge:requests)'
        ),
        "tsforge:confidence": (
            f"sum by ({MODEL}) (increase(MonitorConfidenceSum[{w}])) / on({MODEL}) "
            f'sum by ({MODEL}) (tsforge:signal_rows{{Signal="confidence"}})'
        ),
        "tsforge:reference_confidence": f'max by ({MODEL}) (MonitorReference{{Stat="mean_confidence"}})',
    }
    return [{"record": name, "expr": expr} for name, expr in rules.items()]


def alert_rules(t: Thresholds) -> list[dict[str, Any]]:
    enough_rows = f"and on({SIGNAL}) tsforge:signal_rows >= {t.min_rows}"
    requests = f"sum by ({MODEL}) (tsforge:requests)"

    def alert(name: str, expr: str, summary: str, hold: str = t.hold) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": hold,
            "labels": {"severity": "warning"},
            "annotations": {"summary": summary},
        }

    drift = '{{ $labels.ModelName }} {{ $labels.Version }}: {{ $labels.Side }} {{ $labels.Signal }} drifted from its reference, PSI {{ $value | printf "%.2f" }}'
    return [
        alert("ModelInputDrift", f'tsforge:psi{{Side="input"}} > {t.psi} {enough_rows}', drift),
        alert("ModelOutputDrift", f'tsforge:psi{{Side="output"}} > {t.psi} {enough_rows}', drift),
        alert(
            "ModelConfidenceDrop",
            f"tsforge:confidence < on({MODEL}) (tsforge:reference_confidence - {t.confidence_drop}) "
            f'and on({MODEL}) tsforge:signal_rows{{Signal="confidence"}} >= {t.min_rows}',
            '{{ $labels.ModelName }} {{ $labels.Version }}: mean confidence {{ $value | printf "%.2f" }}, '
            f"more than {t.confidence_drop} under its reference",
        ),
        alert(
            "ModelErrorRate",
            f"tsforge:error_rate > {t.error_rate} and on({MODEL}) {requests} >= {t.min_requests}",
            "{{ $labels.ModelName }} {{ $labels.Version }}: {{ $value | humanizePercentage }} of requests refused or failed",
        ),
        alert(
            "ModelNoTraffic",
            f"{requests} == 0",
            f"{{{{ $labels.ModelName }}}} {{{{ $labels.Version }}}}: no request in {t.window}",
        ),
    ]


def render(t: Thresholds = Thresholds()) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "tsforge-monitoring", "rules": recording_rules(t)},
            {"name": "tsforge-alerts", "rules": alert_rules(t)},
        ]
    }


def write(path: Path, t: Thresholds = Thresholds()) -> Path:
    header = (
        "# Rendered by `tsforge monitor rules` (tsforge/monitoring/rules.py): edit the code or its options, "
        f"not this file.\n# window {t.window}, hold {t.hold}\n"
    )
    write_text(path, header + yaml.safe_dump(render(t), sort_keys=False, width=200))
    return path
