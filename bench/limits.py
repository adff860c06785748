"""The limits' figures: what each served archive's worst forward pass costs within its budget
(bench/budgets.py), and, per input kind, a small request's latency while the largest accepted
requests run beside it (bench/fairness.py). `make bench` measures both; `tsforge bench
--limits` measures them alone, and `--publish` puts them in the README's limits section.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench import budgets, fairness, report, worst_audio, worst_recommendation
from bench import worst_cases as w
from bench.inprocess import BODIES
from tsforge.paths import ARTIFACTS, MODEL_STORE
from tsforge.server import torchserve

# Each phase of a heavy-beside-light point (alone, then beside) when measured alone: the light
# client sends one request at a time, 0.2 s apart, so a phase yields a few dozen latencies.
SECONDS = 20.0


def heavy_requests() -> dict[str, tuple[bytes, str, str]]:
    """Per input kind (images twice: digit sketches and photos decode differently), a model and
    the accepted request that costs its worker the most (the worst-case tables' dearest 200 of
    that kind): (body, Content-Type, what it is)."""
    text_rows = w.text_rows_at_budget()
    ogg = worst_audio.encoded(worst_audio.speechlike(60.0), "OGG", "VORBIS")
    return {
        "digits": (w.json_v2_at_limit(), "application/json", "v2 [64, 28, 28]: max_rows images"),
        "efficientnet_lite0": (w.png_at_decode_limit(1448, "RGBA"), "image/png", "1448x1448 RGBA PNG: decode limit"),
        "diabetes": (w.json_rows_at_limit(), "application/json", "64 named rows: max_rows"),
        "minilm": (w.text_request(text_rows), "application/json",
                   f"{text_rows} texts of ~16 KB, cut to 256 tokens: max_pass_cost"),
        "silero_vad": (ogg, "audio/ogg", "60 s, 44.1 kHz stereo OGG: max_audio_seconds"),
        "movielens": (worst_recommendation.asks_at_limit(), "application/json",
                      "asks of 2048 ids up to max_json_values"),
    }  # fmt: skip


def heavy_beside_light(seconds: float, log, store: Path = MODEL_STORE) -> list[fairness.HeavyBesideLight]:  # noqa: ANN001
    """Per kind, `store`'s archive under the model's plain name: its heavy request from eight
    clients without pause beside its example request every 0.2 s."""
    heavy = heavy_requests()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        ports = {k: torchserve.free_port() for k in torchserve.PORT_KEYS}
        server = torchserve.start(
            [f"{m}.mar" for m in heavy], run_dir=Path(tmp) / "run", model_store=store, ports=ports
        )
        try:
            for model, (data, content_type, what) in heavy.items():
                log(f"heavy beside light: {model}")
                light = fairness.Body(BODIES[model][0].read_bytes(), BODIES[model][1])
                results.append(fairness.measure(server, model, fairness.Body(data, content_type), light, what, seconds))
        finally:
            torchserve.stop(Path(tmp) / "run")
    return results


def measure(log) -> dict:  # noqa: ANN001
    """`tsforge bench --limits`: both figures, with their own date and machine."""
    heavy_light = heavy_beside_light(SECONDS, log)
    log("each model's worst forward pass within its budget, in process")
    costs = budgets.measure(ARTIFACTS)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": report.machine(),
        "heavy_beside_light": [asdict(r) for r in heavy_light],
        "budgets": [asdict(c) for c in costs],
    }


def fail_if_unfair(heavy_light: list[fairness.HeavyBesideLight]) -> None:
    """A transport error or a 5xx beside the heavy requests, light or heavy, fails the run, and
    so does a light request not answered 200 (the cheapest request of a call is always served)."""
    unfair = [
        r.model
        for r in heavy_light
        if r.errors or any(int(s) >= 500 for s in r.heavy_statuses) or any(int(s) != 200 for s in r.light_statuses)
    ]
    if unfair:
        raise SystemExit(f"heavy beside light failed requests for {', '.join(unfair)}: the run fails")


def figures(results: dict) -> tuple[str, list[fairness.HeavyBesideLight], list[budgets.BudgetCost]]:
    """(the run they come from, heavy beside light, budgets) of a results.json: a `--limits`
    run's own when one was published, else the full run's."""
    part = results.get("limits")
    if part:
        run = f"Run of {part['date']} (`tsforge bench --limits`), on {part['machine']}."
    else:
        part, run = results, f"Run of {results['date']} (`make bench`)."
    heavy_light = [fairness.HeavyBesideLight(**r) for r in part["heavy_beside_light"]]
    return run, heavy_light, [budgets.BudgetCost(**b) for b in part["budgets"]]


def table(figures_: dict) -> list[str]:
    """What `tsforge bench --limits` prints."""
    run, heavy_light, costs = figures({"limits": figures_})
    return [run, "", *fairness.table(heavy_light), "", *budgets.table(costs)]
