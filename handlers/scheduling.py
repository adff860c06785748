"""How one worker call spends its budget: which requests it serves, in which forward passes.

TorchServe hands a worker up to `batchSize` requests at once and waits for every answer, so
the slowest pass of a call delays every request in it. Three rules keep a call bounded and
fair, in the cost unit the model's work grows with (text: padded tokens; images: pixels;
rows: rows), whatever the bytes of the requests:

- a request costing more than one forward pass may (`max_pass_cost`) is refused up front
  (413, by the codec's limits) and never reaches this module;
- a call serves the cheapest requests first, up to `max_call_cost`; the others are answered
  429 at once and retried by their clients, instead of waiting behind the expensive ones;
- requests of similar length share a pass (a short text is never padded to a long one), and
  no pass costs more than `max_pass_cost`.

A pass that raises is split in halves down to single requests (`run_isolated`), so only a
request that fails on its own is answered 500. Plain Python: no torch, no TorchServe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
# Requests share a pass only while the longest is at most this many times the shortest: the
# padding a short request carries in a pass stays under half of the pass's work.
LENGTH_SPREAD = 2


@dataclass(frozen=True)
class Job(Generic[T]):
    """One accepted request: `rows` inputs, each `length` cost units long once padded."""

    index: int  # its position in TorchServe's batch
    rows: int
    length: int
    item: T

    @property
    def cost(self) -> int:
        return self.rows * self.length


def pass_cost(jobs: list[Job]) -> int:
    """What a forward pass over `jobs` costs: every row padded to the longest."""
    return sum(j.rows for j in jobs) * max(j.length for j in jobs)


def admit(jobs: list[Job[T]], max_call_cost: int) -> tuple[list[Job[T]], list[Job[T]]]:
    """(served, deferred): the cheapest requests first while the call's budget lasts.

    The cheapest one is always served, so a call never serves nothing; ties keep arrival order.
    """
    served: list[Job[T]] = []
    spent = 0
    deferred: list[Job[T]] = []
    for job in sorted(jobs, key=lambda j: (j.cost, j.index)):
        if not served or spent + job.cost <= max_call_cost:
            served.append(job)
            spent += job.cost
        else:
            deferred.append(job)
    return served, deferred


def plan_passes(jobs: list[Job[T]], max_pass_cost: int) -> list[list[Job[T]]]:
    """The forward passes for `jobs`: by length, neighbours grouped under the pass budget."""
    ordered = sorted(jobs, key=lambda j: (j.length, j.index))
    passes: list[list[Job[T]]] = []
    for job in ordered:
        current = passes[-1] if passes else None
        if (
            current is not None
            and job.length <= LENGTH_SPREAD * current[0].length
            and pass_cost([*current, job]) <= max_pass_cost
        ):
            current.append(job)
        else:
            passes.append([job])
    return passes


def run_isolated(
    jobs: list[Job[T]], forward: Callable[[list[Job[T]]], list[object]]
) -> Iterator[tuple[Job[T], object | None, Exception | None]]:
    """(job, output, None) per job, or (job, None, error) for a request that fails on its own.

    `forward` runs one pass and returns one output per job. When it raises for several jobs,
    each half is run again: a request's failure is then its own, never its batchmates'.
    """
    try:
        outputs = forward(jobs)
        if len(outputs) != len(jobs):
            raise RuntimeError(f"the pass answered {len(outputs)} outputs for {len(jobs)} requests")
    except Exception as error:  # whatever the model raises, the worker and the others go on
        if len(jobs) == 1:
            yield jobs[0], None, error
            return
        middle = len(jobs) // 2
        yield from run_isolated(jobs[:middle], forward)
        yield from run_isolated(jobs[middle:], forward)
        return
    yield from ((job, out, None) for job, out in zip(jobs, outputs, strict=True))
