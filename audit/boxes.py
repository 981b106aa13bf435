"""Box geometry shared by every scorer: format conversion, overlap matrices, greedy matching.

One box format inside ``audit/``: absolute pixel ``xyxy`` float, shape ``(N, 4)``. FiftyOne's
relative ``[x, y, w, h]`` is converted here, for the data layer. Everything is vectorised numpy;
the ``*_pairs`` helpers work on long lists of box pairs so that a whole dataset is handled in one
call instead of a python loop over images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from audit import constants as C

_EPS = 1e-12


def _as_boxes(boxes: ArrayLike, name: str) -> NDArray[np.float64]:
    """Return ``boxes`` as a float64 ``(N, 4)`` array or raise ValueError."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name}: expected shape (N, 4), got {arr.shape}")
    return arr


def xywh_rel_to_xyxy_abs(
    boxes: ArrayLike, width: ArrayLike, height: ArrayLike
) -> NDArray[np.float64]:
    """Convert relative ``[x, y, w, h]`` (FiftyOne) to absolute pixel ``xyxy``.

    Args:
        boxes: ``(N, 4)`` relative top-left x, y, width, height in [0, 1].
        width: image width in pixels, scalar or ``(N,)``.
        height: image height in pixels, scalar or ``(N,)``.

    Returns:
        ``(N, 4)`` float64 absolute ``x1, y1, x2, y2``.

    Example:
        >>> xywh_rel_to_xyxy_abs([[0.5, 0.5, 0.25, 0.5]], 100, 200).tolist()
        [[50.0, 100.0, 75.0, 200.0]]
    """
    b = _as_boxes(boxes, "boxes")
    w = np.broadcast_to(np.asarray(width, dtype=np.float64), (len(b),))
    h = np.broadcast_to(np.asarray(height, dtype=np.float64), (len(b),))
    x1, y1 = b[:, 0] * w, b[:, 1] * h
    return np.stack([x1, y1, x1 + b[:, 2] * w, y1 + b[:, 3] * h], axis=1)


def xyxy_abs_to_xywh_rel(
    boxes: ArrayLike, width: ArrayLike, height: ArrayLike
) -> NDArray[np.float64]:
    """Convert absolute pixel ``xyxy`` to relative ``[x, y, w, h]`` (inverse of the above).

    Args:
        boxes: ``(N, 4)`` absolute ``x1, y1, x2, y2``.
        width: image width in pixels, scalar or ``(N,)``; must be positive.
        height: image height in pixels, scalar or ``(N,)``; must be positive.

    Returns:
        ``(N, 4)`` float64 relative top-left x, y, width, height.
    """
    b = _as_boxes(boxes, "boxes")
    w = np.broadcast_to(np.asarray(width, dtype=np.float64), (len(b),))
    h = np.broadcast_to(np.asarray(height, dtype=np.float64), (len(b),))
    if np.any(w <= 0) or np.any(h <= 0):
        raise ValueError("image width and height must be positive")
    return np.stack(
        [b[:, 0] / w, b[:, 1] / h, (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h], axis=1
    )


def _shortest(value: float, stored: float, to_relative) -> float:
    """The shortest decimal near ``value`` that ``to_relative`` maps onto ``stored`` exactly
    (``value`` itself when no rounding to up to 17 decimals does)."""
    for digits in range(18):
        candidate = round(value, digits)
        if to_relative(candidate) == stored:
            return candidate
    return value


def coco_xywh_abs(box: ArrayLike, width: float, height: float) -> list[float]:
    """FiftyOne relative ``[x, y, w, h]`` -> COCO absolute ``[x, y, w, h]``, exactly as ingested.

    Ingest stores ``x / width`` and ``((x + w) - x) / width`` (:func:`xyxy_abs_to_xywh_rel` of
    COCO's ``[x, y, x + w, y + h]``); multiplying back by the image size is off by a rounding
    error in most boxes (``10.37`` comes back as ``10.370000000000001``). Each coordinate is the
    shortest decimal that this conversion maps onto the stored value, which is the ingested
    number itself (or a shorter spelling of it), so an untouched box is exported as it came in.

    Example:
        >>> rel = xyxy_abs_to_xywh_rel([[10.37, 5.1, 10.37 + 20.26, 5.1 + 7.3]], 333, 211)[0]
        >>> coco_xywh_abs(rel, 333, 211)
        [10.37, 5.1, 20.26, 7.3]
    """
    rx, ry, rw, rh = (float(v) for v in box)
    x = _shortest(rx * width, rx, lambda c: c / width)
    y = _shortest(ry * height, ry, lambda c: c / height)
    w = _shortest(rw * width, rw, lambda c: ((x + c) - x) / width)
    h = _shortest(rh * height, rh, lambda c: ((y + c) - y) / height)
    return [x, y, w, h]


def box_area(boxes: ArrayLike) -> NDArray[np.float64]:
    """Area of each ``xyxy`` box, ``(N,)``; inverted boxes have area 0."""
    b = _as_boxes(boxes, "boxes")
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _intersection(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Broadcast intersection area of ``xyxy`` boxes ``a[..., 4]`` and ``b[..., 4]``."""
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    return np.clip(iw, 0, None) * np.clip(ih, 0, None)


def iou_matrix(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(N, 4)`` ``xyxy`` boxes.
        b: ``(M, 4)`` ``xyxy`` boxes.

    Returns:
        ``(N, M)`` IoU in [0, 1] (0 where both boxes are empty).

    Example:
        >>> iou_matrix([[0, 0, 2, 2]], [[1, 0, 3, 2]]).round(3).tolist()
        [[0.333]]
    """
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    inter = _intersection(a[:, None, :], b[None, :, :])
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > _EPS, inter / np.maximum(union, _EPS), 0.0)


def ios_matrix(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """Intersection over the smaller of the two areas, ``(N, M)`` in [0, 1].

    1 means one box lies entirely inside the other: the occlusion measure for overlapping
    labels, which IoU understates when a small box sits on a large one.
    """
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    inter = _intersection(a[:, None, :], b[None, :, :])
    smaller = np.minimum(box_area(a)[:, None], box_area(b)[None, :])
    return np.where(smaller > _EPS, inter / np.maximum(smaller, _EPS), 0.0)


def containment(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """Share of each box of ``b`` that lies inside each box of ``a``, ``(N, M)`` in [0, 1].

    ``containment(a, b)[i, j] = area(a_i ∩ b_j) / area(b_j)``: 1 when ``b_j`` is inside ``a_i``.
    """
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    inter = _intersection(a[:, None, :], b[None, :, :])
    area_b = box_area(b)[None, :]
    return np.where(area_b > _EPS, inter / np.maximum(area_b, _EPS), 0.0)


class Overlaps(NamedTuple):
    """Row-wise overlaps of aligned box lists, each ``(P,)``: ``iou``, ``ios`` (over the
    smaller), ``contain_b_in_a`` (share of ``b`` inside ``a``), ``contain_a_in_b``."""

    iou: NDArray[np.float64]
    ios: NDArray[np.float64]
    contain_b_in_a: NDArray[np.float64]
    contain_a_in_b: NDArray[np.float64]


class BoxPairs(NamedTuple):
    """Intersecting pairs of an ``a`` box and a ``b`` box of one image, each ``(P,)``: row
    indices ``ia``, ``ib`` and their :class:`Overlaps`."""

    ia: NDArray[np.int64]
    ib: NDArray[np.int64]
    iou: NDArray[np.float64]
    ios: NDArray[np.float64]
    contain_b_in_a: NDArray[np.float64]
    contain_a_in_b: NDArray[np.float64]


def pair_overlaps(a: ArrayLike, b: ArrayLike) -> Overlaps:
    """Row-wise overlaps of aligned box lists ``a[i]`` vs ``b[i]`` (both ``(P, 4)`` ``xyxy``)."""
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    inter = _intersection(a, b)
    area_a, area_b = box_area(a), box_area(b)
    union = area_a + area_b - inter

    def _ratio(den: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.where(den > _EPS, inter / np.maximum(den, _EPS), 0.0)

    return Overlaps(_ratio(union), _ratio(np.minimum(area_a, area_b)), _ratio(area_b),
                    _ratio(area_a))


def pairs_within_groups(
    groups_a: ArrayLike, groups_b: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Index pairs ``(i, j)`` of every ``a`` row and ``b`` row that share a group (an image).

    Vectorised by sorting: no python loop over groups.

    Args:
        groups_a: ``(N,)`` integer group codes (e.g. factorised sample ids) of the ``a`` rows.
        groups_b: ``(M,)`` integer group codes of the ``b`` rows.

    Returns:
        ``(ia, ib)``: two ``(P,)`` int64 arrays, ``P = sum_g n_a(g) * n_b(g)``, pairs grouped by
        the ``a`` row.

    Example:
        >>> ia, ib = pairs_within_groups([0, 1, 1], [1, 0])
        >>> sorted(zip(ia.tolist(), ib.tolist()))
        [(0, 1), (1, 0), (2, 0)]
    """
    ga, gb = np.asarray(groups_a, dtype=np.int64), np.asarray(groups_b, dtype=np.int64)
    if ga.size == 0 or gb.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n_groups = int(max(ga.max(), gb.max())) + 1
    order_b = np.argsort(gb, kind="stable")
    count_b = np.bincount(gb, minlength=n_groups)
    start_b = np.concatenate([[0], np.cumsum(count_b)[:-1]])
    run_len = count_b[ga]
    ia = np.repeat(np.arange(ga.size, dtype=np.int64), run_len)
    run_start = np.concatenate([[0], np.cumsum(run_len)[:-1]])
    offset = np.arange(ia.size, dtype=np.int64) - np.repeat(run_start, run_len)
    ib = order_b[np.repeat(start_b[ga], run_len) + offset]
    return ia, ib.astype(np.int64)


@dataclass(frozen=True)
class Matching:
    """Result of greedy matching.

    Attributes:
        pred_to_gt: ``(M,)`` index of the gt matched to each prediction, -1 when none.
        gt_to_pred: ``(N,)`` index of the prediction matched to each gt, -1 when none.
        pred_iou: ``(M,)`` IoU with the matched gt (0 when unmatched).
    """

    pred_to_gt: NDArray[np.int64]
    gt_to_pred: NDArray[np.int64]
    pred_iou: NDArray[np.float64]


def greedy_match_pairs(
    pair_gt: ArrayLike,
    pair_pred: ArrayLike,
    pair_iou: ArrayLike,
    pred_conf: ArrayLike,
    n_gt: int,
    *,
    iou_threshold: float = C.MATCH_IOU,
) -> Matching:
    """Confidence-ordered greedy matching (COCO style) over candidate pairs of many images.

    Predictions are taken in descending confidence; each takes the unmatched gt with the highest
    IoU >= ``iou_threshold`` among its candidate pairs. Pairs must only join boxes of the same
    image (see :func:`pairs_within_groups`); class-aware matching is obtained by passing only
    same-class pairs. Solved in rounds, all images at once: a prediction commits to its best gt
    when no unresolved prediction ranked above it also has that gt as a candidate, which gives the
    sequential greedy result exactly.

    Args:
        pair_gt: ``(P,)`` gt row index of each candidate pair.
        pair_pred: ``(P,)`` prediction row index of each candidate pair.
        pair_iou: ``(P,)`` IoU of each pair.
        pred_conf: ``(M,)`` prediction confidences (ties broken by row order).
        n_gt: number of gt rows.
        iou_threshold: minimum IoU of a match.

    Returns:
        A :class:`Matching`.
    """
    conf = np.asarray(pred_conf, dtype=np.float64)
    n_pred = conf.size
    pred_to_gt = np.full(n_pred, -1, np.int64)
    gt_to_pred = np.full(n_gt, -1, np.int64)
    pred_iou = np.zeros(n_pred)
    iou = np.asarray(pair_iou, dtype=np.float64)
    keep = iou >= iou_threshold
    g = np.asarray(pair_gt, dtype=np.int64)[keep]
    p = np.asarray(pair_pred, dtype=np.int64)[keep]
    iou = iou[keep]
    rank = np.empty(n_pred, np.int64)
    rank[np.lexsort((np.arange(n_pred), -np.nan_to_num(conf, nan=-1.0)))] = np.arange(n_pred)
    while g.size:
        order = np.lexsort((-iou, p))  # per prediction, best IoU first
        g, p, iou = g[order], p[order], iou[order]
        first = np.r_[True, p[1:] != p[:-1]]
        best_g, best_p, best_iou = g[first], p[first], iou[first]
        min_rank = np.full(n_gt, np.iinfo(np.int64).max)
        np.minimum.at(min_rank, g, rank[p])
        commit = rank[best_p] == min_rank[best_g]
        cp, cg = best_p[commit], best_g[commit]
        pred_to_gt[cp], gt_to_pred[cg], pred_iou[cp] = cg, cp, best_iou[commit]
        alive = (pred_to_gt[p] < 0) & (gt_to_pred[g] < 0)
        g, p, iou = g[alive], p[alive], iou[alive]
    return Matching(pred_to_gt, gt_to_pred, pred_iou)


def match_boxes(
    gt: ArrayLike,
    pred: ArrayLike,
    pred_conf: ArrayLike,
    *,
    iou_threshold: float = C.MATCH_IOU,
) -> Matching:
    """Greedy confidence-ordered matching of one image's predictions to its gt boxes.

    Args:
        gt: ``(N, 4)`` ``xyxy`` ground-truth boxes.
        pred: ``(M, 4)`` ``xyxy`` predicted boxes.
        pred_conf: ``(M,)`` confidences.
        iou_threshold: minimum IoU of a match.

    Returns:
        A :class:`Matching`.

    Example:
        >>> m = match_boxes([[0, 0, 10, 10]], [[0, 0, 10, 9], [0, 0, 10, 10]], [0.5, 0.9])
        >>> m.pred_to_gt.tolist()
        [-1, 0]
    """
    gt_b, pred_b = _as_boxes(gt, "gt"), _as_boxes(pred, "pred")
    conf = np.asarray(pred_conf, dtype=np.float64).reshape(-1)
    if conf.size != len(pred_b):
        raise ValueError(f"pred_conf: expected {len(pred_b)} values, got {conf.size}")
    ious = iou_matrix(gt_b, pred_b)
    gi, pj = np.nonzero(ious >= iou_threshold)
    return greedy_match_pairs(gi, pj, ious[gi, pj], conf, len(gt_b), iou_threshold=iou_threshold)


def overlapping_pairs(
    a: ArrayLike,
    groups_a: ArrayLike,
    b: ArrayLike,
    groups_b: ArrayLike,
    *,
    block: int = 2_000_000,
) -> BoxPairs:
    """Every pair of an ``a`` box and a ``b`` box of the same image that intersect.

    Pairs are generated image block by image block so that at most about ``block`` candidate
    pairs exist at once (memory stays bounded on 100k images).

    Args:
        a: ``(N, 4)`` ``xyxy`` boxes; groups_a: ``(N,)`` image codes (non-negative ints).
        b: ``(M, 4)`` ``xyxy`` boxes; groups_b: ``(M,)`` image codes.
        block: target number of candidate pairs per block.

    Returns:
        :class:`BoxPairs`.
    """
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    ga, gb = np.asarray(groups_a, dtype=np.int64), np.asarray(groups_b, dtype=np.int64)
    keys = BoxPairs._fields
    parts: dict[str, list[NDArray]] = {key: [] for key in keys}
    if ga.size and gb.size:
        n_groups = int(max(ga.max(), gb.max())) + 1
        work = np.cumsum(np.bincount(ga, minlength=n_groups) * np.bincount(gb, minlength=n_groups))
        edges = np.searchsorted(work, np.arange(block, work[-1] + block, block), side="right")
        lo = 0
        for hi in np.unique(np.r_[edges, n_groups]):
            sel_a = np.flatnonzero((ga >= lo) & (ga < hi))
            sel_b = np.flatnonzero((gb >= lo) & (gb < hi))
            lo = hi
            ia, ib = pairs_within_groups(ga[sel_a], gb[sel_b])
            ia, ib = sel_a[ia], sel_b[ib]
            ov = pair_overlaps(a[ia], b[ib])
            hit = ov.ios > 0
            for key, arr in (("ia", ia), ("ib", ib), *ov._asdict().items()):
                parts[key].append(arr[hit])
    return BoxPairs(**{
        key: np.concatenate(v) if v else np.zeros(0, np.int64 if key in ("ia", "ib") else float)
        for key, v in parts.items()
    })
