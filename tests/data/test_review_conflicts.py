"""Two reviewers at once: concurrent ``record_decision`` calls on one dataset.

Two spawned processes write at the same moment (a barrier lines them up), each based on the
revision it saw before the other wrote. Decisions on different boxes of a sample both land (the
later one is rebased); decisions on the same box from a stale revision raise ``ReviewConflict``
and never overwrite what the other reviewer saved. The single-process table below pins down
which stale decisions are rebased and which conflict.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fiftyone")

N_SAMPLES = 8  # samples both reviewers work through
LABELS = ("crate", "book")  # the class each reviewer gives (classes of build_review_dataset)
TIMEOUT_S = 600  # a worker's report arrives within this (spawn + FiftyOne import on a busy box)


def _worker(w: int, name: str, home: str, tasks: list[dict], barrier: Any, queue: Any) -> None:
    """Reviewer ``w``: record ``tasks`` in order, report each outcome."""
    report: list[tuple] = []
    try:
        from audit.data import review_store, store
        from audit.reviews import Decision

        ds = store.load_dataset(name)
        barrier.wait(timeout=TIMEOUT_S)
        for task in tasks:
            decision = Decision(dataset=name, **task)
            try:
                outcome = review_store.record_decision(ds, decision, home=home)
                report.append(("applied", decision.decision_id, outcome.decision.base_revision))
            except review_store.ReviewConflict as exc:
                report.append(("conflict", decision.decision_id,
                               [o.decision_id for o in exc.others]))
    except Exception as exc:  # reported, so the test shows it instead of hanging
        report.append(("error", repr(exc), None))
    queue.put((w, report))


def _run_two(name: str, home: Path, tasks: tuple[list[dict], list[dict]]) -> list[list[tuple]]:
    """Run two reviewer processes (spawn) on ``tasks`` at once; their reports, by reviewer."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(w, name, str(home), t, barrier, queue))
             for w, t in enumerate(tasks)]
    for p in procs:
        p.start()
    try:
        reports = [r for _, r in sorted(queue.get(timeout=TIMEOUT_S) for _ in procs)]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [r for rep in reports for r in rep if r[0] == "error"]
    assert not errors, errors
    return reports


@pytest.fixture
def review_ds():
    """A fresh 3-box-per-sample dataset in the auditor's schema (review fields declared)."""
    from audit.data.review_store import ensure_review_fields
    from benchmarks.review_load import build_review_dataset

    ds = build_review_dataset(f"conflicts-{uuid.uuid4().hex[:8]}", N_SAMPLES)
    ensure_review_fields(ds)
    yield ds
    ds.delete()


def _boxes(ds) -> list[tuple[str, list[str]]]:
    """``(sample_id, [gt box ids])`` per sample."""
    return list(zip(ds.values("id"), ds.values("ground_truth.detections.id"), strict=True))


def test_different_boxes_of_the_same_samples_both_land(review_ds, tmp_path):
    from audit.data.review_log import list_decisions
    from audit.data.review_store import REVIEWED_FIELD
    from audit.reviews import read_records

    samples = _boxes(review_ds)
    tasks = tuple([{"sample_id": sid, "box_id": boxes[w], "action": "fix_class",
                    "new_label": LABELS[w], "reviewer": f"r{w}", "base_revision": 0}
                   for sid, boxes in samples] for w in (0, 1))
    reports = _run_two(review_ds.name, tmp_path, tasks)

    assert [[r[0] for r in rep] for rep in reports] == [["applied"] * N_SAMPLES] * 2
    review_ds.reload()
    assert review_ds.values("review_revision") == [2] * N_SAMPLES
    for (sid, boxes), ids in zip(samples, review_ds.values("review_decision_ids"), strict=True):
        labels = {d.id: d.label for d in review_ds[sid][REVIEWED_FIELD].detections}
        assert labels[boxes[0]] == LABELS[0] and labels[boxes[1]] == LABELS[1]
        assert len(ids) == 2
    records = read_records(review_ds.name, home=tmp_path)
    assert len(records) == 2 * N_SAMPLES
    rebased = [r for r in records if "rebased_from" in r.after]
    assert len(rebased) == N_SAMPLES  # on each sample the later one was rebased onto revision 1
    assert all(r.decision.base_revision == 1 and r.after["rebased_from"] == 0 for r in rebased)
    assert set(list_decisions(review_ds, home=tmp_path)["state"]) == {"applied"}


def test_same_box_from_a_stale_revision_conflicts(review_ds, tmp_path):
    from audit.data.review_log import list_decisions
    from audit.data.review_store import REVIEWED_FIELD

    samples = _boxes(review_ds)
    tasks = tuple([{"sample_id": sid, "box_id": boxes[0], "action": "fix_class",
                    "new_label": LABELS[w], "reviewer": f"r{w}", "base_revision": 0}
                   for sid, boxes in samples] for w in (0, 1))
    reports = _run_two(review_ds.name, tmp_path, tasks)

    review_ds.reload()
    winners = {}
    for i, (sid, boxes) in enumerate(samples):
        outcomes = sorted((reports[w][i][0], w) for w in (0, 1))
        assert [o for o, _ in outcomes] == ["applied", "conflict"], (sid, outcomes)
        (_, winner), (_, loser) = outcomes
        winners[sid] = reports[winner][i][1]
        assert reports[loser][i][2] == [winners[sid]]  # the conflict names the winning decision
        label = next(d.label for d in review_ds[sid][REVIEWED_FIELD].detections
                     if d.id == boxes[0])
        assert label == LABELS[winner]  # the loser did not overwrite it
    assert review_ds.values("review_revision") == [1] * N_SAMPLES
    assert [ids for ids in review_ds.values("review_decision_ids")] == \
        [[winners[sid]] for sid, _ in samples]
    decisions = list_decisions(review_ds, home=tmp_path)
    assert Counter(decisions["state"]) == {"applied": N_SAMPLES}  # losers never reached the log


# --- which stale decisions move (single process) -------------------------------------------------

FIRST = {  # the decision another reviewer saved first (base 0); box index or None = image-level
    "fix box 0": ("fix_class", 0, "crate"),
    "relabel image": ("relabel", None, None),
    "accept pred 0": ("accept_prediction", "pred0", None),
}
STALE_CASES = [  # (first, then: action, box, new label), expected
    ("fix box 0", ("fix_class", 0, "ball"), "conflict"),
    ("fix box 0", ("delete", 0, None), "conflict"),
    ("fix box 0", ("confirm", 1, None), "applied"),
    ("fix box 0", ("relabel", None, None), "applied"),
    ("fix box 0", ("undo", None, None), "conflict"),
    ("relabel image", ("relabel", None, None), "conflict"),
    ("relabel image", ("fix_class", 2, "book"), "applied"),
    ("accept pred 0", ("accept_prediction", "pred0", None), "conflict"),
    ("accept pred 0", ("delete", 1, None), "applied"),
]


def _box(sample, ref):
    """A box id from a table entry: gt index, ``predK``, or None."""
    if ref is None:
        return None
    if isinstance(ref, str):
        return sample.predictions.detections[int(ref.removeprefix("pred"))].id
    return sample.ground_truth.detections[ref].id


@pytest.mark.parametrize(("first", "then", "expected"), STALE_CASES,
                         ids=[f"{f} / {t[0]} {t[1]}" for f, t, _ in STALE_CASES])
def test_stale_decision_rebased_or_refused(review_ds, tmp_path, first, then, expected):
    from audit.data.review_store import ReviewConflict, record_decision
    from audit.reviews import Decision

    sample = review_ds.first()
    action, ref, label = FIRST[first]
    record_decision(review_ds, Decision(dataset=review_ds.name, sample_id=sample.id,
                                        action=action, box_id=_box(sample, ref), new_label=label,
                                        reviewer="ana", base_revision=0), home=tmp_path)
    action, ref, label = then
    stale = Decision(dataset=review_ds.name, sample_id=sample.id, action=action,
                     box_id=_box(sample, ref), new_label=label, reviewer="bob", base_revision=0)
    if expected == "conflict":
        with pytest.raises(ReviewConflict, match="ana") as info:
            record_decision(review_ds, stale, home=tmp_path)
        assert info.value.current_revision == 1 and len(info.value.others) == 1
    else:
        outcome = record_decision(review_ds, stale, home=tmp_path)
        assert outcome.revision == 2 and outcome.decision.base_revision == 1
    review_ds.reload()
    n_gt = len(review_ds.first()["ground_truth_reviewed"].detections)
    assert n_gt == {"accept pred 0": 4}.get(first, 3) - (then[0] == "delete" and
                                                          expected == "applied")
