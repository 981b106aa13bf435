"""Mistakenness: wrong class, bad box, spurious label (gt rows) and missing label (pred rows).

Evidence combined per box (each piece in [0, 1], combined by noisy-or ``1 - prod(1 - e)``):

* model: the detector's predictions overlapping the box (IoU from :mod:`audit.boxes`);
* kNN (cosine, per-box features, other images only, see :mod:`audit.neighbours`) against a
  *reference* of labelled boxes the model confirms, taken from the val split when it has enough
  (on train the model has memorised label errors, on val it has not): neighbours' labels catch
  flips the model memorised; the distance to labelled objects (robust z against the reference's
  own distances, ramped from ``FAR_Z_LOW`` to ``FAR_Z_HIGH``) marks boxes on background;
* loss: a high per-image loss (robust z within its split) adds up to ``LOSS_BOOST`` of the gap
  to 1, in proportion to the score itself, so it only reorders suspects.

Scores: higher = more likely wrong, in [0, 1]; NaN = does not apply (missing on gt rows, the
three gt issues on pred rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from audit import boxes as B
from audit import constants as C
from audit import issues as I
from audit.frames import check_boxes, check_features, noisy_or, robust_z, xyxy
from audit.frames import linear_ramp as ramp
from audit.inconsistency import encloses_labels, group_member_evidence
from audit.neighbours import NeighbourEvidence, reference_evidence

BOX_ISSUES = I.MISTAKENNESS_ISSUES  # the four issues scored here (names: audit/issues.py)


@dataclass(frozen=True)
class MistakennessSummary:
    """What :func:`score_boxes` saw and flagged.

    Attributes:
        n_gt, n_pred: rows scored; n_<issue>: rows flagged; reference: which labelled boxes the
        kNN evidence compared against ("val-confirmed", "confirmed", "all-gt" or "none");
        n_reference: their number (after subsampling).
    """

    n_gt: int
    n_pred: int
    n_wrong_class: int
    n_bad_box: int
    n_spurious: int
    n_missing: int
    reference: str
    n_reference: int


def _max_by(index: NDArray, values: NDArray, n: int, mask: NDArray) -> tuple[NDArray, NDArray]:
    """Per target row: max of ``values`` over masked pairs and the pair achieving it (-1)."""
    best = np.zeros(n)
    arg = np.full(n, -1, np.int64)
    sel = np.flatnonzero(mask)
    if sel.size:
        order = sel[np.lexsort((-values[sel], index[sel]))]
        first = order[np.r_[True, index[order][1:] != index[order][:-1]]]
        best[index[first]], arg[index[first]] = values[first], first
    return best, arg


def _loss_boost(score: NDArray, z: NDArray, *, boost: float, z_high: float) -> NDArray:
    """``s + (1 - s) * boost * ramp(z, 0, z_high) * s``: a high-loss image lifts its suspects."""
    lam = boost * np.nan_to_num(ramp(z, 0.0, z_high))
    return score + (1.0 - score) * lam * score


def score_boxes(
    boxes: pd.DataFrame,
    box_features: NDArray | None = None,
    samples: pd.DataFrame | None = None,
    *,
    match_iou: float = C.MATCH_IOU,
    localization_iou: float = C.LOCALIZATION_IOU,
    size_bins: int = C.SIZE_BINS,
    size_iou_quantile: float = C.SIZE_IOU_QUANTILE,
    near_iou: float = C.NEAR_IOU,
    k: int = C.KNN_K,
    reference_max: int = C.KNN_REFERENCE_MAX,
    reference_per_class: int = C.KNN_REFERENCE_PER_CLASS,
    reference_conf: float = C.REFERENCE_CONF,
    atypical_weight: float = C.ATYPICAL_WEIGHT,
    gt_knn_weight: float = C.GT_KNN_WEIGHT,
    class_knn_weight: float = C.CLASS_KNN_WEIGHT,
    loss_boost: float = C.LOSS_BOOST,
    look_weight: float = C.MISSING_LOOK_WEIGHT,
    look_conf: float = C.MISSING_LOOK_CONF,
    thresholds: dict[str, float] | None = None,
    missing_flag_conf: float = C.MISSING_FLAG_CONF,
    seed: int = C.SEED,
) -> tuple[pd.DataFrame, MistakennessSummary]:
    """Score every box for the four box-level label errors.

    Formulas (``q_same`` / ``q_other``: highest confidence of a same-class / other-class
    prediction with IoU >= ``match_iou``; ``far``: kNN distance evidence; ``p_own`` / ``p_other``:
    neighbour label shares):

    * wrong_class (gt) = noisyor(max(0, q_other - q_same), w_c p_other (1 - p_own) (1 - far)),
      with ``w_c = class_knn_weight``; ``suggested_label`` = that other class. A prediction
      that overlaps a label of its own class at least as well as this box counts for that label,
      not in ``q_other`` (two overlapping objects of different classes).
    * bad_box (gt) = noisyor(c_m * ramp(loc_s - IoU_m over loc_iou - match_iou) * (1 - fade),
      product of the two best same-class predictions lying inside it (a merged box),
      ``atypical_weight`` * w * far), with ``w = gt_knn_weight`` and ``m`` the same-class
      prediction greedily matched at ``near_iou``. The localisation evidence is full at IoU
      ``match_iou``; below it, when ``m`` also overlaps another label (IoU ``near_iou`` or more),
      it fades to 0 at ``near_iou``: such a prediction is more often that neighbour seen again
      than this object seen elsewhere. ``loc_s`` is ``loc_iou`` lowered, for labels of a size
      class the model localises loosely, to that class's ``size_iou_quantile`` of confident
      matches' IoU (``size_bins`` log-area classes; :func:`size_expected_iou`).
    * spurious (gt) = noisyor((1 - support) ((1 - w) + w (0.3 + 0.7 far)), w far), support =
      max over predictions of conf * min(1, IoU / match_iou).
    * missing (pred) = (1 - cover) * noisyor(conf, look_weight * look * min(1, conf / look_conf)),
      cover = max(min(1, IoU / match_iou) over gt, 1 if inside a larger same-class gt box, 1 if
      it encloses several same-class gt boxes: the model drawing a group over labelled objects),
      look = (1 - far) * p_own: the prediction looks like labelled objects of its class.

    Args:
        boxes: boxes frame (ARCHITECTURE.md), absolute ``xyxy``, gt and pred rows.
        box_features: ``(n_boxes, F)`` per-box features aligned with ``boxes``, NaN rows where
            missing; None: model evidence only.
        samples: samples frame (``split``; ``loss_cls``, ``loss_box`` for the loss boost); None:
            no split preference, no loss boost.
        match_iou, localization_iou, near_iou: IoU thresholds (see constants).
        size_bins, size_iou_quantile: the bad-box threshold per size class (see above).
        k, reference_max, reference_per_class, reference_conf: kNN settings (the reference set
            is subsampled to at most ``reference_per_class`` boxes per class, ``reference_max``
            in all).
        atypical_weight, gt_knn_weight, class_knn_weight, loss_boost, look_weight, look_conf:
            evidence weights.
        thresholds: flag threshold per issue (default the ``*_SCORE`` constants).
        missing_flag_conf: a prediction is flagged missing only at this confidence or more
            (its score still ranks it below that).
        seed: seed of the reference subsample.

    Returns:
        ``(frame indexed by box_id, summary)``; the frame has ``sample_id``, ``source``,
        ``label``, ``<issue>_score``, ``is_<issue>_issue`` and ``suggested_label`` (gt rows with
        some wrong-class evidence, else None).

    Example:
        >>> scores, summary = score_boxes(boxes, box_features, samples)  # doctest: +SKIP
        >>> scores.sort_values("wrong_class_score", ascending=False).head()  # doctest: +SKIP
    """
    check_boxes(boxes)
    check_features(box_features, len(boxes))
    if boxes["box_id"].duplicated().any():
        dup = boxes.loc[boxes["box_id"].duplicated(), "box_id"].iloc[0]
        raise ValueError(f"boxes: box_id {dup!r} appears more than once")
    thr = {i: C.FLAG_SCORES[i] for i in BOX_ISSUES} | (thresholds or {})
    ctx = _Context.build(boxes, samples, match_iou)
    gt_split = None
    if samples is not None and "split" in samples.columns:
        gt_split = samples["split"].astype(str).reindex(ctx.sample_ids).to_numpy()[ctx.g_code]
    ref_name, n_ref, knn_gt, knn_pred, far_gt, far_pred = reference_evidence(
        box_features, ctx.is_gt, ctx.g_code, ctx.g_lab, ctx.p_code, ctx.p_lab,
        confirm_conf=ctx.q_same, gt_split=gt_split, pred_query=ctx.cover < 1.0, k=k,
        reference_max=reference_max, reference_per_class=reference_per_class,
        reference_conf=reference_conf, seed=seed)
    w = float(np.clip(gt_knn_weight, 0.0, 1.0))
    wrong, suggested = _wrong_class(ctx, knn_gt, far_gt,
                                    knn_weight=float(np.clip(class_knn_weight, 0.0, 1.0)))
    bad = _bad_box(ctx, far_gt, match_iou=match_iou, near_iou=near_iou,
                   localization_iou=localization_iou, atypical_weight=atypical_weight * w,
                   size_bins=size_bins, size_iou_quantile=size_iou_quantile)
    spurious = noisy_or((1.0 - ctx.support) * ((1.0 - w) + w * (0.3 + 0.7 * far_gt)),
                        w * far_gt)
    missing = _missing(ctx, knn_pred, far_pred, look_weight=look_weight, look_conf=look_conf)
    if samples is not None and loss_boost > 0:
        z_cls, z_box = _loss_z(samples, ctx.sample_ids)
        kw = {"boost": loss_boost, "z_high": C.LOSS_Z_HIGH}
        wrong = _loss_boost(wrong, z_cls[ctx.g_code], **kw)
        spurious = _loss_boost(spurious, z_cls[ctx.g_code], **kw)
        bad = _loss_boost(bad, z_box[ctx.g_code], **kw)
        missing = _loss_boost(missing, z_cls[ctx.p_code], **kw)
    scores = {"wrong_class": wrong, "bad_box": bad, "spurious": spurious, "missing": missing}
    frame = _assemble(boxes, ctx, scores, suggested, thr, missing_flag_conf)
    dist = np.full(len(boxes), np.nan)
    if knn_gt.distance.size:
        dist[ctx.is_gt] = knn_gt.distance
    if knn_pred.distance.size:
        dist[~ctx.is_gt] = knn_pred.distance
    frame["knn_distance"] = dist  # mean cosine distance to labelled look-alikes (NaN: none)
    far = np.zeros(len(boxes))
    far[ctx.is_gt], far[~ctx.is_gt] = far_gt, far_pred
    frame["far_evidence"] = far  # "looks unlike any labelled object", in [0, 1]
    summary = MistakennessSummary(
        n_gt=int(ctx.is_gt.sum()), n_pred=int((~ctx.is_gt).sum()),
        **{f"n_{i}": int(frame[f"is_{i}_issue"].sum()) for i in BOX_ISSUES},
        reference=ref_name, n_reference=n_ref)
    return frame, summary


@dataclass(frozen=True)
class _Context:
    """Arrays shared by the evidence functions (gt rows ``g``, pred rows ``p``)."""

    is_gt: NDArray
    sample_ids: pd.Index
    g_code: NDArray
    p_code: NDArray
    g_lab: NDArray
    p_lab: NDArray
    label_names: pd.Index
    conf: NDArray
    pairs: B.BoxPairs
    same: NDArray
    area_ratio: NDArray
    q_same: NDArray
    q_other: NDArray
    other_pair: NDArray
    support: NDArray
    cover: NDArray
    g_area: NDArray

    @classmethod
    def build(cls, boxes: pd.DataFrame, samples: pd.DataFrame | None, match_iou: float):
        """Codes, overlap pairs and the model-evidence maxima."""
        is_gt = boxes["source"].to_numpy() == "gt"
        codes, sample_ids = pd.factorize(boxes["sample_id"].astype(str))
        if samples is not None:
            unknown = ~pd.Index(sample_ids).isin(samples.index.astype(str))
            if unknown.any():
                raise ValueError(f"boxes: sample_id {sample_ids[unknown][0]!r} is not in samples")
        labels, names = pd.factorize(boxes["label"].astype(str), sort=True)
        g_xy, p_xy = xyxy(boxes[is_gt]), xyxy(boxes[~is_gt])
        conf = np.clip(np.nan_to_num(boxes.loc[~is_gt, "confidence"].to_numpy(float)), 0, 1)
        g_code, p_code, g_lab, p_lab = codes[is_gt], codes[~is_gt], labels[is_gt], labels[~is_gt]
        pairs = B.overlapping_pairs(g_xy, g_code, p_xy, p_code)
        gi, pj = pairs.ia, pairs.ib
        same = g_lab[gi] == p_lab[pj]
        pc = conf[pj]
        hit = pairs.iou >= match_iou
        n_g = len(g_xy)
        q_same, _ = _max_by(gi, pc, n_g, hit & same)
        # an other-class prediction that overlaps a label of its own class at least as well is
        # that label's object seen again (two overlapping objects), not evidence against this one
        own_iou, _ = _max_by(pj, pairs.iou, len(p_xy), same)
        explained = own_iou[pj] >= pairs.iou if pj.size else np.zeros(0, bool)
        q_other, other_pair = _max_by(gi, pc, n_g, hit & ~same & ~explained)
        support, _ = _max_by(gi, pc * np.minimum(1.0, pairs.iou / match_iou), n_g, gi >= 0)
        area_ratio = B.box_area(p_xy)[pj] / np.maximum(B.box_area(g_xy)[gi], 1e-12)
        cover_iou = np.minimum(1.0, pairs.iou / match_iou)
        inside = same & (pairs.contain_b_in_a >= C.GROUP_CONTAIN) & (
            area_ratio <= C.GROUP_MEMBER_MAX_AREA)
        cover, _ = _max_by(pj, np.where(inside, 1.0, cover_iou), len(p_xy), pj >= 0)
        cover = np.where(encloses_labels(pairs, same, len(p_xy)), 1.0, cover)
        return cls(is_gt, pd.Index(sample_ids), g_code, p_code, g_lab, p_lab, names, conf, pairs,
                   same, area_ratio, q_same, q_other, other_pair, support, cover, B.box_area(g_xy))


def _wrong_class(ctx: _Context, knn: NeighbourEvidence, far: NDArray, *, knn_weight: float):
    """Wrong-class score and suggested label per gt row."""
    e_model = np.clip(ctx.q_other - ctx.q_same, 0.0, 1.0)  # margin of the other class
    n_g = len(ctx.g_code)
    if knn.distance.size:
        e_knn = knn_weight * np.nan_to_num(knn.share_other * (1.0 - knn.share_own) * (1.0 - far))
        knn_label = knn.top_other
    else:
        e_knn, knn_label = np.zeros(n_g), np.full(n_g, -1)
    model_label = np.where(ctx.other_pair >= 0,
                           ctx.p_lab[ctx.pairs.ib[np.maximum(ctx.other_pair, 0)]]
                           if ctx.pairs.ib.size else -1, -1)
    code = np.where((e_model >= e_knn) & (model_label >= 0), model_label, knn_label)
    code = np.where(code >= 0, code, model_label)
    names = np.asarray(ctx.label_names, dtype=object)
    suggested = np.where(code >= 0, names[np.maximum(code, 0)] if names.size else None, None)
    return noisy_or(e_model, e_knn), suggested


def _bad_box(ctx: _Context, far: NDArray, *, match_iou, near_iou, localization_iou,
             atypical_weight, size_bins, size_iou_quantile):
    """Bad-box score per gt row."""
    gi, pj, iou = ctx.pairs.ia, ctx.pairs.ib, ctx.pairs.iou
    same = ctx.same
    match = B.greedy_match_pairs(gi[same], pj[same], iou[same], ctx.conf, len(ctx.g_code),
                                 iou_threshold=near_iou)
    m = match.gt_to_pred
    m_iou = np.zeros(len(m))
    m_iou[m >= 0] = match.pred_iou[m[m >= 0]]
    m_conf = np.where(m >= 0, ctx.conf[np.maximum(m, 0)] if ctx.conf.size else 0.0, 0.0)
    # IoU of the matched prediction with the best other labelled box (any class)
    other_p, _ = _max_by(pj, iou, len(ctx.conf), gi != match.pred_to_gt[pj])
    other = np.where(m >= 0, other_p[np.maximum(m, 0)] if other_p.size else 0.0, 0.0)
    peak = min(match_iou, localization_iou)
    fade = ramp(other, 0.0, near_iou) * (1.0 - ramp(m_iou - near_iou, 0.0, peak - near_iou))
    expected = size_expected_iou(m_iou, m_conf, ctx.g_area, localization_iou, n_bins=size_bins,
                                 quantile=size_iou_quantile)
    shortfall = ramp(expected - m_iou, 0.0, localization_iou - peak) * (1.0 - fade)
    e_model = np.where(m >= 0, m_conf * shortfall, 0.0)
    e_group, _ = group_member_evidence(ctx.pairs, same, ctx.conf[pj], ctx.area_ratio,
                                       len(ctx.g_code))
    return noisy_or(e_model, e_group, atypical_weight * far)


def size_expected_iou(m_iou: NDArray, m_conf: NDArray, area: NDArray, localization_iou: float, *,
                      n_bins: int = C.SIZE_BINS, quantile: float = C.SIZE_IOU_QUANTILE,
                      min_conf: float = C.REFERENCE_CONF,
                      min_per_bin: int = C.SIZE_MIN_MATCHES) -> NDArray:
    """IoU below which a label's matched prediction is a localisation suspect, per gt box.

    ``localization_iou``, lowered for boxes whose size class the model localises loosely: the
    gt boxes are binned by area (quantiles of log area, up to ``n_bins`` with at least
    ``min_per_bin`` matches of confidence ``min_conf`` or more each) and a bin's threshold is the
    ``quantile`` of its confident matches' IoU where that is lower.
    A 2-pixel miss costs a 12-pixel box IoU 0.7: on the demo world the smallest sixth of the
    labels matched at median IoU 0.71 (quartile 0.53), the others at 0.84-0.95.

    Example:
        >>> iou = np.r_[np.full(40, 0.6), np.full(40, 0.9)]
        >>> out = size_expected_iou(iou, np.ones(80), np.r_[np.ones(40), np.full(40, 100.0)], 0.75)
        >>> out[[0, -1]].round(2).tolist()
        [0.6, 0.75]
    """
    out = np.full(len(area), float(localization_iou))
    good = (m_conf >= min_conf) & (m_iou > 0) & (area > 0)
    n_bins = int(min(n_bins, good.sum() // max(min_per_bin, 1)))
    if n_bins < 2:
        return out
    log_area = np.log(np.maximum(area, 1e-12))
    edges = np.quantile(log_area[good], np.linspace(0, 1, n_bins + 1)[1:-1])
    bins = np.searchsorted(edges, log_area, side="right")
    for b in range(n_bins):
        ref = m_iou[good & (bins == b)]
        if ref.size:
            out[bins == b] = min(localization_iou, float(np.quantile(ref, quantile)))
    return out


def _missing(ctx: _Context, knn: NeighbourEvidence, far: NDArray, *, look_weight, look_conf):
    """Missing-label score per pred row."""
    if knn.distance.size:
        look = np.nan_to_num((1.0 - far) * knn.share_own)
    else:
        look = np.zeros(len(ctx.p_code))
    e_look = look_weight * look * np.minimum(1.0, ctx.conf / max(look_conf, 1e-12))
    return (1.0 - ctx.cover) * noisy_or(ctx.conf, e_look)


def _loss_z(samples: pd.DataFrame, sample_ids: pd.Index) -> tuple[NDArray, NDArray]:
    """Robust z of ``loss_cls`` and ``loss_box`` within split, in ``sample_ids`` order."""
    s = samples.copy()
    s.index = s.index.astype(str)
    s = s.reindex(sample_ids)
    split = pd.factorize(s["split"].astype(str))[0] if "split" in s else None
    out = []
    for col in ("loss_cls", "loss_box"):
        x = s[col].to_numpy(float) if col in s else np.full(len(s), np.nan)
        out.append(robust_z(x, split))
    return out[0], out[1]


def is_flagged(issue: str, score: ArrayLike, confidence: ArrayLike | None = None, *,
               threshold: float | None = None,
               missing_flag_conf: float = C.MISSING_FLAG_CONF) -> NDArray[np.bool_]:
    """Whether scores flag boxes for ``issue``: the score reaches ``threshold`` (default
    ``C.FLAG_SCORES[issue]``; NaN never does) and, for ``missing``, the prediction's
    ``confidence`` reaches ``missing_flag_conf``. The one flag rule of the scorer, the triage
    page and the relabel list.

    Example:
        >>> is_flagged("missing", [0.8, 0.8], [0.6, 0.1]).tolist()
        [True, False]
    """
    limit = C.FLAG_SCORES[issue] if threshold is None else threshold
    out = np.nan_to_num(np.asarray(score, float), nan=-1.0) >= limit
    if issue == "missing" and confidence is not None:
        out &= np.nan_to_num(np.asarray(confidence, float), nan=0.0) >= missing_flag_conf
    return out


def _assemble(boxes, ctx: _Context, scores: dict, suggested, thr,
              missing_flag_conf: float) -> pd.DataFrame:
    """Long result frame indexed by box id."""
    n = len(boxes)
    conf = np.full(n, np.nan)
    conf[~ctx.is_gt] = ctx.conf
    frame = pd.DataFrame(
        {"sample_id": boxes["sample_id"].astype(str).to_numpy(),
         "source": boxes["source"].to_numpy(), "label": boxes["label"].astype(str).to_numpy()},
        index=pd.Index(boxes["box_id"].astype(str).to_numpy(), name="box_id"))
    for issue in BOX_ISSUES:
        col = np.full(n, np.nan)
        rows = ~ctx.is_gt if issue == "missing" else ctx.is_gt
        col[rows] = np.clip(scores[issue], 0.0, 1.0)
        frame[f"{issue}_score"] = col
        frame[f"is_{issue}_issue"] = is_flagged(issue, col, conf, threshold=thr[issue],
                                                missing_flag_conf=missing_flag_conf)
    sug = np.full(n, None, dtype=object)
    sug[ctx.is_gt] = suggested
    frame["suggested_label"] = pd.Series(sug, index=frame.index, dtype=object)  # keeps None
    return frame
