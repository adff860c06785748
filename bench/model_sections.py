"""The figures of the README's per-model sections (`<!-- bench:speech -->`, `<!-- bench:recommendation -->`):
a model's gates as its builds measured them (and its held-out metrics where the gate is a
comparison), its points in process and served, and what its kind's worst cases cost a served
worker. A full `make bench` takes them from its own points and costs; `tsforge bench --speech`
or `--recommendation` measures one alone (full-run settings)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import worst
from bench.points import Point
from models.registry import SPECS
from tsforge.packaging import build

STAGES = ("in-process", "shipped")


@dataclass(frozen=True)
class Section:
    model: str
    unit: str  # what the points count per second
    gates_caption: str  # how the model's gates are measured, one sentence
    quality_name: str  # the quality gate's column
    metrics: tuple[tuple[str, str], ...] = ()  # held-out metrics.json keys shown, with their names

    @property
    def served(self) -> tuple[str, ...]:
        return tuple(name for name in build.SERVED if build.MODEL_OF[name] == self.model)


SECTIONS = {
    "speech": Section(
        "silero_vad", "recordings/s",
        "Gates (`gates.json` of each build): parity on the {val_clips} validation clips against the eager network; "
        "frame F1 on the {test_clips} held-out clips.",
        "frame F1 (gate)",
    ),
    "recommendation": Section(
        "movielens", "asks/s",
        "Gates (`gates.json` of each build): top-k parity on the 943 validation histories against the eager "
        "network (scores, and ids but where two scores tie); the quality gate is the lower of HR@10 and NDCG@10 "
        "over popularity's, on the 943 held-out test targets (`metrics.json`).",
        "lift over popularity (gate)",
        (("hr_at_10", "HR@10"), ("popularity_hr_at_10", "popularity HR@10"), ("ndcg_at_10", "NDCG@10"),
         ("popularity_ndcg_at_10", "popularity NDCG@10")),
    ),
}  # fmt: skip


def gates(section: Section, artifacts: Path) -> list[dict[str, Any]]:
    """Each runtime's parity and quality gates, from its build's gates.json."""
    spec, rows = SPECS[section.model], []
    for runtime in spec.formats:
        folder = build.exported_file(spec, artifacts / section.model, runtime).parent
        measured = {g["gate"]: g for g in json.loads((folder / "gates.json").read_text())}
        rows.append({"runtime": runtime, **{f"{k}_{f}": measured[k][f] for k in ("parity", "quality")
                                             for f in ("value", "threshold")}})  # fmt: skip
    return rows


def figures(name: str, points: list[Point], costs: list[worst.Cost], artifacts: Path) -> dict[str, Any]:
    """The section's figures from a run's points and worst-case costs."""
    section = SECTIONS[name]
    made = {
        "gates": gates(section, artifacts),
        "points": [asdict(p) for p in points if p.model in section.served and p.stage in STAGES],
        "worst_cases": [asdict(c) for c in costs if c.model == section.model],
    }
    if section.metrics:
        held_out = json.loads((artifacts / section.model / "metrics.json").read_text())["test"]
        made["metrics"] = {key: held_out[key] for key, _ in section.metrics}
    return made


def table(name: str, figures: dict[str, Any] | None) -> list[str]:
    section = SECTIONS[name]
    if not figures:
        return [f"(the published run predates the {section.model} model: `tsforge bench --{name}` measures it)"]
    caption = section.gates_caption
    if name == "speech":
        from models import silero_vad

        caption = caption.format(val_clips=silero_vad.VAL_CLIPS, test_clips=silero_vad.TEST_CLIPS)
    rows = [caption, "", f"| runtime | parity max \\|diff\\| | {section.quality_name} |", "|---|---:|---:|"]
    for g in figures["gates"]:
        rows.append(f"| {g['runtime']} | {g['parity_value']:.2g} (≤ {g['parity_threshold']:g}) | "
                    f"**{g['quality_value']:.4f}** (≥ {g['quality_threshold']:g}) |")  # fmt: skip
    if section.metrics:
        names = dict(section.metrics)
        rows += ["", "| " + " | ".join(names.values()) + " |", "|" + "---:|" * len(names),
                 "| " + " | ".join(f"{figures['metrics'][k]:.4f}" for k in names) + " |"]  # fmt: skip
    rows += ["", f"| point | archive | setting | concurrency | {section.unit} | p50 ms | p99 ms | errors |",
             "|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for p in figures["points"]:
        rows.append(f"| {p['stage']} | {p['model']} | {p['setting']} | {p['concurrency']} | {p['throughput']:.1f} | "
                    f"{p['p50_ms']:.0f} | {p['p99_ms']:.0f} | {p['errors']} |")  # fmt: skip
    return [*rows, "", *worst.table([worst.Cost(**c) for c in figures["worst_cases"]])]
