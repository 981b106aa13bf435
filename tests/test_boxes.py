"""audit.boxes: conversions, overlap matrices, pairing within images and greedy matching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import boxes as B

# --- strategies ---------------------------------------------------------------------------------

_coord = st.integers(0, 60)


@st.composite
def xyxy_boxes(draw, min_size: int = 0, max_size: int = 8):
    """Integer ``xyxy`` boxes on a 100 px canvas (some degenerate, many overlapping)."""
    n = draw(st.integers(min_size, max_size))
    rows = []
    for _ in range(n):
        x1, y1 = draw(_coord), draw(_coord)
        rows.append([x1, y1, x1 + draw(st.integers(0, 40)), y1 + draw(st.integers(0, 40))])
    return np.asarray(rows, dtype=float).reshape(-1, 4)


# --- conversions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boxes", "width", "height", "expected"),
    [
        ([], 100, 100, np.zeros((0, 4))),
        ([[0.5, 0.5, 0.25, 0.5]], 100, 200, [[50.0, 100.0, 75.0, 200.0]]),
        ([[0, 0, 1, 1]], 640, 480, [[0, 0, 640, 480]]),
        ([[0, 0, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]], [10, 20], [10, 40],
         [[0, 0, 5, 5], [10, 20, 20, 40]]),
    ],
)
def test_xywh_rel_to_xyxy_abs(boxes, width, height, expected):
    out = B.xywh_rel_to_xyxy_abs(boxes, width, height)
    np.testing.assert_allclose(out, np.asarray(expected, float).reshape(-1, 4))


@pytest.mark.parametrize(
    ("func", "boxes", "width", "height", "message"),
    [
        (B.xywh_rel_to_xyxy_abs, [0.1, 0.2, 0.3, 0.4], 10, 10, r"expected shape \(N, 4\)"),
        (B.xywh_rel_to_xyxy_abs, [[0.1, 0.2, 0.3]], 10, 10, r"expected shape \(N, 4\)"),
        (B.xyxy_abs_to_xywh_rel, [[0, 0, 5, 5]], 0, 10, "width and height must be positive"),
        (B.xyxy_abs_to_xywh_rel, [[0, 0, 5, 5]], 10, -1, "width and height must be positive"),
        (B.xyxy_abs_to_xywh_rel, [[[0, 0, 5, 5]]], 10, 10, r"expected shape \(N, 4\)"),
    ],
)
def test_conversion_rejects_bad_input(func, boxes, width, height, message):
    with pytest.raises(ValueError, match=message):
        func(boxes, width, height)


@settings(max_examples=40, deadline=None)
@given(boxes=xyxy_boxes(), width=st.integers(100, 2000), height=st.integers(100, 2000))
def test_conversions_round_trip(boxes, width, height):
    rel = B.xyxy_abs_to_xywh_rel(boxes, width, height)
    np.testing.assert_allclose(B.xywh_rel_to_xyxy_abs(rel, width, height), boxes, atol=1e-9)


# --- areas and overlaps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [
        ([], []),
        ([[0, 0, 2, 3]], [6.0]),
        ([[5, 5, 5, 9], [0, 0, 1, 1]], [0.0, 1.0]),
        ([[4, 4, 2, 2]], [0.0]),  # inverted: area 0, not 4
    ],
)
def test_box_area(boxes, expected):
    np.testing.assert_allclose(B.box_area(boxes), expected)


@pytest.mark.parametrize(
    ("a", "b", "iou", "ios", "contain"),
    [
        ([], [[0, 0, 1, 1]], np.zeros((0, 1)), np.zeros((0, 1)), np.zeros((0, 1))),
        ([[0, 0, 1, 1]], [], np.zeros((1, 0)), np.zeros((1, 0)), np.zeros((1, 0))),
        ([[0, 0, 2, 2]], [[0, 0, 2, 2]], [[1.0]], [[1.0]], [[1.0]]),
        ([[0, 0, 2, 2]], [[1, 0, 3, 2]], [[1 / 3]], [[0.5]], [[0.5]]),
        ([[0, 0, 2, 2]], [[5, 5, 6, 6]], [[0.0]], [[0.0]], [[0.0]]),
        ([[0, 0, 2, 2]], [[2, 0, 4, 2]], [[0.0]], [[0.0]], [[0.0]]),  # touching edges
        # small box inside a big one: IoU 1/16, intersection over the smaller 1, b fully in a
        ([[0, 0, 4, 4]], [[1, 1, 2, 2]], [[1 / 16]], [[1.0]], [[1.0]]),
        ([[1, 1, 2, 2]], [[0, 0, 4, 4]], [[1 / 16]], [[1.0]], [[1 / 16]]),
        ([[3, 3, 3, 3]], [[3, 3, 3, 3]], [[0.0]], [[0.0]], [[0.0]]),  # both empty
    ],
)
def test_overlap_matrices(a, b, iou, ios, contain):
    np.testing.assert_allclose(B.iou_matrix(a, b), iou)
    np.testing.assert_allclose(B.ios_matrix(a, b), ios)
    np.testing.assert_allclose(B.containment(a, b), contain)


@pytest.mark.parametrize("func", [B.iou_matrix, B.ios_matrix, B.containment, B.pair_overlaps])
@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([[0, 0, 1]], [[0, 0, 1, 1]], r"a: expected shape \(N, 4\), got \(1, 3\)"),
        ([[0, 0, 1, 1]], [0, 0, 1, 1], r"b: expected shape \(N, 4\), got \(4,\)"),
    ],
)
def test_overlaps_reject_bad_shapes(func, a, b, message):
    with pytest.raises(ValueError, match=message):
        func(a, b)


@settings(max_examples=60, deadline=None)
@given(a=xyxy_boxes(), b=xyxy_boxes())
def test_iou_is_symmetric_and_in_unit_interval(a, b):
    iou = B.iou_matrix(a, b)
    assert iou.shape == (len(a), len(b))
    assert np.all((iou >= 0) & (iou <= 1))
    np.testing.assert_allclose(iou, B.iou_matrix(b, a).T)
    ios = B.ios_matrix(a, b)
    np.testing.assert_allclose(ios, B.ios_matrix(b, a).T)
    assert np.all(ios >= iou - 1e-12) and np.all(ios <= 1)
    contain = B.containment(a, b)
    assert np.all((contain >= 0) & (contain <= 1 + 1e-12))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_pair_overlaps_equal_matrix_diagonals(data):
    a = data.draw(xyxy_boxes(min_size=0, max_size=6))
    b = data.draw(xyxy_boxes(min_size=len(a), max_size=len(a)))
    ov = B.pair_overlaps(a, b)
    np.testing.assert_allclose(ov.iou, np.diag(B.iou_matrix(a, b)))
    np.testing.assert_allclose(ov.ios, np.diag(B.ios_matrix(a, b)))
    np.testing.assert_allclose(ov.contain_b_in_a, np.diag(B.containment(a, b)))
    np.testing.assert_allclose(ov.contain_a_in_b, np.diag(B.containment(b, a)))


# --- pairs within groups ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ga", "gb", "expected"),
    [
        ([], [], []),
        ([0, 1], [], []),
        ([], [0], []),
        ([0, 1, 1], [1, 0], [(0, 1), (1, 0), (2, 0)]),
        ([2, 2], [0, 1], []),
        ([0, 0], [0, 0, 1], [(0, 0), (0, 1), (1, 0), (1, 1)]),
    ],
)
def test_pairs_within_groups(ga, gb, expected):
    ia, ib = B.pairs_within_groups(ga, gb)
    assert ia.dtype == np.int64 and ib.dtype == np.int64
    assert sorted(zip(ia.tolist(), ib.tolist(), strict=True)) == expected


@settings(max_examples=60, deadline=None)
@given(ga=st.lists(st.integers(0, 5), max_size=12), gb=st.lists(st.integers(0, 5), max_size=12))
def test_pairs_within_groups_equals_brute_force(ga, gb):
    ia, ib = B.pairs_within_groups(ga, gb)
    brute = [(i, j) for i, x in enumerate(ga) for j, y in enumerate(gb) if x == y]
    assert sorted(zip(ia.tolist(), ib.tolist(), strict=True)) == brute
    assert np.all(np.diff(ia) >= 0)  # grouped by the a row


# --- overlapping pairs --------------------------------------------------------------------------


def test_overlapping_pairs_empty():
    out = B.overlapping_pairs(np.zeros((0, 4)), [], [[0, 0, 1, 1]], [0])
    assert isinstance(out, B.BoxPairs)
    assert out._fields == ("ia", "ib", "iou", "ios", "contain_b_in_a", "contain_a_in_b")
    assert all(v.size == 0 for v in out)
    assert out.ia.dtype == np.int64 and out.iou.dtype == np.float64


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_overlapping_pairs_equals_brute_force_at_any_block_size(data):
    a = data.draw(xyxy_boxes(max_size=10))
    b = data.draw(xyxy_boxes(max_size=10))
    ga = data.draw(st.lists(st.integers(0, 3), min_size=len(a), max_size=len(a)))
    gb = data.draw(st.lists(st.integers(0, 3), min_size=len(b), max_size=len(b)))
    ios = B.ios_matrix(a, b)
    brute = sorted((i, j) for i in range(len(a)) for j in range(len(b))
                   if ga[i] == gb[j] and ios[i, j] > 0)
    for block in (1, 3, 2_000_000):
        out = B.overlapping_pairs(a, ga, b, gb, block=block)
        got = sorted(zip(out.ia.tolist(), out.ib.tolist(), strict=True))
        assert got == brute
        np.testing.assert_allclose(out.iou, B.iou_matrix(a, b)[out.ia, out.ib])


# --- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gt", "pred", "conf", "pred_to_gt", "gt_to_pred"),
    [
        ([], [], [], [], []),
        ([[0, 0, 10, 10]], [], [], [], [-1]),
        ([], [[0, 0, 10, 10]], [0.9], [-1], []),
        # the more confident prediction wins the gt, even with a lower IoU
        ([[0, 0, 10, 10]], [[0, 0, 10, 10], [0, 0, 10, 9]], [0.5, 0.9], [-1, 0], [1]),
        ([[0, 0, 10, 10]], [[0, 0, 10, 4]], [0.9], [-1], [-1]),  # IoU 0.4 < 0.5
        # each prediction takes its own gt
        ([[0, 0, 10, 10], [20, 0, 30, 10]], [[21, 0, 30, 10], [0, 0, 9, 10]], [0.8, 0.7],
         [1, 0], [1, 0]),
        # the confident prediction takes gt 0, which the second one fits exactly; it gets gt 1
        ([[0, 0, 10, 10], [3, 0, 13, 10]], [[1, 0, 11, 10], [0, 0, 10, 10]], [0.9, 0.8],
         [0, 1], [0, 1]),
    ],
)
def test_match_boxes(gt, pred, conf, pred_to_gt, gt_to_pred):
    m = B.match_boxes(gt, pred, conf)
    assert m.pred_to_gt.tolist() == pred_to_gt
    assert m.gt_to_pred.tolist() == gt_to_pred
    matched = m.pred_to_gt >= 0
    np.testing.assert_allclose(
        m.pred_iou[matched],
        B.iou_matrix(gt, pred)[m.pred_to_gt[matched], np.flatnonzero(matched)]
        if matched.any() else [],
    )
    assert np.all(m.pred_iou[~matched] == 0)


def test_match_boxes_rejects_misaligned_confidences():
    with pytest.raises(ValueError, match="pred_conf: expected 2 values, got 1"):
        B.match_boxes([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 2, 2]], [0.5])


def _sequential_greedy(gt, pred, conf, thr):
    """Reference COCO-style greedy: predictions by confidence (row order on ties)."""
    iou = B.iou_matrix(gt, pred)
    pred_to_gt = [-1] * len(pred)
    taken = set()
    for j in sorted(range(len(pred)), key=lambda j: (-conf[j], j)):
        best, best_iou = -1, thr
        for i in range(len(gt)):
            if i not in taken and iou[i, j] >= best_iou and (best < 0 or iou[i, j] > best_iou):
                best, best_iou = i, iou[i, j]
        if best >= 0:
            pred_to_gt[j] = best
            taken.add(best)
    return pred_to_gt


@settings(max_examples=80, deadline=None)
@given(
    gt=xyxy_boxes(max_size=7),
    pred=xyxy_boxes(max_size=7),
    data=st.data(),
    thr=st.sampled_from([0.1, 0.3, 0.5]),
)
def test_greedy_matching_equals_sequential_reference(gt, pred, data, thr):
    conf = data.draw(st.lists(st.sampled_from([0.2, 0.5, 0.9]) | st.floats(0, 1),
                              min_size=len(pred), max_size=len(pred)))
    m = B.match_boxes(gt, pred, conf, iou_threshold=thr)
    assert m.pred_to_gt.tolist() == _sequential_greedy(gt, pred, conf, thr)
    # one to one, and the two directions agree
    for j, i in enumerate(m.pred_to_gt.tolist()):
        if i >= 0:
            assert m.gt_to_pred[i] == j
    assert (m.gt_to_pred >= 0).sum() == (m.pred_to_gt >= 0).sum()
