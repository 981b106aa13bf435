"""Review load benchmark: the task plan, and a small run (400 decisions, 4 processes) end to end."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.review_load import SEQUENCE, plan_tasks


@pytest.mark.parametrize(("n", "workers", "error"), [
    (0, 4, "n >= workers"),
    (3, 4, "n >= workers"),
    (10, 1, "workers >= 2"),
])
def test_plan_refuses_impossible_sizes(n, workers, error):
    with pytest.raises(ValueError, match=error):
        plan_tasks(n, workers)


@pytest.mark.parametrize(("n", "workers"), [(4, 4), (400, 4), (1001, 3)])
def test_plan_splits_every_decision_once(n, workers):
    tasks, n_samples, planted = plan_tasks(n, workers)
    assert sum(len(t) for t in tasks) == n
    contested = {s for t in tasks for s, _, c in t if c}
    owners = Counter()
    for t in tasks:
        owners.update({s for s, _, c in t if not c})
    assert all(count == 1 for count in owners.values())  # an owned sample has one writer
    assert not contested & set(owners)
    assert planted == len(contested) * (workers - 1)
    assert max(owners | Counter(contested)) < n_samples
    for t in tasks:  # an owned sample walks SEQUENCE in order
        steps: dict[int, list[int]] = {}
        for s, step, c in t:
            if not c:
                steps.setdefault(s, []).append(step)
        assert all(v == list(range(len(v))) and len(v) <= len(SEQUENCE) for v in steps.values())


def test_small_review_load_loses_and_duplicates_nothing(tmp_path):
    pytest.importorskip("fiftyone")
    from benchmarks.review_load import bench_review_load

    result = bench_review_load(400, 4, home=tmp_path)
    print(result.summary())
    assert result.n_decisions == 400 and result.workers == 4
    assert result.lost == 0 and result.duplicated == 0 and result.unexpected == 0
    assert result.errors == 0 and result.bad_revisions == 0 and result.replayed == 0
    assert result.conflicts_detected == result.conflicts_planted > 0
    assert result.applied + result.conflicts_detected == 400
    assert result.ok
