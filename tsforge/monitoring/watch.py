"""`tsforge monitor`: each served model's drift, confidence, errors and traffic, read from Prometheus.

Everything comes from the recording rules (tsforge.monitoring.rules) through Prometheus's HTTP
API, so what this prints is what the alerts see: summed over every worker and replica, over
the rules' window. `plot` draws each signal's reference shares against the live ones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"


class MonitorError(RuntimeError):
    pass


@dataclass
class Signal:
    side: str
    name: str
    psi: float
    js: float
    rows: float


@dataclass
class ModelStatus:
    model: str
    version: str
    signals: list[Signal] = field(default_factory=list)
    confidence: float | None = None
    reference_confidence: float | None = None
    error_rate: float | None = None
    requests: float = 0.0
    alerts: list[str] = field(default_factory=list)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's series: [{"metric": {...}, "value": [time, "text"]}]."""
    url = f"{prometheus.rstrip('/')}/api/v1/query"
    try:
        r = requests.get(url, params={"query": expr}, timeout=10)
    except requests.RequestException as e:
        raise MonitorError(
            f"Prometheus does not answer at {prometheus} ({type(e).__name__}); start the deployment "
            "(docker-compose -f docker/docker-compose.yml up -d) or pass --prometheus URL"
        ) from e
    if r.status_code != 200:
        raise MonitorError(f"Prometheus refused {expr!r}: HTTP {r.status_code} {r.text[:200]}")
    return r.json()["data"]["result"]


def _value(series: dict[str, Any]) -> float:
    return float(series["value"][1])


def _key(series: dict[str, Any]) -> tuple[str, str]:
    return series["metric"].get("ModelName", "?"), series["metric"].get("Version", "?")


def statuses(prometheus: str) -> list[ModelStatus]:
    """Every model the rules know of (one reference profile each), with its latest figures."""
    models: dict[tuple[str, str], ModelStatus] = {}

    def status(series: dict[str, Any]) -> ModelStatus:
        key = _key(series)
        return models.setdefault(key, ModelStatus(*key))

    for s in query(prometheus, "sum by (ModelName, Version) (tsforge:requests)"):
        status(s).requests = _value(s)
    window = query(prometheus, "tsforge:window_seconds")
    seconds = _value(window[0]) if window else 0.0
    js = {(*_key(s), s["metric"]["Side"], s["metric"]["Signal"]): _value(s) for s in query(prometheus, "tsforge:js")}
    rows = {
        (*_key(s), s["metric"]["Side"], s["metric"]["Signal"]): _value(s)
        for s in query(prometheus, "tsforge:signal_rows")
    }
    for s in query(prometheus, "tsforge:psi"):
        key = (*_key(s), s["metric"]["Side"], s["metric"]["Signal"])
        status(s).signals.append(Signal(key[2], key[3], _value(s), js.get(key, float("nan")), rows.get(key, 0.0)))
    for s in query(prometheus, "tsforge:confidence"):
        status(s).confidence = _value(s)
    for s in query(prometheus, "tsforge:reference_confidence"):
        status(s).reference_confidence = _value(s)
    for s in query(prometheus, "tsforge:error_rate"):
        status(s).error_rate = _value(s)
    for s in query(prometheus, 'ALERTS{alertstate="firing"}'):
        if "ModelName" in s["metric"]:
            name = s["metric"]["alertname"]
            signal = s["metric"].get("Signal")
            status(s).alerts.append(f"{name} ({signal})" if signal else name)
    for m in models.values():
        m.signals.sort(key=lambda x: (x.side != "input", x.name))
        m.requests = m.requests / seconds if seconds else 0.0
    return sorted(models.values(), key=lambda m: (m.model, m.version))


def _figure(value: float | None, form: str) -> str:
    return "-" if value is None or value != value else format(value, form)


def report(models: list[ModelStatus]) -> str:
    """A block per model: traffic, errors, confidence, alerts, then one line per signal."""
    if not models:
        return "No model reports to Prometheus yet (no worker has started, or the rules are not loaded)."
    lines = []
    for m in models:
        confidence = (
            f"confidence {_figure(m.confidence, '.3f')} (reference {_figure(m.reference_confidence, '.3f')})"
            if m.reference_confidence is not None
            else "confidence n/a"
        )
        lines.append(
            f"{m.model} {m.version}: {m.requests:.2f} req/s, errors {_figure(m.error_rate, '.1%')}, {confidence}"
        )
        lines.append(f"  alerts firing: {', '.join(sorted(m.alerts)) or 'none'}")
        lines.append(f"  {'side':<7}{'signal':<28}{'PSI':>9}{'JS':>8}{'rows':>9}")
        for s in m.signals:
            lines.append(
                f"  {s.side:<7}{s.name[:27]:<28}{_figure(s.psi, '.3f'):>9}{_figure(s.js, '.3f'):>8}{s.rows:>9.0f}"
            )
    return "\n".join(lines)


def plot(prometheus: str, path: Path, model: str | None = None) -> Path:
    """Reference against live shares per bucket, one panel per signal of each model (or `model`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares: dict[tuple[str, str, str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for name, expr in (("reference", "tsforge:reference_share"), ("live", "tsforge:live_share")):
        for s in query(prometheus, expr):
            labels = s["metric"]
            key = (labels["ModelName"], labels["Version"], labels["Side"], labels["Signal"])
            if model is None or labels["ModelName"] == model:
                shares[key][name][int(labels["Bucket"])] = _value(s)
    if not shares:
        raise MonitorError(f"no reference profile in Prometheus{f' for {model}' if model else ''}: nothing to plot")
    keys = sorted(shares)
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        buckets = sorted(shares[key]["reference"])
        x = range(len(buckets))
        ax.bar([i - 0.2 for i in x], [shares[key]["reference"][b] for b in buckets], 0.4, label="reference")
        ax.bar([i + 0.2 for i in x], [shares[key]["live"].get(b, 0.0) for b in buckets], 0.4, label="live")
        ax.set_title(f"{key[0]} {key[2]} {key[3]}", fontsize=9)
        ax.set_xlabel("bucket", fontsize=8)
        ax.set_ylabel("share", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
