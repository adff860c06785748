"""Traffic for the monitoring demo and tests: reference-like (each model's held-out split, the rows its
reference profile was computed on) and shifted (the same rows moved the way real inputs drift:
digits inverted, a diabetes feature scaled, texts in another language)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable

import numpy as np
import requests

from models.registry import SPECS

# Held-out rows per request: one worker call stays within each model's budgets.
ROWS_PER_REQUEST = {"digits": 16, "diabetes": 16, "minilm": 8}
HEADERS_EVERY_S = 5
# Texts a monolingual English vocabulary was not made for: they split into many word pieces.
GERMAN = [
    "Der Hund schläft unter dem Küchentisch neben der warmen Heizung.",
    "Morgen früh fahren wir mit dem Zug nach München zu meiner Großmutter.",
    "Die Bibliothek bleibt wegen Renovierungsarbeiten bis Donnerstag geschlossen.",
    "Bitte vergiss nicht, die Blumen auf dem Balkon regelmäßig zu gießen.",
    "Unsere Nachbarn haben im Garten einen riesigen Kürbis geerntet.",
    "Die Versammlung der Stadtverordneten wurde auf nächste Woche verschoben.",
    "Ich habe gestern Abend einen spannenden Kriminalroman zu Ende gelesen.",
    "Der Schnee auf den Berggipfeln glitzerte in der Morgensonne.",
    "Die Straßenbahnhaltestelle befindet sich gegenüber dem Hauptbahnhof.",
    "Wir müssen die Steuererklärung spätestens bis Ende Juli einreichen.",
    "Kinder spielten fröhlich auf dem Spielplatz hinter der Grundschule.",
    "Die Wettervorhersage kündigt für das Wochenende heftige Gewitter an.",
    "Der Bäcker verkauft jeden Morgen frische Brötchen und Brezeln.",
    "Meine Schwester studiert Maschinenbau an der Technischen Universität.",
    "Das Konzert im Stadtpark musste wegen des Regens abgesagt werden.",
    "Vergiss deinen Regenschirm nicht, es soll den ganzen Tag regnen.",
]


def held_out(model: str) -> np.ndarray | list[str]:
    """The rows of the model's held-out split as a client sends them (texts for a text model)."""
    spec = SPECS[model]
    if spec.contract.kind == "text":
        triplets = json.loads((spec.data_files[1]).read_text())
        return [t[role] for t in triplets for role in ("anchor", "paraphrase", "unrelated")]
    x = spec.splits(spec.train.seed if spec.train else spec.seed).test.x.numpy()
    return x[:, 0] if spec.contract.kind == "image" and spec.contract.channels == 1 else x


def shifted(model: str) -> np.ndarray | list[str]:
    rows = held_out(model)
    if model == "digits":
        return 1.0 - rows  # light digits on dark, as a scanner with inverted polarity sends them
    if model == "diabetes":
        moved = rows.copy()
        moved[:, SPECS[model].contract.features.index("bmi")] *= 1.6  # a unit or scaling error
        return moved
    return GERMAN


def bodies(model: str, rows: np.ndarray | list[str]) -> list[bytes]:
    """JSON requests of ROWS_PER_REQUEST rows each: a text list, or a protocol tensor."""
    n = ROWS_PER_REQUEST[model]
    out = []
    for start in range(0, len(rows), n):
        chunk = rows[start : start + n]
        if isinstance(chunk, list):
            out.append(json.dumps({"texts": chunk}).encode())
        else:
            tensor = {"name": "x", "shape": list(chunk.shape), "datatype": "FP32", "data": chunk.ravel().tolist()}
            out.append(json.dumps({"inputs": [tensor]}).encode())
    return out


class Traffic:
    """Requests cycled through in a thread until `stop` (or `seconds`); counts the answers' statuses.
    `headers` may be a call, asked again every few seconds (keys that expire)."""

    def __init__(
        self,
        url: str,
        bodies_: list[bytes],
        headers: dict[str, str] | Callable[[], dict[str, str]],
        seconds: float = 300,
    ) -> None:
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        headers_of = headers if callable(headers) else lambda: headers

        def run() -> None:
            deadline = time.monotonic() + seconds
            sent, fresh = {}, 0.0
            for body in itertools.cycle(bodies_):
                now = time.monotonic()
                if self._stop.is_set() or now > deadline:
                    return
                if now - fresh > HEADERS_EVERY_S:
                    sent, fresh = {**headers_of(), "Content-Type": "application/json"}, now
                try:
                    code = requests.post(url, data=body, headers=sent, timeout=30).status_code
                except requests.RequestException:
                    code = 0
                self.statuses[code] = self.statuses.get(code, 0) + 1

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join()
        return self.statuses


def held_out_then_shifted(
    url_of: Callable[[str], str],
    headers: dict[str, str] | Callable[[], dict[str, str]],
    drift_firing: Callable[[], set[tuple[str, str]]],
    models: tuple[str, ...],
    settle_s: float,
    reference_s: float = 40,
    within_s: float = 90,
    at_calm: Callable[[], None] = lambda: None,
) -> float:
    """Held-out traffic for `reference_s` (longer than the rules' window), then `settle_s` for the
    last counts to reach the alerts: no drift alert may fire. Then shifted traffic until the
    input-drift alert fires for every model; returns how many seconds that took.
    `drift_firing` gives the (alert, model) pairs of firing drift alerts; `at_calm` checks more
    at the end of the held-out traffic."""
    traffic = [Traffic(url_of(m), bodies(m, held_out(m)), headers) for m in models]
    time.sleep(reference_s + settle_s)
    calm = drift_firing()
    at_calm()
    statuses = [t.stop() for t in traffic]
    assert all(s.get(200, 0) >= 0.98 * sum(s.values()) for s in statuses), statuses
    assert not calm, f"drift alerts fired on held-out traffic: {calm}"
    traffic = [Traffic(url_of(m), bodies(m, shifted(m)), headers) for m in models]
    started = time.monotonic()
    try:
        while {m for alert, m in drift_firing() if alert == "ModelInputDrift"} < set(models):
            assert time.monotonic() - started < within_s, f"no input drift alert within {within_s} s: {drift_firing()}"
            time.sleep(1)
        took = time.monotonic() - started
    finally:
        statuses = [t.stop() for t in traffic]
    assert all(s.get(200, 0) >= 0.98 * sum(s.values()) for s in statuses), statuses
    return took
