"""How a worker call spends its budget (handlers.scheduling): pure, no model, no server."""

import random

import pytest

from handlers.scheduling import LENGTH_SPREAD, Job, admit, pass_cost, plan_passes, run_isolated


def jobs(*shapes: tuple[int, int]) -> list[Job[str]]:
    return [Job(i, rows, length, f"r{i}") for i, (rows, length) in enumerate(shapes)]


def test_a_call_serves_the_cheapest_requests_first_and_defers_the_rest():
    batch = jobs((16, 256), (1, 12), (16, 256), (2, 20), (4, 256))
    served, deferred = admit(batch, max_call_cost=4096)
    assert [j.index for j in served] == [1, 3, 4]  # 12 + 40 + 1024; a 4096 would overflow
    assert [j.index for j in deferred] == [0, 2]
    assert sum(j.cost for j in served) <= 4096


def test_a_call_always_serves_one_request_even_over_budget():
    served, deferred = admit(jobs((16, 256), (16, 256)), max_call_cost=10)
    assert [j.index for j in served] == [0] and [j.index for j in deferred] == [1]


def test_short_requests_never_share_a_pass_with_long_ones():
    batch = jobs((1, 8), (16, 256), (1, 10), (2, 200), (1, 9))
    passes = plan_passes(batch, max_pass_cost=100_000)
    assert [[j.index for j in p] for p in passes] == [[0, 4, 2], [3, 1]]
    for p in passes:
        assert max(j.length for j in p) <= LENGTH_SPREAD * min(j.length for j in p)


def test_no_pass_exceeds_its_budget_and_every_request_is_planned_once():
    rng = random.Random(3)
    for _ in range(200):
        batch = jobs(*[(rng.randint(1, 16), rng.randint(1, 256)) for _ in range(rng.randint(1, 8))])
        budget = max(j.cost for j in batch) + rng.randint(0, 4096)
        passes = plan_passes(batch, budget)
        assert sorted(j.index for p in passes for j in p) == list(range(len(batch)))
        assert all(pass_cost(p) <= budget for p in passes)


def test_a_failing_request_is_isolated_and_the_others_are_answered():
    batch = jobs(*[(1, 4)] * 7)
    calls = []

    def forward(group):
        calls.append([j.index for j in group])
        if any(j.index == 5 for j in group):
            raise RuntimeError("boom")
        return [f"out{j.index}" for j in group]

    results = {job.index: (out, err) for job, out, err in run_isolated(batch, forward)}
    assert set(results) == set(range(7))
    assert isinstance(results[5][1], RuntimeError) and results[5][0] is None
    assert all(results[i] == (f"out{i}", None) for i in range(7) if i != 5)
    assert max(len(c) for c in calls[1:]) < 7 and [5] in calls  # split down to the culprit alone


def test_a_pass_that_answers_the_wrong_count_is_a_failure_not_a_misassignment():
    results = list(run_isolated(jobs((1, 4), (1, 4)), lambda group: ["x"] * (len(group) + 1)))
    assert all(err is not None for _, _, err in results)


@pytest.mark.parametrize("bad", [{0, 3}, set(range(8))])
def test_several_failing_requests_each_fail_alone(bad):
    batch = jobs(*[(1, 4)] * 8)

    def forward(group):
        if {j.index for j in group} & bad:
            raise ValueError("x")
        return [j.index for j in group]

    failed = {job.index for job, _, err in run_isolated(batch, forward) if err is not None}
    assert failed == bad
