"""Scores on one scale: each box issue's evidence turned into the probability that the label is
wrong, calibrated on the user's own data by planting decoy errors in it (pure).

The raw evidence of :func:`audit.mistakenness.score_boxes` ranks boxes within one issue, but what
a value means depends on the dataset, the class and the model: with a detector that finds 98 % of
the crowns, a label no prediction supports is most likely spurious; with one that finds half of
them it is most likely a tree the detector missed. No fixed threshold serves both, and a list
sorted across issues puts whichever issue's scale runs highest first.

So the auditor asks the data. It copies some images and plants in each copy a few errors of
known kind, by the definitions of the five box issues (a label moved off its object, a label
given another class, a label on background, a label removed, two neighbours drawn as one),
scores the copies with the very same scorer and settings, and reads, per issue and class, how
the evidence of the planted errors differs from that of the copies' untouched labels (mostly
right). A weighted monotone
(isotonic) fit shared by the classes, with a log-odds shift per class, then gives
``P(wrong | evidence)`` at a prior error rate, monotone in the evidence, so the order of boxes
within one issue and class never changes.

* a class whose errors the model cannot tell from its right labels gets probabilities near the
  prior: its flags go quiet instead of filling the queue with the model's own misses;
* one threshold (``FLAG_PROBABILITY``, 0.3: worth a reviewer's look) flags every issue, and one
  sorted list puts the likeliest errors first whatever their type;
* the fit's AUROC (planted errors against untouched labels) says how findable each issue is in
  this dataset with this model, per class (:class:`CalibrationSummary`).

Ties (evidence saturated at 1) are broken by the evidence's own order and then by how unlike
labelled objects the box looks (``knn_distance``), never by row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from audit import constants as C
from audit.boxes import box_area
from audit.decoys import origin_id, plant_decoys
from audit.frames import robust_z, xyxy
from audit.inconsistency import score_inconsistency
from audit.mistakenness import is_flagged, score_boxes
from audit.neighbours import background_likeness, l2_normalise

CALIBRATED_ISSUES = {"spurious": "spawn", "bad_box": "shift", "wrong_class": "flip",
                     "missing": "drop", "group_box": "merge"}  # issue -> the decoy that plants it
# pieces of evidence an issue's calibration weighs itself, beside its combined evidence: a
# spurious label is one no prediction supports, one that looks unlike any labelled object, or one
# that looks more like background than like labelled objects (:func:`background_evidence`);
# which counts more depends on the model (a weak one misses real objects, which look unlike the
# labelled ones but not like background)
# a group box (two objects drawn as one) is larger than its class's labels use to be
EVIDENCE_COLUMNS = {"spurious": ("far_evidence", "background_evidence"),
                    "group_box": ("size_evidence",)}
# decoys per fitted column below which an issue's extra evidence is left out (a logistic fit on a
# handful of decoys weighs the columns by chance; the one-column isotonic fit is safer)
MIN_DECOYS_PER_COLUMN = 15
_EPS = 1e-4  # evidence is clipped to [_EPS, 1 - _EPS] before its logit
TIE_WEIGHT = 1e-6  # weight of the evidence's rank in the calibrated score (breaks ties only)


@dataclass(frozen=True)
class CalibrationSummary:
    """Per issue and class: decoys planted (``n_decoys``), untouched rows (``n_clean``), the
    prior, the class's log-odds ``offset`` from the shared fit, and ``auroc`` of decoys against
    untouched rows (0.5: this issue cannot be told apart here, with this model)."""

    table: pd.DataFrame


def _logit(x: NDArray) -> NDArray:
    """Logit of evidence clipped to ``[_EPS, 1 - _EPS]``."""
    x = np.clip(np.asarray(x, float), _EPS, 1 - _EPS)
    return np.log(x / (1 - x))


def _weights(n_pos: int, n_neg: int, prior: float) -> tuple[float, float]:
    """Per-row weights of decoys and untouched rows so the groups weigh ``prior : 1 - prior``."""
    return prior / max(n_pos, 1), (1 - prior) / max(n_neg, 1)


def _pooled_fit(pos: NDArray, neg: NDArray):
    """``s -> log f_decoy(s) / f_untouched(s)`` over every class: a step function, monotone
    non-decreasing, from the plateaus of a balanced isotonic fit of decoys against untouched rows
    (no shape assumed), each plateau's ratio read from its counts with half a pseudo-row on each
    side (never 0 nor infinite where one side is absent); 0 everywhere (no evidence) when the
    decoys do not score above the untouched rows."""
    from sklearn.isotonic import IsotonicRegression

    if not len(pos) or not len(neg) or _auroc(pos, neg) <= 0.5:
        return lambda x: np.zeros(len(x))
    x = np.r_[pos, neg]
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    wp, wn = _weights(len(pos), len(neg), 0.5)
    w = np.r_[np.full(len(pos), wp), np.full(len(neg), wn)]
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0).fit(x, y, sample_weight=w).predict(x)
    order = np.argsort(x, kind="stable")
    xs, fs, ys = x[order], fitted[order], y[order]
    starts = np.r_[0, np.flatnonzero(np.diff(fs) > 1e-12) + 1]
    a = np.add.reduceat(ys, starts)
    b = np.add.reduceat(1 - ys, starts)
    ratio = np.log((a + 0.5) / (len(pos) + 0.5)) - np.log((b + 0.5) / (len(neg) + 0.5))
    ratio = np.maximum.accumulate(ratio)
    edges = xs[starts]

    def log_ratio(values: NDArray) -> NDArray:
        at = np.searchsorted(edges, np.asarray(values, float), side="right") - 1
        return ratio[np.clip(at, 0, len(ratio) - 1)]

    return log_ratio


def _evidence_fit(pos: NDArray, neg: NDArray):
    """``X -> log f_decoy(X) / f_untouched(X)`` from a balanced logistic fit on several evidence
    columns (``X`` ``(n, d)``), each required to weigh in the direction of "wrong": a column
    whose fitted weight is negative is dropped and the fit redone (the data decides how much
    each piece of evidence counts on this dataset, never that less evidence means more error).
    None when no column separates the decoys from the untouched rows."""
    from sklearn.linear_model import LogisticRegression

    cols = list(range(pos.shape[1]))
    while cols:
        x = np.r_[pos[:, cols], neg[:, cols]]
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        wp, wn = _weights(len(pos), len(neg), 0.5)
        w = np.r_[np.full(len(pos), wp), np.full(len(neg), wn)] * len(y)
        model = LogisticRegression(C=1.0).fit(x, y, sample_weight=w)
        coef = model.coef_[0]
        if (coef >= 0).all():
            if not (coef > 0).any():
                return None
            keep, b = np.array(cols), float(model.intercept_[0])
            return lambda values: np.asarray(values, float)[:, keep] @ coef + b
        cols = [c for c, v in zip(cols, coef, strict=True) if v > 0]
    return None


def _class_offset(base_pos: NDArray, base_neg: NDArray, prior: float, *,
                  shrink: float) -> float:
    """Log-odds shift of one class against the pooled fit: the single intercept ``d`` that
    maximises the class's weighted likelihood of ``sigmoid(base + d)`` (decoys 1, untouched 0,
    weighted ``prior : 1 - prior``) with an L2 penalty ``shrink * d^2 / 2`` toward 0, kept only
    where it stands three standard errors from 0 (a class is read on its own terms only when its
    own rows say it differs; else the shared fit keeps the classes' order). Newton steps."""
    if not len(base_pos) or not len(base_neg):
        return 0.0
    wp, wn = _weights(len(base_pos), len(base_neg), prior)
    o = np.r_[base_pos, base_neg]
    y = np.r_[np.ones(len(base_pos)), np.zeros(len(base_neg))]
    w = np.r_[np.full(len(base_pos), wp), np.full(len(base_neg), wn)] * len(o)
    d, hess = 0.0, 1.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(o + d)))
        grad = float(np.sum(w * (p - y))) + shrink * d
        hess = float(np.sum(w * p * (1 - p))) + shrink
        step = float(np.clip(grad / max(hess, 1e-12), -2.0, 2.0))
        d -= step
        if abs(step) < 1e-6:
            break
    return float(np.clip(d, -10.0, 10.0)) if abs(d) * np.sqrt(max(hess, 1e-12)) > 3 else 0.0


def _auroc(pos: NDArray, neg: NDArray) -> float:
    """AUROC of decoys above untouched rows (ties count half)."""
    if not len(pos) or not len(neg):
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[pos, neg])[: len(pos)]
    return float((ranks.sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def calibrate_scores(raw: pd.DataFrame, decoy_raw: pd.DataFrame, truth: pd.Series, *,
                     prior: float = C.PRIOR_ERROR_RATE, min_fit: int = C.CALIBRATION_MIN_FIT,
                     ) -> tuple[pd.DataFrame, CalibrationSummary]:
    """Map each calibrated issue's evidence to ``P(wrong | evidence)``.

    Per issue, a monotone (isotonic) fit over every class gives the likelihood ratio of the
    evidence, decoys against untouched rows; each class then scales it by a penalised
    one-parameter fit on its own decoys and untouched rows (the penalty weighing as much as
    ``min_fit`` rows), so a class the model handles worse is read on its own terms while a class
    with few labels keeps the shared fit. The untouched rows hold real errors at the prior rate,
    so ``P(wrong | s) = prior * f_decoy(s) / f_untouched(s)``, capped at 1.

    Args:
        raw: the scorer's frame on the real data (indexed by box id; ``label``, ``source``,
            ``<issue>_score`` evidence, optional ``knn_distance``).
        decoy_raw: the same scorer's frame on :func:`plant_decoys`' copies.
        truth: decoy box id -> the issue it plants.
        prior: share of labels wrong for each issue before any evidence (for ``missing``:
            expected missing labels, ``prior`` per label of the class, over its predictions).
        min_fit: the weight of the shrinkage toward the shared fit, in rows.

    Returns:
        ``(frame, summary)``: ``raw`` with each calibrated issue's ``<issue>_score`` replaced by
        the probability (raw order kept within a class; ties broken by evidence, then by
        ``knn_distance``) and the evidence kept as ``<issue>_evidence``.
    """
    out = raw.copy()
    rows = []
    knn = _knn_rank(raw)
    labels = raw["label"].astype(str).to_numpy()
    for issue in CALIBRATED_ISSUES:
        col = f"{issue}_score"
        if col not in raw:
            continue
        ev = raw[col].to_numpy(float)
        out[f"{issue}_evidence"] = ev
        dec = decoy_raw[decoy_raw[col].notna()]
        planted = dec.index.isin(truth.index[truth == issue])
        pos_all, neg_all = dec.loc[planted], dec.loc[~planted & ~dec.index.isin(truth.index)]
        lr_pos, lr_neg, lr_raw = _log_ratios(issue, col, pos_all, neg_all, raw)
        pos_lab = pos_all["label"].astype(str).to_numpy()
        neg_lab = neg_all["label"].astype(str).to_numpy()
        new, lr_total = np.full(len(raw), np.nan), np.full(len(raw), np.nan)
        for label in np.unique(labels[np.isfinite(ev)]):
            pos, neg = lr_pos[pos_lab == label], lr_neg[neg_lab == label]
            p = _class_prior(issue, label, raw, prior)
            fitted = _class_offset(pos, neg, 0.5,
                                   shrink=float(min_fit) / max(len(pos) + len(neg), 1))
            mask = (labels == label) & np.isfinite(ev)
            # untouched rows hold real errors at the prior rate: f_u = p f_err + (1 - p) f_ok,
            # so P(wrong | s) = p f_err(s) / f_u(s), the decoys standing in for f_err
            lr_total[mask] = lr_raw[mask] + fitted + np.log(p)
            new[mask] = np.minimum(1.0, np.exp(lr_total[mask]))
            rows.append({"issue": issue, "label": label, "n_decoys": len(pos), "n_clean": len(neg),
                         "prior": p, "offset": fitted,
                         "auroc": _auroc(pos_all.loc[pos_lab == label, col].to_numpy(float),
                                         neg_all.loc[neg_lab == label, col].to_numpy(float))})
        out[col] = np.where(np.isfinite(new), (1 - TIE_WEIGHT) * new + TIE_WEIGHT * _tie_rank(
            lr_total, ev, knn), np.nan)
    table = pd.DataFrame(rows, columns=["issue", "label", "n_decoys", "n_clean", "prior",
                                        "offset", "auroc"])
    return out, CalibrationSummary(table)


def _columns(frame: pd.DataFrame, col: str, extra: tuple[str, ...]) -> NDArray:
    """``(n, 1 + len(extra))``: the logit of the combined evidence and each extra column."""
    return np.column_stack([_logit(frame[col].to_numpy(float)),
                            *(np.nan_to_num(frame[c].to_numpy(float)) for c in extra)])


def _log_ratios(issue: str, col: str, pos: pd.DataFrame, neg: pd.DataFrame,
                raw: pd.DataFrame) -> tuple[NDArray, NDArray, NDArray]:
    """``log f_decoy / f_untouched`` of the decoys, the untouched rows and the real rows: from
    the logistic fit on several pieces of evidence (``EVIDENCE_COLUMNS``) where the issue has
    them and one separates, else from the isotonic fit on the combined evidence."""
    extra = tuple(c for c in EVIDENCE_COLUMNS.get(issue, ())
                  if c in raw and c in pos and c in neg)
    if extra and len(pos) >= MIN_DECOYS_PER_COLUMN * (1 + len(extra)) and len(neg):
        fit = _evidence_fit(_columns(pos, col, extra), _columns(neg, col, extra))
        if fit is not None:
            return (fit(_columns(pos, col, extra)), fit(_columns(neg, col, extra)),
                    fit(_columns(raw, col, extra)))
    fit1 = _pooled_fit(pos[col].to_numpy(float), neg[col].to_numpy(float))
    return (fit1(pos[col].to_numpy(float)), fit1(neg[col].to_numpy(float)),
            fit1(raw[col].to_numpy(float)))


def _class_prior(issue: str, label: str | None, raw: pd.DataFrame, prior: float) -> float:
    """The prior of one row: ``prior`` for a label; for a prediction (missing), the expected
    missing labels of its class (``prior`` per label) over the class's scored predictions
    (every class when ``label`` is None)."""
    if issue != "missing":
        return prior
    lab = raw["label"].astype(str)
    mine = (lab == label).to_numpy() if label is not None else np.ones(len(raw), bool)
    n_gt = int(((raw["source"] == "gt").to_numpy() & mine).sum())
    n_pred = int(((raw["source"] == "pred").to_numpy() & mine
                  & raw["missing_score"].notna().to_numpy()).sum())
    return float(np.clip(prior * max(n_gt, 1) / max(n_pred, 1), 1e-4, 0.5))


def _knn_rank(raw: pd.DataFrame) -> NDArray:
    """How unlike labelled objects each box looks: its kNN distance (0 where unknown)."""
    if "knn_distance" not in raw:
        return np.zeros(len(raw))
    return np.nan_to_num(raw["knn_distance"].to_numpy(float))


def _tie_rank(lr: NDArray, evidence: NDArray, knn: NDArray) -> NDArray:
    """Rank in [0, 1] of each row by its log-likelihood ratio (with the prior), then its
    evidence, then its kNN distance: the order of rows whose probabilities tie (at the cap of
    1), so that the strongest evidence comes first, never the row order."""
    keys = (knn, np.nan_to_num(evidence), np.nan_to_num(lr, nan=-1e300))
    order = np.lexsort(keys)
    if not len(order):
        return np.zeros(0)
    step = np.zeros(len(order), bool)  # rows whose keys all equal share one rank
    for key in keys:
        step[1:] |= np.diff(key[order]) != 0
    rank = np.empty(len(lr))
    rank[order] = np.cumsum(step) / max(int(step.sum()), 1)
    return rank


def calibrated_box_scores(boxes: pd.DataFrame, box_features: NDArray | None,
                          samples: pd.DataFrame, raw: pd.DataFrame, *,
                          scorer_kwargs: dict | None = None,
                          prior: float = C.PRIOR_ERROR_RATE,
                          per_type: int = C.DECOYS_PER_TYPE,
                          max_per_image: int = C.DECOYS_MAX_PER_IMAGE,
                          shift_iou: tuple[float, float] = C.DECOY_SHIFT_IOU,
                          min_fit: int = C.CALIBRATION_MIN_FIT,
                          thresholds: dict[str, float] | None = None,
                          missing_flag_conf: float = C.MISSING_FLAG_CONF,
                          probes: tuple[pd.DataFrame, NDArray | None] | None = None,
                          inconsistency_kwargs: dict | None = None,
                          seed: int = C.SEED) -> tuple[pd.DataFrame, CalibrationSummary]:
    """Plant decoys, score them with :func:`audit.mistakenness.score_boxes` and the same
    ``scorer_kwargs``, calibrate ``raw`` (that scorer's frame on the real data) and flag each
    calibrated issue where its probability reaches its threshold (default ``FLAG_PROBABILITY``).
    Where ``raw`` holds ``group_box_score`` (:func:`audit.inconsistency.score_inconsistency`
    with ``inconsistency_kwargs``), the copies are scored by it too and group boxes calibrated.

    Returns:
        ``(frame, summary)`` as :func:`calibrate_scores`, with ``is_<issue>_issue`` recomputed.

    Example:
        >>> raw, _ = score_boxes(boxes, feats, samples)  # doctest: +SKIP
        >>> scores, summary = calibrated_box_scores(boxes, feats, samples, raw)  # doctest: +SKIP
    """
    world = plant_decoys(boxes, box_features, samples, per_type=per_type,
                         max_per_image=max_per_image, shift_iou=shift_iou, probes=probes,
                         seed=seed)
    if world.truth.empty:
        return raw.copy(), CalibrationSummary(pd.DataFrame())
    kwargs = dict(scorer_kwargs or {})
    decoy_raw, _ = score_boxes(world.boxes, world.features, world.samples, **kwargs)
    if "group_box_score" in raw:
        group = score_inconsistency(world.boxes, **(inconsistency_kwargs or {})).boxes
        decoy_raw = decoy_raw.join(group[["group_box_score"]], how="left")
    raw = raw.assign(size_evidence=size_evidence(raw, boxes))
    decoy_raw = decoy_raw.assign(size_evidence=size_evidence(decoy_raw, world.boxes))
    if probes is not None and probes[1] is not None and box_features is not None:
        k = int(kwargs.get("k", C.KNN_K))
        raw = raw.assign(background_evidence=background_evidence(
            raw, boxes, box_features, probes, k=k))
        decoy_raw = decoy_raw.assign(background_evidence=background_evidence(
            decoy_raw, world.boxes, world.features, probes, k=k))
    out, summary = calibrate_scores(raw, decoy_raw, world.truth, prior=prior, min_fit=min_fit)
    thr = dict.fromkeys(CALIBRATED_ISSUES, C.FLAG_PROBABILITY) | (thresholds or {})
    conf = boxes.set_index(boxes["box_id"].astype(str))["confidence"].reindex(
        out.index.astype(str)).to_numpy(float)
    for issue in CALIBRATED_ISSUES:
        if f"{issue}_score" in out:
            out[f"is_{issue}_issue"] = is_flagged(issue, out[f"{issue}_score"], conf,
                                                  threshold=thr[issue],
                                                  missing_flag_conf=missing_flag_conf)
    return out, summary


def background_evidence(frame: pd.DataFrame, boxes: pd.DataFrame, box_features: NDArray,
                        probes: tuple[pd.DataFrame, NDArray], *, k: int) -> NDArray:
    """Per row of ``frame`` (the scorer's output on ``boxes``): for labels,
    :func:`audit.neighbours.background_likeness` against the background ``probes`` of other
    images (a decoy copy and its original count as one image), NaN elsewhere."""
    probe_frame, probe_feat = probes
    gt = (boxes["source"] == "gt").to_numpy()
    ids = boxes.loc[gt, "box_id"].astype(str).to_numpy()
    images = pd.factorize(pd.concat([
        boxes.loc[gt, "sample_id"].astype(str).map(origin_id),
        probe_frame["sample_id"].astype(str)], ignore_index=True))[0]
    d_obj = frame["knn_distance"].reindex(ids).to_numpy(float) if "knn_distance" in frame \
        else np.full(len(ids), np.nan)
    like = background_likeness(l2_normalise(np.asarray(box_features)[gt]), images[: len(ids)],
                               l2_normalise(probe_feat), images[len(ids):], d_obj, k=k)
    out = pd.Series(np.nan, index=frame.index.astype(str))
    out.loc[ids] = like
    return out.to_numpy()


def size_evidence(frame: pd.DataFrame, boxes: pd.DataFrame) -> NDArray:
    """Per row of ``frame``: how much larger a label is than its class's labels use to be, as
    a robust z of its log area within the class (:func:`audit.frames.robust_z`; 0 for a class of
    one size), NaN for other rows. Data-derived: no size is assumed."""
    gt = boxes[(boxes["source"] == "gt").to_numpy()]
    area = np.log(np.maximum(box_area(xyxy(gt)), 1e-6))
    z = robust_z(area, pd.factorize(gt["label"].astype(str))[0])
    return pd.Series(z, index=gt["box_id"].astype(str).to_numpy()).reindex(
        frame.index.astype(str)).to_numpy(float)
