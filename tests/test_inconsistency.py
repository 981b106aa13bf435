"""audit.inconsistency: group boxes, partially labelled images and per-class conventions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import boxes as B
from audit.inconsistency import (
    class_conventions,
    convention_insights,
    group_member_evidence,
    score_inconsistency,
)
from tests.builders import boxes_frame, empty_boxes, gt, pred, random_scene

LEFT, RIGHT, UNION = (100, 100, 195, 200), (205, 100, 300, 200), (100, 100, 300, 200)


def _group_scene(n_group: int = 2, n_individual: int = 4) -> list[dict]:
    """Books: one box over two books in ``n_group`` images, one box per book in the others."""
    rows = []
    for i in range(n_group):
        s = f"g{i}"
        rows += [gt(s, UNION, "book"), pred(s, LEFT, "book", 0.9), pred(s, RIGHT, "book", 0.8)]
    for i in range(n_individual):
        s = f"i{i}"
        rows += [gt(s, LEFT, "book"), pred(s, LEFT, "book", 0.9),
                 gt(s, RIGHT, "book"), pred(s, RIGHT, "book", 0.9)]
    return rows


# --- empty and bad input ------------------------------------------------------------------------


def test_empty_boxes_give_empty_frames():
    res = score_inconsistency(empty_boxes())
    assert res.boxes.empty and res.samples.empty and res.classes.empty
    assert {"group_box_score", "is_group_box_issue", "is_group", "n_members"} <= set(res.boxes)
    assert {"partial_labels_score", "is_partial_labels_issue", "n_unlabelled",
            "partial_classes"} <= set(res.samples)
    assert "is_mixed_convention" in res.classes.columns
    assert res.summary.n_gt == 0 and res.summary.mixed_classes == ()
    assert convention_insights(res.classes, res.boxes) == []


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (empty_boxes().drop(columns=["x1", "y2"]), r"boxes: missing columns \['x1', 'y2'\]"),
        (boxes_frame([gt("s0", LEFT)]).assign(source="GT"), "expected 'gt' or 'pred'"),
        (boxes_frame([gt("s0", (0, 0, np.nan, 1))]), "box 'b0' has non-finite coordinates"),
        (pd.Series([1, 2]), "boxes: expected a pandas DataFrame, got Series"),
    ],
)
def test_score_inconsistency_rejects_bad_input(boxes, message):
    with pytest.raises(ValueError, match=message):
        score_inconsistency(boxes)


# --- group boxes --------------------------------------------------------------------------------


def test_box_over_two_adjacent_objects_is_a_group_box():
    res = score_inconsistency(boxes_frame(_group_scene(1, 1)))
    group, single = res.boxes.loc["b0"], res.boxes.loc[["b3", "b5"]]
    assert group["group_box_score"] == pytest.approx(0.9 * 0.8)
    assert group["is_group_box_issue"] and group["is_group"] and group["n_members"] == 2
    assert (single["group_box_score"] == 0).all() and not single["is_group"].any()
    assert res.summary.n_group_boxes == 1


@pytest.mark.parametrize(
    ("members", "expected_score", "expected_members"),
    [
        ([], 0.0, 0),
        ([(LEFT, "book", 0.9)], 0.0, 1),  # one object is not a group
        ([(LEFT, "book", 0.9), (RIGHT, "car", 0.9)], 0.0, 1),  # another class is not a member
        # a weak second member ranks the box but is not counted as an object
        ([(LEFT, "book", 0.9), (RIGHT, "book", 0.1)], 0.09, 1),
        ([(LEFT, "book", 0.9), (RIGHT, "book", 0.01)], 0.0, 1),  # below evidence confidence
        ([(LEFT, "book", 0.9), ((110, 100, 300, 200), "book", 0.9)], 0.0, 1),  # too large
        ([(LEFT, "book", 0.9), ((205, 100, 400, 200), "book", 0.9)], 0.0, 1),  # mostly outside
        ([(LEFT, "book", 0.9), (RIGHT, "book", 0.8)], 0.72, 2),
        ([(LEFT, "book", 0.9), (RIGHT, "book", 0.8), ((150, 110, 250, 190), "book", 0.95)],
         0.95 * 0.9, 3),  # the two most confident members
    ],
)
def test_group_box_members(members, expected_score, expected_members):
    rows = [gt("s0", UNION, "book")] + [pred("s0", b, lab, c) for b, lab, c in members]
    res = score_inconsistency(boxes_frame(rows))
    assert res.boxes.loc["b0", "group_box_score"] == pytest.approx(expected_score)
    assert res.boxes.loc["b0", "n_members"] == expected_members


def test_more_confident_members_give_a_higher_group_score():
    scores = []
    for conf in (0.3, 0.5, 0.7, 0.9):
        rows = [gt("s0", UNION, "book"), pred("s0", LEFT, "book", conf),
                pred("s0", RIGHT, "book", conf)]
        scores.append(score_inconsistency(boxes_frame(rows)).boxes.loc["b0", "group_box_score"])
    assert np.all(np.diff(scores) > 0)


def test_crowd_box_is_a_declared_group_not_an_issue():
    rows = [gt("s0", UNION, "book", iscrowd=True), pred("s0", LEFT, "book", 0.9),
            pred("s0", RIGHT, "book", 0.8)]
    res = score_inconsistency(boxes_frame(rows))
    row = res.boxes.loc["b0"]
    assert np.isnan(row["group_box_score"])
    assert row["is_group"] and not row["is_group_box_issue"]
    assert res.summary.n_crowd == 1 and res.summary.n_group_boxes == 0


def test_group_member_evidence_directly():
    gt_xy = np.array([UNION, LEFT], float)
    pred_xy = np.array([LEFT, RIGHT], float)
    pairs = B.overlapping_pairs(gt_xy, [0, 0], pred_xy, [0, 0])
    area_ratio = B.box_area(pred_xy)[pairs.ib] / B.box_area(gt_xy)[pairs.ia]
    conf = np.array([0.9, 0.6])[pairs.ib]
    score, n = group_member_evidence(pairs, np.ones(len(conf), bool), conf, area_ratio, 2)
    np.testing.assert_allclose(score, [0.54, 0.0])
    assert n.tolist() == [2, 0]
    score, n = group_member_evidence(pairs, np.ones(len(conf), bool), conf, area_ratio, 2,
                                     min_members=3)
    assert score.tolist() == [0.0, 0.0] and n.tolist() == [2, 0]


def test_weak_second_member_ranks_but_neither_counts_nor_flags():
    """A merged box whose second object the model barely sees scores above a box with one
    member, stays below the flag threshold, and counts only its confident member."""
    gt_xy = np.array([UNION, UNION], float)
    pred_xy = np.array([LEFT, RIGHT, LEFT], float)
    pairs = B.overlapping_pairs(gt_xy, [0, 1], pred_xy, [0, 0, 1])
    area_ratio = B.box_area(pred_xy)[pairs.ib] / B.box_area(gt_xy)[pairs.ia]
    conf = np.array([0.9, 0.1, 0.9])[pairs.ib]
    same = np.ones(len(conf), bool)
    score, n = group_member_evidence(pairs, same, conf, area_ratio, 2)
    np.testing.assert_allclose(score, [0.09, 0.0])
    assert n.tolist() == [1, 1]
    score, _ = group_member_evidence(pairs, same, conf, area_ratio, 2, evidence_conf=0.25)
    assert score.tolist() == [0.0, 0.0]


# --- partial labels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected_score", "expected_classes", "n_unlabelled"),
    [
        # labelled car, and one confident car nobody labelled
        ([gt("s0", LEFT), pred("s0", LEFT, conf=0.9), pred("s0", (300, 300, 350, 350), conf=0.9)],
         0.9, ("car",), 1),
        # two unlabelled cars: noisy-or of their confidences
        ([gt("s0", LEFT), pred("s0", (300, 300, 350, 350), conf=0.7),
          pred("s0", (400, 300, 450, 350), conf=0.6)], 1 - 0.3 * 0.4, ("car",), 2),
        # everything labelled
        ([gt("s0", LEFT), pred("s0", LEFT, conf=0.9)], 0.0, (), 0),
        # an unlabelled dog, but no dog is labelled here: not partial labelling (missing instead)
        ([gt("s0", LEFT), pred("s0", (300, 300, 350, 350), "dog", 0.9)], 0.0, (), 0),
        # unlabelled car below the partial confidence
        ([gt("s0", LEFT), pred("s0", (300, 300, 350, 350), conf=0.3)], 0.0, (), 0),
        # the unlabelled books sit inside a group box: covered by the convention
        ([gt("s0", UNION, "book"), pred("s0", LEFT, "book", 0.9),
          pred("s0", RIGHT, "book", 0.8)], 0.0, (), 0),
        # the model boxes two labelled books as one group: no book is unlabelled
        ([gt("s0", LEFT, "book"), gt("s0", RIGHT, "book"), pred("s0", UNION, "book", 0.9)],
         0.0, (), 0),
        # no gt at all: does not apply
        ([pred("s0", (300, 300, 350, 350), conf=0.9)], np.nan, (), 0),
    ],
)
def test_partial_labels(rows, expected_score, expected_classes, n_unlabelled):
    res = score_inconsistency(boxes_frame(rows))
    row = res.samples.loc["s0"]
    np.testing.assert_allclose(row["partial_labels_score"], expected_score)
    assert row["partial_classes"] == expected_classes
    assert row["n_unlabelled"] == n_unlabelled
    assert row["is_partial_labels_issue"] == bool(np.nan_to_num(expected_score) >= 0.5)


def test_partly_labelled_image_scores_above_a_fully_labelled_one():
    rows = [gt("full", LEFT), pred("full", LEFT, conf=0.9),
            gt("part", LEFT), pred("part", LEFT, conf=0.9),
            pred("part", (300, 300, 350, 350), conf=0.85)]
    res = score_inconsistency(boxes_frame(rows))
    assert res.samples.loc["part", "partial_labels_score"] > 0.8
    assert res.samples.loc["full", "partial_labels_score"] == 0.0
    assert res.summary.n_partial_samples == 1
    assert res.classes.loc["car", "n_images_partial"] == 1


# --- conventions --------------------------------------------------------------------------------


def test_class_with_both_conventions_is_mixed_and_gets_an_insight():
    res = score_inconsistency(boxes_frame(_group_scene(2, 4)))
    book = res.classes.loc["book"]
    assert book["n_boxes"] == 10 and book["n_group"] == 2
    # shares count objects: 2 group boxes x 2 books inside vs 8 books boxed one by one
    assert book["n_group_objects"] == 4 and book["share_group"] == pytest.approx(4 / 12)
    assert book["n_images_group"] == 2 and book["n_images_individual"] == 4
    assert book["is_mixed_convention"]
    assert res.summary.mixed_classes == ("book",)
    (insight,) = convention_insights(res.classes, res.boxes)
    assert insight.kind == "inconsistency" and insight.label == "book"
    assert "book is labelled two ways" in insight.sentence and "33 %" in insight.sentence
    assert insight.severity == pytest.approx(2 / 3)
    assert set(insight.sample_ids) == {"g0", "g1"}
    json.dumps(insight.to_dict())


@pytest.mark.parametrize(("n_group", "n_individual"), [(0, 3), (3, 0)])
def test_one_convention_is_not_mixed(n_group, n_individual):
    res = score_inconsistency(boxes_frame(_group_scene(n_group, n_individual)))
    assert not res.classes["is_mixed_convention"].any()
    assert convention_insights(res.classes, res.boxes) == []


def test_mixed_min_sets_the_minority_share():
    res = score_inconsistency(boxes_frame(_group_scene(1, 6)))  # 1 group box of 13
    assert res.classes.loc["book", "is_mixed_convention"]
    strict = class_conventions(res.boxes, res.samples, mixed_min=0.2)
    assert not strict.loc["book", "is_mixed_convention"]


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), order_seed=st.integers(0, 10_000))
def test_scores_in_range_and_invariant_to_box_order(seed, order_seed):
    boxes = random_scene(seed, n_samples=4, per_sample=5)
    # add group-like structure: a union box over two same-class predictions in s0
    boxes = pd.concat([boxes, boxes_frame([
        gt("s0", UNION, "dog", box_id="u"), pred("s0", LEFT, "dog", 0.9, box_id="u1"),
        pred("s0", RIGHT, "dog", 0.7, box_id="u2")])], ignore_index=True)
    res = score_inconsistency(boxes)
    for col in (res.boxes["group_box_score"], res.samples["partial_labels_score"]):
        x = col.to_numpy(float)
        assert np.all(np.isnan(x) | ((x >= 0) & (x <= 1)))
    assert res.boxes.loc["u", "is_group_box_issue"]
    shuffled = boxes.sample(frac=1.0, random_state=order_seed).reset_index(drop=True)
    other = score_inconsistency(shuffled)
    pd.testing.assert_frame_equal(res.boxes.sort_index(), other.boxes.sort_index())
    pd.testing.assert_frame_equal(res.samples.sort_index(), other.samples.sort_index())
    pd.testing.assert_frame_equal(res.classes, other.classes)
