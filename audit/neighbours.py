"""Cosine k-nearest-neighbour evidence on per-box features, excluding boxes of the same image.

Used by :mod:`audit.mistakenness`. Neighbours come from scikit-learn's ``NearestNeighbors``
(brute force) with the euclidean metric on L2-normalised vectors: the neighbour order equals the
cosine order (``|a - b|^2 = 2 - 2 cos``) and it runs sklearn's chunked, multi-threaded ``ArgKmin``
path, which the ``cosine`` metric does not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.neighbors import NearestNeighbors

from audit import constants as C
from audit.frames import linear_ramp as ramp

_CHUNK = 100_000  # queries per kneighbors call (bounds the (chunk, k) temporaries)


@dataclass(frozen=True)
class NeighbourEvidence:
    """kNN statistics of each query box against the reference set.

    Attributes:
        distance: ``(Q,)`` mean cosine distance (``1 - cos``, in [0, 2]) to the k nearest
            reference boxes of other images; NaN without neighbours.
        share_own: ``(Q,)`` similarity-weighted share of neighbours carrying the query's label.
        top_other: ``(Q,)`` label code of the most supported other label (-1 when none).
        share_other: ``(Q,)`` similarity-weighted share of that label.
    """

    distance: NDArray[np.float64]
    share_own: NDArray[np.float64]
    top_other: NDArray[np.int64]
    share_other: NDArray[np.float64]


def l2_normalise(x: NDArray) -> NDArray[np.float32]:
    """Rows of ``x`` scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def per_class_sample(ref: NDArray, labels: NDArray, per_class: int, total: int,
                     rng: np.random.Generator) -> NDArray:
    """A seeded subsample of ``ref`` with at most ``per_class`` rows per label (fewer when the
    labels times ``per_class`` exceed ``total``), so rare classes keep their share."""
    codes, counts = np.unique(labels, return_counts=True)
    cap = int(max(1, min(per_class, total // max(len(codes), 1))))
    if counts.max(initial=0) <= cap:
        return ref
    keep = [ref[labels == c] if n <= cap else rng.choice(ref[labels == c], cap, replace=False)
            for c, n in zip(codes, counts, strict=True)]
    return np.sort(np.concatenate(keep))


def knn_evidence(
    ref_feat: NDArray,
    ref_image: NDArray[np.int64],
    ref_label: NDArray[np.int64],
    query_feat: NDArray,
    query_image: NDArray[np.int64],
    query_label: NDArray[np.int64],
    *,
    k: int,
) -> NeighbourEvidence:
    """kNN label agreement and distance of each query against the reference boxes.

    Reference boxes from the query's own image are skipped (a box must not vote for itself, nor
    its neighbours in the same picture, which share lighting and labeller).

    Args:
        ref_feat: ``(R, F)`` L2-normalised reference features.
        ref_image: ``(R,)`` image code of each reference box.
        ref_label: ``(R,)`` label code of each reference box.
        query_feat: ``(Q, F)`` L2-normalised query features.
        query_image: ``(Q,)`` image code of each query.
        query_label: ``(Q,)`` label code of each query (-1: none).
        k: neighbours used per query.

    Returns:
        A :class:`NeighbourEvidence`.
    """
    q = len(query_feat)
    out = NeighbourEvidence(np.full(q, np.nan), np.full(q, np.nan),
                            np.full(q, -1, np.int64), np.zeros(q))
    if q == 0 or len(ref_feat) == 0:
        return out
    per_image = np.bincount(ref_image).max()
    kq = int(min(len(ref_feat), k + per_image))
    nn = NearestNeighbors(n_neighbors=kq, algorithm="brute", metric="euclidean").fit(ref_feat)
    for lo in range(0, q, _CHUNK):
        hi = min(q, lo + _CHUNK)
        dist, idx = nn.kneighbors(query_feat[lo:hi])
        cos_d = dist.astype(np.float64) ** 2 / 2.0
        keep = ref_image[idx] != query_image[lo:hi, None]
        keep &= np.cumsum(keep, axis=1) <= k
        _fill(out, slice(lo, hi), cos_d, ref_label[idx], keep, query_label[lo:hi])
    return out


def _fill(out: NeighbourEvidence, rows: slice, cos_d, labels, keep, own) -> None:
    """Reduce one chunk of neighbour lists into ``out`` (in place)."""
    n_keep = keep.sum(axis=1)
    has = n_keep > 0
    dist = np.where(keep, cos_d, 0.0).sum(axis=1) / np.maximum(n_keep, 1)
    weight = np.where(keep, np.clip(1.0 - cos_d, 0.0, None) + 1e-6, 0.0)
    total = weight.sum(axis=1)
    total = np.where(total > 0, total, 1.0)
    share_own = (weight * (labels == own[:, None])).sum(axis=1) / total
    # support of each neighbour's label, then the best label that is not the query's own
    support = np.zeros_like(weight)
    for j in range(labels.shape[1]):
        support += weight[:, j : j + 1] * (labels == labels[:, j : j + 1])
    support /= total[:, None]
    support = np.where(keep & (labels != own[:, None]), support, -1.0)
    best = support.argmax(axis=1)
    best_support = np.take_along_axis(support, best[:, None], axis=1)[:, 0]
    top = np.where(best_support > 0, np.take_along_axis(labels, best[:, None], 1)[:, 0], -1)
    out.distance[rows] = np.where(has, dist, np.nan)
    out.share_own[rows] = np.where(has, share_own, np.nan)
    out.top_other[rows] = top
    out.share_other[rows] = np.clip(best_support, 0.0, None)


def reference_evidence(feats: NDArray | None, is_gt: NDArray, g_code: NDArray, g_lab: NDArray,
                       p_code: NDArray, p_lab: NDArray, *, confirm_conf: NDArray,
                       gt_split: NDArray | None, pred_query: NDArray, k: int,
                       reference_max: int, reference_per_class: int, reference_conf: float,
                       seed: int):
    """kNN evidence of every gt and pred box against a reference of labelled boxes.

    The reference is the gt boxes a same-class prediction confirms (``confirm_conf >=
    reference_conf``, or the median confidence of the matched labels where that is lower: a weak
    model's matches rarely reach a fixed bar), from val when val has at least ``10 k`` of them,
    else all gt boxes with features; subsampled per class (:func:`per_class_sample`). "Far"
    evidence: each box's mean neighbour distance as a robust z against the reference's own
    distances, ramped from ``C.FAR_Z_LOW`` to ``C.FAR_Z_HIGH``.

    Args:
        feats: ``(n_boxes, F)`` per-box features (NaN rows: no feature), None: no evidence.
        is_gt: ``(n_boxes,)`` gt rows; g_code, g_lab / p_code, p_lab: image and label codes of
            the gt / pred rows.
        confirm_conf: ``(n_gt,)`` confidence of the best same-class prediction matching each gt.
        gt_split: ``(n_gt,)`` split of each gt box, or None.
        pred_query: ``(n_pred,)`` predictions to look up (the others get NaN evidence).
        k, reference_max, reference_per_class, reference_conf, seed: kNN settings.

    Returns:
        ``(reference name, reference size, gt evidence, pred evidence, far gt, far pred)``;
        reference "none" and zero evidence without features or with one reference box or less.
    """
    n_g, n_p = len(g_code), len(p_code)
    empty = NeighbourEvidence(np.full(0, np.nan), np.full(0, np.nan), np.full(0, -1), np.zeros(0))
    none = ("none", 0, empty, empty, np.zeros(n_g), np.zeros(n_p))
    if feats is None:
        return none
    f = np.asarray(feats, dtype=np.float32)
    ok = np.isfinite(f).all(axis=1)
    g_ok, p_ok = ok[is_gt], ok[~is_gt]
    # "confirmed" relative to the model at hand: a weak model's matches rarely reach
    # ``reference_conf``, so the bar is at most the median confidence of its matched labels
    matched = confirm_conf[g_ok & (confirm_conf > 0)]
    bar = min(reference_conf, float(np.median(matched))) if matched.size else reference_conf
    confirmed = g_ok & (confirm_conf >= bar)
    name, ref = "all-gt", np.flatnonzero(g_ok)
    if confirmed.sum() > k:
        name, ref = "confirmed", np.flatnonzero(confirmed)
    if gt_split is not None:
        val_ref = np.flatnonzero(confirmed & (gt_split == "val"))
        if val_ref.size >= 10 * k:
            name, ref = "val-confirmed", val_ref
    if ref.size <= 1:
        warnings.warn("mistakenness: too few labelled boxes with features; kNN evidence off",
                      stacklevel=3)
        return none
    rng = np.random.default_rng(seed)
    ref = per_class_sample(ref, g_lab[ref], reference_per_class, reference_max, rng)
    g_feat, p_feat = l2_normalise(f[is_gt]), l2_normalise(f[~is_gt])
    r_args = (g_feat[ref], g_code[ref], g_lab[ref])
    q_g = np.flatnonzero(g_ok)
    q_p = np.flatnonzero(p_ok & pred_query)
    ev_g = _expand(knn_evidence(*r_args, g_feat[q_g], g_code[q_g], g_lab[q_g], k=k), q_g, n_g)
    ev_p = _expand(knn_evidence(*r_args, p_feat[q_p], p_code[q_p], p_lab[q_p], k=k), q_p, n_p)
    calib = ref if ref.size <= 2000 else rng.choice(ref, 2000, replace=False)
    d_ref = ev_g.distance[calib]
    d_ref = d_ref[np.isfinite(d_ref)]
    med = np.median(d_ref) if d_ref.size else 0.0
    mad = 1.4826 * np.median(np.abs(d_ref - med)) if d_ref.size else 0.0
    scale = mad if mad > 0 else max(float(np.std(d_ref)) if d_ref.size else 0.0, 1e-6)

    def far(d: NDArray) -> NDArray:
        return np.nan_to_num(ramp((d - med) / scale, C.FAR_Z_LOW, C.FAR_Z_HIGH))

    return name, int(ref.size), ev_g, ev_p, far(ev_g.distance), far(ev_p.distance)


def _expand(ev: NeighbourEvidence, rows: NDArray, n: int) -> NeighbourEvidence:
    """Scatter evidence of the queried rows into full-length arrays (NaN elsewhere)."""
    out = NeighbourEvidence(np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, np.int64),
                            np.zeros(n))
    out.distance[rows], out.share_own[rows] = ev.distance, ev.share_own
    out.top_other[rows], out.share_other[rows] = ev.top_other, ev.share_other
    return out


def background_likeness(query_feat: NDArray, query_image: NDArray[np.int64],
                        probe_feat: NDArray, probe_image: NDArray[np.int64],
                        object_distance: NDArray, *, k: int) -> NDArray[np.float64]:
    """How much more each query box looks like background than like a labelled object, in
    [0, 1]: ``d_obj / (d_obj + d_bg)``, with ``d_obj`` its kNN distance to labelled boxes
    (``object_distance``) and ``d_bg`` its mean cosine distance to the ``k`` nearest background
    probes of other images (label-sized boxes drawn at ingest where no label or confident
    prediction lies). 0.5: as close to either; NaN where a distance is unknown.

    A label drawn on background sits near the probes; an object the model misses (a dead
    tree, a rare pose) is far from the labelled objects and from background alike, so this
    tells the two apart where the model's disagreement cannot.

    Example:
        >>> f = l2_normalise(np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]))
        >>> background_likeness(f[:1], np.array([0]), f[1:], np.array([1, 2]),
        ...                     np.array([0.9]), k=2).round(2).tolist()
        [0.49]
    """
    out = np.full(len(query_feat), np.nan)
    ok_q = np.isfinite(query_feat).all(axis=1) if len(query_feat) else np.zeros(0, bool)
    ok_p = np.isfinite(probe_feat).all(axis=1) if len(probe_feat) else np.zeros(0, bool)
    if not ok_q.any() or not ok_p.any():
        return out
    zeros_p, zeros_q = np.zeros(int(ok_p.sum()), np.int64), np.zeros(int(ok_q.sum()), np.int64)
    ev = knn_evidence(probe_feat[ok_p], probe_image[ok_p], zeros_p, query_feat[ok_q],
                      query_image[ok_q], zeros_q, k=k)
    d_obj = np.asarray(object_distance, float)[ok_q]
    total = d_obj + ev.distance
    like = np.where(total > 0, d_obj / np.where(total > 0, total, 1.0), 0.5)
    out[ok_q] = np.where(np.isfinite(total), like, np.nan)
    return out
