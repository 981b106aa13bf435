"""Evaluation drill-down (audit.evaluation): outcomes per box, confusion matrix, PR curves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.evaluation import BACKGROUND, evaluate_boxes, pr_curves
from tests.builders import boxes_frame, empty_boxes, gt, pred, random_scene

A, B_ = (0, 0, 100, 100), (200, 200, 300, 300)
NEAR_A = (0, 0, 100, 90)  # IoU 0.9 with A
HALF_A = (0, 0, 100, 60)  # IoU 0.6 with A


def _cells(rows, **kw) -> dict[tuple[str, str], int]:
    """Non-zero matrix cells."""
    m = evaluate_boxes(boxes_frame(rows), **kw).matrix
    return {(t, p): int(m.loc[t, p]) for t in m.index for p in m.columns if m.loc[t, p]}


@pytest.mark.parametrize(("rows", "expected"), [
    ([], {}),
    ([gt("s", A, "cat"), pred("s", NEAR_A, "cat")], {("cat", "cat"): 1}),
    ([gt("s", A, "cat"), pred("s", NEAR_A, "dog")], {("cat", "dog"): 1}),
    ([pred("s", A, "cat")], {(BACKGROUND, "cat"): 1}),
    ([gt("s", A, "cat")], {("cat", BACKGROUND): 1}),
    ([gt("s", A, "cat"), pred("s", A, "cat", conf=0.1)], {("cat", BACKGROUND): 1}),  # too faint
    ([gt("s", A, "cat"), pred("s", B_, "cat")], {("cat", BACKGROUND): 1,
                                                  (BACKGROUND, "cat"): 1}),
    ([gt("s", A, "cat"), pred("t", A, "cat")], {("cat", BACKGROUND): 1,  # another image
                                                 (BACKGROUND, "cat"): 1}),
    ([gt("s", A, "cat", iscrowd=True), pred("s", B_, "cat")], {(BACKGROUND, "cat"): 1}),
    # inside a crowd label of its class a prediction is left out (COCO), of another class not
    ([gt("s", A, "cat", iscrowd=True), pred("s", NEAR_A, "cat")], {}),
    ([gt("s", A, "cat", iscrowd=True), pred("s", NEAR_A, "dog")], {(BACKGROUND, "dog"): 1}),
    ([gt("s", A, "cat", iscrowd=True), gt("s", A, "cat"), pred("s", A, "cat")],
     {("cat", "cat"): 1}),
    # class first: the dog prediction matches the dog label although the cat one overlaps more
    ([gt("s", A, "cat"), gt("s", HALF_A, "dog"), pred("s", NEAR_A, "dog")],
     {("dog", "dog"): 1, ("cat", BACKGROUND): 1}),
    # two predictions of one object: the more confident one is the TP, the other an FP
    ([gt("s", A, "cat"), pred("s", A, "cat", 0.9), pred("s", NEAR_A, "cat", 0.8)],
     {("cat", "cat"): 1, (BACKGROUND, "cat"): 1}),
])
def test_matrix_table(rows, expected) -> None:
    assert _cells(rows) == expected


def test_empty_frame_has_only_the_background_cell() -> None:
    ev = evaluate_boxes(empty_boxes())
    assert ev.outcomes.empty and ev.matrix.shape == (1, 1) and ev.matrix.iloc[0, 0] == 0


def test_a_stricter_iou_turns_a_hit_into_a_miss_and_a_false_alarm() -> None:
    rows = [gt("s", A, "cat"), pred("s", HALF_A, "cat")]
    assert _cells(rows, iou=0.5) == {("cat", "cat"): 1}
    assert _cells(rows, iou=0.7) == {("cat", BACKGROUND): 1, (BACKGROUND, "cat"): 1}
    with pytest.raises(ValueError, match="iou"):
        evaluate_boxes(boxes_frame(rows), iou=0.0)


def test_a_cell_leads_to_both_boxes_of_a_confusion() -> None:
    ev = evaluate_boxes(boxes_frame([gt("s", A, "cat", box_id="g"),
                                     pred("s", NEAR_A, "dog", box_id="p"),
                                     pred("s", B_, "dog", box_id="q")]))
    cell = ev.cell_boxes("cat", "dog")
    assert set(cell["box_id"]) == {"g", "p"}
    assert cell.set_index("box_id")["outcome"].to_dict() == {"g": "FN", "p": "FP"}
    assert cell["iou"].round(2).tolist() == [0.9, 0.9]
    assert ev.cell_boxes(BACKGROUND, "dog")["box_id"].tolist() == ["q"]
    counts = ev.counts()
    assert counts.loc["dog", ["TP", "FP", "FN"]].tolist() == [0, 2, 0]
    assert counts.loc["cat", "FN"] == 1


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=1000), st.sampled_from([0.3, 0.5, 0.75]))
def test_matrix_adds_up_to_the_boxes(seed: int, iou: float) -> None:
    frame = random_scene(seed, n_samples=3, per_sample=6)
    ev = evaluate_boxes(frame, iou=iou, conf=0.25)
    m, o = ev.matrix, ev.outcomes
    gts = frame[frame["source"] == "gt"]["label"].value_counts()
    confident = frame[(frame["source"] == "pred") & (frame["confidence"] >= 0.25)]
    for label, n in gts.items():
        assert m.loc[label].sum() == n  # each label once in its row
    for label, n in confident["label"].value_counts().items():
        assert m[label].sum() == n  # each confident prediction once in its column
    tp_pred = int(((o["source"] == "pred") & (o["outcome"] == "TP")).sum())
    assert int(np.trace(m.to_numpy()[:-1, :-1])) == tp_pred
    # the order of the boxes does not change the matrix
    again = evaluate_boxes(frame.sample(frac=1.0, random_state=seed), iou=iou).matrix
    assert (again.loc[m.index, m.columns] == m).all().all()


def test_pr_curve_per_class() -> None:
    rows = [gt("s", A, "cat"), gt("s", B_, "cat"), pred("s", A, "cat", 0.9),
            pred("s", (400, 400, 450, 450), "cat", 0.8), pred("s", B_, "cat", 0.7),
            pred("s", A, "dog", 0.6)]
    curve = pr_curves(boxes_frame(rows))
    assert set(curve["label"]) == {"cat"}  # dog has no label: no curve
    assert curve["recall"].tolist() == [0.5, 0.5, 1.0]
    assert curve["precision"].round(3).tolist() == [1.0, 0.5, 0.667]
    assert curve["recall"].is_monotonic_increasing
    assert pr_curves(empty_boxes()).empty
    crowd = [*rows, gt("s", (400, 400, 450, 450), "cat", iscrowd=True)]  # over the 0.8 one
    assert pr_curves(boxes_frame(crowd))["precision"].round(3).tolist() == [1.0, 1.0]


def test_pr_curve_keeps_at_most_max_points_and_the_last() -> None:
    frame = random_scene(3, n_samples=6, per_sample=8)
    full, short = pr_curves(frame), pr_curves(frame, max_points=3)
    for label, part in short.groupby("label"):
        assert len(part) <= 4
        assert part["recall"].iloc[-1] == full[full["label"] == label]["recall"].iloc[-1]
