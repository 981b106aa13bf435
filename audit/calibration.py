"""Scores on one scale: each box issue's evidence turned into the probability that the label is
wrong, calibrated on the user's own data by planting decoy errors in it (pure).

The raw evidence of :func:`audit.mistakenness.score_boxes` ranks boxes within one issue, but what
a value means depends on the dataset, the class and the model: with a detector that finds 98 % of
the crowns, a label no prediction supports is most likely spurious; with one that finds half of
them it is most likely a tree the detector missed. No fixed threshold serves both, and a list
sorted across issues puts whichever issue's scale runs highest first.

So the auditor asks the data. It copies some images and plants in each copy a few errors of
known kind, by the definitions of the four box issues (a label moved off its object, a label
given another class, a label on background, a label removed), scores the copies with the very
same scorer and settings, and reads, per issue and class, how the evidence of the planted errors
differs from that of the copies' untouched labels (mostly right). A weighted monotone
(isotonic) fit shared by the classes, with a log-odds shift per class, then gives
``P(wrong | evidence)`` at a prior error rate, monotone in the evidence, so the order of boxes
within one issue and class never changes.

* a class whose errors the model cannot tell from its right labels gets probabilities near the
  prior: its flags go quiet instead of filling the queue with the model's own misses;
* one threshold (0.5: more likely wrong than right) flags every issue, and one sorted list puts
  the likeliest errors first whatever their type;
* the fit's AUROC (planted errors against untouched labels) says how findable each issue is in
  this dataset with this model, per class (:class:`CalibrationSummary`).

Ties (evidence saturated at 1) are broken by the evidence's own order and then by how unlike
labelled objects the box looks (``knn_distance``), never by row order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from audit import boxes as B
from audit import constants as C
from audit.frames import xyxy

CALIBRATED_ISSUES = {"spurious": "spawn", "bad_box": "shift", "wrong_class": "flip",
                     "missing": "drop"}  # issue -> the decoy error that plants it
# pieces of evidence an issue's calibration weighs itself, beside its combined evidence: a
# spurious label is one no prediction supports, or one that looks unlike any labelled object;
# which of the two counts more depends on the model (a weak one misses real objects)
EVIDENCE_COLUMNS = {"spurious": ("far_evidence",)}
ScoreFn = Callable[[pd.DataFrame, "NDArray | None", pd.DataFrame], pd.DataFrame]
_EPS = 1e-4  # evidence is clipped to [_EPS, 1 - _EPS] before its logit
TIE_WEIGHT = 1e-6  # weight of the raw evidence in the calibrated score (breaks ties only)


@dataclass(frozen=True)
class DecoyWorld:
    """Copies of some images with planted errors: inputs for the scorer, and which rows are
    planted (``truth``: ``box_id`` -> issue)."""

    boxes: pd.DataFrame
    features: NDArray | None
    samples: pd.DataFrame
    truth: pd.Series


@dataclass(frozen=True)
class CalibrationSummary:
    """Per issue and class: decoys planted (``n_decoys``), untouched rows (``n_clean``), the
    prior, the class's log-odds ``offset`` from the shared fit, and ``auroc`` of decoys against
    untouched rows (0.5: this issue cannot be told apart here, with this model)."""

    table: pd.DataFrame


def _shift(rng: np.random.Generator, box: NDArray, width: float, height: float,
           iou_range: tuple[float, float]) -> NDArray | None:
    """A moved and resized copy of ``box`` inside the image with IoU in ``iou_range``."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for _ in range(100):
        sx, sy = np.exp(rng.uniform(-0.5, 0.5, size=2))
        dx, dy = rng.uniform(-0.4, 0.4, size=2) * (w, h)
        nw, nh = w * sx, h * sy
        new = np.array([max(0.0, cx + dx - nw / 2), max(0.0, cy + dy - nh / 2),
                        min(width, cx + dx + nw / 2), min(height, cy + dy + nh / 2)])
        if new[2] - new[0] < 2 or new[3] - new[1] < 2:
            continue
        iou = float(B.iou_matrix(box[None], new[None])[0, 0])
        if iou_range[0] <= iou <= iou_range[1]:
            return new
    return None


def _spawn(rng: np.random.Generator, like: NDArray, taken: NDArray, width: float,
           height: float) -> NDArray | None:
    """A box sized like ``like`` (x0.8-1.25) where it covers at most 5 % of itself with any of
    ``taken`` (labels and confident predictions)."""
    for _ in range(50):
        s = float(rng.uniform(0.8, 1.25))
        w, h = (like[2] - like[0]) * s, (like[3] - like[1]) * s
        if w >= width or h >= height or w < 2 or h < 2:
            return None
        x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
        new = np.array([x, y, x + w, y + h])
        if not len(taken):
            return new
        if float(B.containment(taken, new[None])[:, 0].max()) <= 0.05:
            return new
    return None


def _background_preds(xy: NDArray, is_gt: NDArray, conf: NDArray,
                      feats: NDArray | None) -> NDArray:
    """Rows of faint predictions (below ``GROUP_MEMBER_CONF``) that have a feature and overlap
    no label (IoU < ``NEAR_IOU``): the model glimpsed something there and it is background by
    the labels. A decoy spawned there gets a real background feature, as a label drawn on
    background gets at ingest. Most confident first."""
    if feats is None:
        return np.zeros(0, np.int64)
    cand = np.flatnonzero(~is_gt & (np.nan_to_num(conf) < C.GROUP_MEMBER_CONF)
                          & np.isfinite(feats).all(axis=1))
    if cand.size and is_gt.any():
        near = B.iou_matrix(xy[cand], xy[is_gt]).max(axis=1) >= C.NEAR_IOU
        cand = cand[~near]
    return cand[np.argsort(np.nan_to_num(conf[cand]), kind="stable")]


def background_probes(gt_xyxy: NDArray, width: float, height: float, *,
                      k: int = C.PROBES_PER_IMAGE, seed: int | str = C.SEED) -> NDArray:
    """Up to ``k`` label-sized boxes on background (absolute px ``xyxy``), drawn at ingest so
    the model's features there can be stored: a spurious label is a box where no object is, and
    the calibration plants its decoys on these. Each is sized like one of the image's labels
    (x0.8-1.25; a tenth of the shorter side without labels) and covers at most 5 % of itself
    with any label. Deterministic per ``seed`` (e.g. the image's path).

    Example:
        >>> background_probes(np.array([[0, 0, 50, 50.0]]), 400, 300, k=2, seed="a").shape
        (2, 4)
    """
    gt_xyxy = np.asarray(gt_xyxy, float).reshape(-1, 4)
    if isinstance(seed, str):
        seed = int.from_bytes(seed.encode()[-16:].ljust(16, b"\0"), "little") % (2**63)
    rng = np.random.default_rng([int(seed), 11])
    side = 0.1 * min(width, height)
    sizes = gt_xyxy if len(gt_xyxy) else np.array([[0.0, 0.0, side, side]])
    out = []
    for _ in range(k):
        box = _spawn(rng, sizes[int(rng.integers(0, len(sizes)))], gt_xyxy, float(width),
                     float(height))
        if box is not None:
            out.append(box)
    return np.array(out, dtype=np.float64).reshape(-1, 4)


def _probe_sites(probes: tuple[pd.DataFrame, NDArray | None] | None,
                 ) -> dict[str, list[tuple[NDArray, NDArray | None]]]:
    """Sample id -> its probes' (xyxy box, feature or None)."""
    if probes is None or probes[0] is None or not len(probes[0]):
        return {}
    frame, feats = probes
    out: dict[str, list] = {}
    xy = xyxy(frame)
    for i, sid in enumerate(frame["sample_id"].astype(str)):
        f = None if feats is None or not np.isfinite(feats[i]).all() else feats[i]
        out.setdefault(sid, []).append((xy[i], f))
    return out


def _image_size(rows: pd.DataFrame, sample: pd.Series) -> tuple[float, float]:
    """Width and height of an image: the samples frame's, else the extent of its boxes."""
    w = float(sample.get("width", np.nan)) if "width" in sample else np.nan
    h = float(sample.get("height", np.nan)) if "height" in sample else np.nan
    if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0):
        w, h = float(rows["x2"].max()), float(rows["y2"].max())
    return w, h


def plant_decoys(boxes: pd.DataFrame, box_features: NDArray | None, samples: pd.DataFrame, *,
                 per_type: int = C.DECOYS_PER_TYPE, max_per_image: int = C.DECOYS_MAX_PER_IMAGE,
                 shift_iou: tuple[float, float] = C.DECOY_SHIFT_IOU,
                 probes: tuple[pd.DataFrame, NDArray | None] | None = None,
                 seed: int = C.SEED) -> DecoyWorld:
    """Copies of up to ``per_type`` labelled images, each with up to ``max_per_image`` planted
    errors of each kind (spawn, shift, flip, drop), never two on one label and never on more
    than half of an image's labels (the rest are the untouched rows the decoys are read
    against).

    Copies get ids ``<sample_id>~decoy`` (boxes ``<box_id>~decoy``), one copy per image, so the
    kNN evidence (which skips boxes of the query's own image) never meets a twin. A spawned box
    lies on one of the image's background ``probes`` (drawn at ingest by
    :func:`background_probes`, with the model's feature there); for a dataset without probes, on
    a faint prediction's box on background (that prediction leaves the copy), else anywhere
    empty without a feature. A shifted or flipped label keeps its object's feature.

    Returns:
        A :class:`DecoyWorld`; empty frames when no image holds a label.
    """
    rng = np.random.default_rng([seed, 7])
    gt_mask = (boxes["source"].to_numpy() == "gt")
    if "iscrowd" in boxes:
        gt_mask &= ~boxes["iscrowd"].fillna(False).astype(bool).to_numpy()
    labelled = pd.unique(boxes.loc[gt_mask, "sample_id"].astype(str))
    classes, counts = np.unique(boxes.loc[gt_mask, "label"].astype(str), return_counts=True)
    freq = counts / max(counts.sum(), 1)
    n_img = len(labelled)
    if n_img == 0:
        return DecoyWorld(boxes.iloc[:0].copy(), None if box_features is None else
                          np.asarray(box_features)[:0], samples.iloc[:0].copy(),
                          pd.Series(dtype=object))
    k = int(min(max_per_image, max(1, math.ceil(per_type / n_img))))
    chosen = rng.permutation(labelled)[: int(min(n_img, math.ceil(per_type / k)))]
    feats = None if box_features is None else np.asarray(box_features, dtype=np.float32)
    by_sample = boxes.groupby(boxes["sample_id"].astype(str)).indices
    sample_rows = samples.copy()
    sample_rows.index = sample_rows.index.astype(str)
    out_rows, out_feats, truth = [], [], {}
    conf_all = boxes["confidence"].to_numpy(float)
    probe_sites = _probe_sites(probes)
    for sid in chosen:
        idx = by_sample[sid]
        rows = boxes.iloc[idx].copy()
        rows["sample_id"] = f"{sid}~decoy"
        rows["box_id"] = rows["box_id"].astype(str) + "~decoy"
        f = None if feats is None else feats[idx].copy()
        width, height = _image_size(rows, sample_rows.loc[sid])
        is_gt = gt_mask[idx]
        xy = xyxy(rows)
        gts = rng.permutation(np.flatnonzero(is_gt))
        taken = xy[is_gt | (np.nan_to_num(conf_all[idx]) >= C.GROUP_MEMBER_CONF)]
        drop, keep_rows = [], np.ones(len(rows), bool)
        start = int(rng.integers(0, 3))  # which kind an image with few labels gets
        for j, g in enumerate(gts[: min(3 * k, len(gts) // 2)]):  # half stay untouched
            kind = ("shift", "flip", "drop")[(start + j) % 3]
            if kind == "shift":
                new = _shift(rng, xy[g], width, height, shift_iou)
                if new is not None:
                    rows.iloc[g, rows.columns.get_indexer(["x1", "y1", "x2", "y2"])] = new
                    truth[rows["box_id"].iloc[g]] = "bad_box"
            elif kind == "flip" and len(classes) > 1:
                own = rows["label"].iloc[g]
                p = np.where(classes == own, 0.0, freq)
                rows.iloc[g, rows.columns.get_loc("label")] = rng.choice(classes, p=p / p.sum())
                truth[rows["box_id"].iloc[g]] = "wrong_class"
            elif kind == "drop":
                keep_rows[g] = False
                drop.append(g)
        for g in drop:  # the dropped label's object is now the best prediction over it
            preds = np.flatnonzero((~is_gt) & (rows["label"].to_numpy() == rows["label"].iloc[g]))
            if preds.size:
                iou = B.iou_matrix(xy[g][None], xy[preds])[0]
                ok = preds[iou >= C.MATCH_IOU]
                if ok.size:
                    best = ok[np.argmax(np.nan_to_num(rows["confidence"].to_numpy(float)[ok]))]
                    truth[rows["box_id"].iloc[best]] = "missing"
        spawned, spawn_feats = [], []
        sites = probe_sites.get(sid, [])
        background = (_background_preds(xy, is_gt, rows["confidence"].to_numpy(float), f)
                      if probes is None else np.zeros(0, np.int64))
        # with features in play, a spawn decoy needs one: only probes (or faint predictions)
        n_spawn = k if f is None or (not sites and probes is None) else min(k, len(sites) or
                                                                             len(background))
        for j in range(n_spawn):
            if j < len(sites):  # on a probe, with the model's feature there
                new, feat = sites[j]
            elif j < len(background):  # on a faint prediction's box, with its feature
                b = background[j]
                new, feat = xy[b], f[b]
                keep_rows[b] = False  # nothing of the model's is left on it
            else:  # anywhere on background, no feature
                new = _spawn(rng, xy[gts[j % len(gts)]], taken, width, height)
                feat = None
            if new is not None:
                spawned.append({"sample_id": f"{sid}~decoy", "box_id": f"{sid}~spawn{j}",
                                "source": "gt", "x1": new[0], "y1": new[1], "x2": new[2],
                                "y2": new[3], "label": rng.choice(classes, p=freq),
                                "confidence": np.nan, "iscrowd": False})
                spawn_feats.append(feat)
                truth[f"{sid}~spawn{j}"] = "spurious"
        rows = rows[keep_rows]
        out_rows += [rows, pd.DataFrame(spawned, columns=list(rows.columns)
                                        if spawned else rows.columns)]
        if f is not None:
            nan = np.full(f.shape[1], np.nan, np.float32)
            out_feats += [f[keep_rows], np.array([nan if v is None else v for v in spawn_feats],
                                                 np.float32).reshape(-1, f.shape[1])]
    decoy_boxes = pd.concat(out_rows, ignore_index=True)
    decoy_boxes = decoy_boxes.astype({c: boxes[c].dtype for c in ("x1", "y1", "x2", "y2")})
    decoy_samples = sample_rows.loc[chosen].copy()
    decoy_samples.index = pd.Index([f"{s}~decoy" for s in chosen], name=samples.index.name)
    return DecoyWorld(decoy_boxes, None if feats is None else np.concatenate(out_feats),
                      decoy_samples, pd.Series(truth, dtype=object))


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
    tie = _tiebreak(raw)
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
        new = np.full(len(raw), np.nan)
        for label in np.unique(labels[np.isfinite(ev)]):
            pos, neg = lr_pos[pos_lab == label], lr_neg[neg_lab == label]
            p = _class_prior(issue, label, raw, prior)
            fitted = _class_offset(pos, neg, 0.5,
                                   shrink=float(min_fit) / max(len(pos) + len(neg), 1))
            mask = (labels == label) & np.isfinite(ev)
            # untouched rows hold real errors at the prior rate: f_u = p f_err + (1 - p) f_ok,
            # so P(wrong | s) = p f_err(s) / f_u(s), the decoys standing in for f_err
            new[mask] = np.minimum(1.0, p * np.exp(lr_raw[mask] + fitted))
            rows.append({"issue": issue, "label": label, "n_decoys": len(pos), "n_clean": len(neg),
                         "prior": p, "offset": fitted,
                         "auroc": _auroc(pos_all.loc[pos_lab == label, col].to_numpy(float),
                                         neg_all.loc[neg_lab == label, col].to_numpy(float))})
        out[col] = np.where(np.isfinite(new), (1 - 2 * TIE_WEIGHT) * new + TIE_WEIGHT * (
            np.nan_to_num(ev) + tie), np.nan)
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
    extra = EVIDENCE_COLUMNS.get(issue, ())
    if extra and all(c in raw and c in pos and c in neg for c in extra) and len(pos) and len(neg):
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


def _tiebreak(raw: pd.DataFrame) -> NDArray:
    """A tie-breaker in [0, 1e-3]: how unlike labelled objects the box looks (rank of its kNN
    distance), 0 where unknown."""
    if "knn_distance" not in raw:
        return np.zeros(len(raw))
    d = raw["knn_distance"].to_numpy(float)
    r = pd.Series(d).rank(pct=True).to_numpy()
    return 1e-3 * np.nan_to_num(r)


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
                          seed: int = C.SEED) -> tuple[pd.DataFrame, CalibrationSummary]:
    """Plant decoys, score them with :func:`audit.mistakenness.score_boxes` and the same
    ``scorer_kwargs``, calibrate ``raw`` (that scorer's frame on the real data) and flag each
    calibrated issue where its probability reaches its threshold (default ``FLAG_PROBABILITY``).

    Returns:
        ``(frame, summary)`` as :func:`calibrate_scores`, with ``is_<issue>_issue`` recomputed.

    Example:
        >>> raw, _ = score_boxes(boxes, feats, samples)  # doctest: +SKIP
        >>> scores, summary = calibrated_box_scores(boxes, feats, samples, raw)  # doctest: +SKIP
    """
    from audit.mistakenness import is_flagged, score_boxes

    world = plant_decoys(boxes, box_features, samples, per_type=per_type,
                         max_per_image=max_per_image, shift_iou=shift_iou, probes=probes,
                         seed=seed)
    if world.truth.empty:
        return raw.copy(), CalibrationSummary(pd.DataFrame())
    kwargs = dict(scorer_kwargs or {})
    decoy_raw, _ = score_boxes(world.boxes, world.features, world.samples, **kwargs)
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
