"""The speech model's figures for the README's Speech section (`<!-- bench:speech -->`): its
gates as the builds measured them, its points in process and served, and what the audio
worst cases cost a served worker. A full `make bench` takes them from its own points and
costs; `tsforge bench --speech` measures them alone (full-run settings)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import worst
from bench.points import Point
from models.registry import SPECS
from tsforge.packaging import build

MODEL = "silero_vad"
SERVED = tuple(name for name in build.SERVED if build.MODEL_OF[name] == MODEL)
STAGES = ("in-process", "shipped")


def gates(artifacts: Path) -> list[dict[str, Any]]:
    """Each runtime's parity and frame-F1 gates, from its build's gates.json."""
    spec, rows = SPECS[MODEL], []
    for runtime in spec.formats:
        folder = build.exported_file(spec, artifacts / MODEL, runtime).parent
        measured = {g["gate"]: g for g in json.loads((folder / "gates.json").read_text())}
        rows.append({"runtime": runtime, **{f"{k}_{f}": measured[k][f] for k in ("parity", "quality")
                                             for f in ("value", "threshold")}})  # fmt: skip
    return rows


def figures(points: list[Point], costs: list[worst.Cost], artifacts: Path) -> dict[str, Any]:
    """The section's figures from a run's points and worst-case costs."""
    return {
        "gates": gates(artifacts),
        "points": [asdict(p) for p in points if p.model in SERVED and p.stage in STAGES],
        "worst_cases": [asdict(c) for c in costs if c.model == MODEL],
    }


def table(figures: dict[str, Any] | None) -> list[str]:
    if not figures:
        return ["(the published run predates the speech model: `tsforge bench --speech` measures it)"]
    from models import silero_vad

    rows = [
        f"Gates (`gates.json` of each build): parity on the {silero_vad.VAL_CLIPS} validation clips against "
        f"the eager network; frame F1 on the {silero_vad.TEST_CLIPS} held-out clips.",
        "",
        "| runtime | parity max \\|diff\\| | frame F1 (gate) |",
        "|---|---:|---:|",
    ]
    for g in figures["gates"]:
        rows.append(f"| {g['runtime']} | {g['parity_value']:.2g} (≤ {g['parity_threshold']:g}) | "
                    f"**{g['quality_value']:.4f}** (≥ {g['quality_threshold']:g}) |")  # fmt: skip
    rows += ["", "| point | archive | setting | concurrency | recordings/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for p in figures["points"]:
        rows.append(f"| {p['stage']} | {p['model']} | {p['setting']} | {p['concurrency']} | {p['throughput']:.1f} | "
                    f"{p['p50_ms']:.0f} | {p['p99_ms']:.0f} | {p['errors']} |")  # fmt: skip
    return [*rows, "", *worst.table([worst.Cost(**c) for c in figures["worst_cases"]])]
