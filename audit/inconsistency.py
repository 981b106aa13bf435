"""Label inconsistency: group boxes vs one box per object, and partially labelled images.

A *group box* is a gt box that encloses several confident same-class predictions, each mostly
inside it and each clearly smaller (books labelled one box per shelf instead of one per book);
``iscrowd`` boxes are group boxes by declaration. An image is *partially labelled* when the model
confidently finds objects of a class that is labelled elsewhere in the same image, but no label
(and no group box) covers them. A class *mixes conventions* when both group boxes and individual
boxes make up a notable share of its boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from audit import boxes as B
from audit import constants as C
from audit.frames import check_boxes, iscrowd, xyxy
from audit.insight import Insight


@dataclass(frozen=True)
class InconsistencySummary:
    """Counts behind the inconsistency frames.

    Attributes:
        n_gt: gt boxes scored; n_group_boxes: gt boxes flagged as undeclared group boxes;
        n_crowd: declared ``iscrowd`` boxes; n_partial_samples: images flagged partially labelled;
        mixed_classes: classes labelled with both conventions.
    """

    n_gt: int
    n_group_boxes: int
    n_crowd: int
    n_partial_samples: int
    mixed_classes: tuple[str, ...]


@dataclass(frozen=True)
class InconsistencyResult:
    """All inconsistency outputs.

    Attributes:
        boxes: index ``box_id`` (gt rows): ``sample_id``, ``label``, ``group_box_score``
            (higher = more likely an undeclared group box; NaN for ``iscrowd``),
            ``is_group_box_issue``, ``is_group`` (group convention, declared or not),
            ``n_members``.
        samples: index ``sample_id``: ``partial_labels_score`` (NaN without gt),
            ``is_partial_labels_issue``, ``n_unlabelled``, ``partial_classes`` (tuple of labels).
        classes: per class summary, see :func:`class_conventions`.
        summary: an :class:`InconsistencySummary`.
    """

    boxes: pd.DataFrame
    samples: pd.DataFrame
    classes: pd.DataFrame
    summary: InconsistencySummary


def group_member_evidence(
    pairs: B.BoxPairs,
    same_class: NDArray[np.bool_],
    pred_conf: NDArray[np.float64],
    area_ratio: NDArray[np.float64],
    n_gt: int,
    *,
    contain: float = C.GROUP_CONTAIN,
    min_members: int = C.GROUP_MIN_MEMBERS,
    member_conf: float = C.GROUP_MEMBER_CONF,
    evidence_conf: float = C.GROUP_EVIDENCE_CONF,
    max_area: float = C.GROUP_MEMBER_MAX_AREA,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Group-box score of each gt box from its gt x pred overlap pairs.

    A member is a same-class prediction with at least ``contain`` of it inside the gt box and at
    most ``max_area`` of the box's area. The score is the product of the ``min_members`` highest
    member confidences (the chance that at least that many of them are real, if independent)
    over members with confidence >= ``evidence_conf``, 0 with fewer; ``n_members`` counts the
    confident ones (>= ``member_conf``), the objects a reviewer would see inside the box.

    Args:
        pairs: from :func:`audit.boxes.overlapping_pairs` with gt as ``a`` and predictions as
            ``b`` (``ia`` gt row, ``ib`` prediction row, ``contain_b_in_a``).
        same_class: ``(P,)`` whether the pair's labels agree.
        pred_conf: ``(P,)`` confidence of the pair's prediction.
        area_ratio: ``(P,)`` prediction area over gt area.
        n_gt: number of gt rows.

    Returns:
        ``(score (n_gt,) in [0, 1], n_members (n_gt,))``.
    """
    inside = same_class & (pairs.contain_b_in_a >= contain) & (area_ratio <= max_area)
    n_members = np.bincount(pairs.ia[inside & (pred_conf >= member_conf)],
                            minlength=n_gt).astype(np.int64)
    member = inside & (pred_conf >= min(evidence_conf, member_conf))
    g, conf = pairs.ia[member], pred_conf[member]
    n_evidence = np.bincount(g, minlength=n_gt)
    order = np.lexsort((-conf, g))
    g, conf = g[order], conf[order]
    first = np.searchsorted(g, g, side="left")
    top = (np.arange(g.size) - first) < max(min_members, 1)
    log_sum = np.bincount(g[top], weights=np.log(np.clip(conf[top], 1e-12, 1)), minlength=n_gt)
    score = np.where(n_evidence >= max(min_members, 1), np.exp(log_sum), 0.0)
    return score, n_members


def encloses_labels(pairs: B.BoxPairs, same_class: NDArray[np.bool_], n_pred: int, *,
                    contain: float = C.GROUP_CONTAIN,
                    min_members: int = C.GROUP_MIN_MEMBERS) -> NDArray[np.bool_]:
    """``(n_pred,)`` whether each prediction encloses at least ``min_members`` labels of its
    class (each at least ``contain`` inside it): the model drawing a group over individually
    labelled objects (a shelf of books), so none of them is an unlabelled object.

    Args:
        pairs: from :func:`audit.boxes.overlapping_pairs` with gt as ``a`` and predictions as
            ``b`` (``ib`` prediction row, ``contain_a_in_b``).
        same_class: ``(P,)`` whether the pair's labels agree.
        n_pred: number of prediction rows.
    """
    inside = same_class & (pairs.contain_a_in_b >= contain)
    return np.bincount(pairs.ib[inside], minlength=n_pred) >= max(min_members, 1)


def score_inconsistency(
    boxes: pd.DataFrame,
    *,
    contain: float = C.GROUP_CONTAIN,
    min_members: int = C.GROUP_MIN_MEMBERS,
    member_conf: float = C.GROUP_MEMBER_CONF,
    evidence_conf: float = C.GROUP_EVIDENCE_CONF,
    max_area: float = C.GROUP_MEMBER_MAX_AREA,
    partial_conf: float = C.PARTIAL_CONF,
    match_iou: float = C.MATCH_IOU,
    group_threshold: float = C.GROUP_SCORE,
    convention_threshold: float = C.GROUP_CONVENTION_SCORE,
    partial_threshold: float = C.PARTIAL_SCORE,
    mixed_min: float = C.MIXED_CONVENTION_MIN,
) -> InconsistencyResult:
    """Group boxes, partially labelled images and per-class labelling conventions.

    Args:
        boxes: boxes frame (ARCHITECTURE.md), absolute ``xyxy``; gt and pred rows.
        contain, min_members, member_conf, evidence_conf, max_area: group-member rule, see
            :func:`group_member_evidence`.
        partial_conf: predictions at least this confident count as unlabelled objects.
        match_iou: a label covers a prediction at this IoU.
        group_threshold, partial_threshold: flag thresholds on the scores (the group-box flag
            is recomputed on the calibrated score by :mod:`audit.calibration`).
        convention_threshold: group-box evidence from which a box counts as the group
            convention (it covers its members for the partial-labels score).
        mixed_min: both conventions must cover this share of a class's boxes to call it mixed.

    Returns:
        An :class:`InconsistencyResult`; scores are higher = more likely inconsistent.

    Example:
        >>> res = score_inconsistency(boxes)  # doctest: +SKIP
        >>> res.classes.loc["book", "is_mixed_convention"]  # doctest: +SKIP
    """
    check_boxes(boxes)
    is_gt = boxes["source"].to_numpy() == "gt"
    gt, pred = boxes[is_gt], boxes[~is_gt]
    codes, sample_ids = pd.factorize(boxes["sample_id"], sort=False)
    labels, label_names = pd.factorize(boxes["label"].astype(str), sort=True)
    g_code, p_code = codes[is_gt], codes[~is_gt]
    g_lab, p_lab = labels[is_gt], labels[~is_gt]
    g_xy, p_xy = xyxy(gt), xyxy(pred)
    conf = np.nan_to_num(pred["confidence"].to_numpy(np.float64), nan=0.0)
    pairs = B.overlapping_pairs(g_xy, g_code, p_xy, p_code)
    same = g_lab[pairs.ia] == p_lab[pairs.ib]
    area_ratio = B.box_area(p_xy)[pairs.ib] / np.maximum(B.box_area(g_xy)[pairs.ia], 1e-12)
    score, n_members = group_member_evidence(
        pairs, same, conf[pairs.ib], area_ratio, len(gt), contain=contain,
        min_members=min_members, member_conf=member_conf, evidence_conf=evidence_conf,
        max_area=max_area,
    )
    crowd = iscrowd(gt)
    group_frame = pd.DataFrame(
        {
            "sample_id": gt["sample_id"].to_numpy(),
            "label": gt["label"].astype(str).to_numpy(),
            "group_box_score": np.where(crowd, np.nan, score),
            "is_group_box_issue": ~crowd & (score >= group_threshold),
            "is_group": crowd | (score >= convention_threshold),
            "n_members": n_members,
        },
        index=pd.Index(gt["box_id"].to_numpy(), name="box_id"),
    )
    covered_by_group = np.zeros(len(pred), bool)
    inside = same & (pairs.contain_b_in_a >= contain)
    covered_by_group[pairs.ib[inside & group_frame["is_group"].to_numpy()[pairs.ia]]] = True
    covered_by_group |= encloses_labels(pairs, same, len(pred), contain=contain,
                                        min_members=min_members)
    partial = _partial_labels(
        pairs, conf, covered_by_group, g_code, g_lab, p_code, p_lab, len(sample_ids),
        partial_conf=partial_conf, match_iou=match_iou,
    )
    sample_frame = _partial_frame(partial, sample_ids, label_names, g_code, partial_threshold)
    classes = class_conventions(group_frame, sample_frame, mixed_min=mixed_min)
    summary = InconsistencySummary(
        n_gt=len(gt),
        n_group_boxes=int(group_frame["is_group_box_issue"].sum()),
        n_crowd=int(crowd.sum()),
        n_partial_samples=int(sample_frame["is_partial_labels_issue"].sum()),
        mixed_classes=tuple(classes.index[classes["is_mixed_convention"]].astype(str)),
    )
    return InconsistencyResult(group_frame, sample_frame, classes, summary)


def _partial_labels(pairs, conf, covered_by_group, g_code, g_lab, p_code, p_lab, n_samples, *,
                    partial_conf, match_iou) -> dict[str, NDArray]:
    """Unlabelled confident predictions of classes labelled elsewhere in the same image."""
    n_lab = int(max(g_lab.max(initial=-1), p_lab.max(initial=-1))) + 1
    best_iou = np.zeros(len(p_code))
    np.maximum.at(best_iou, pairs.ib, pairs.iou)
    labelled_here = np.isin(p_code * n_lab + p_lab, g_code * n_lab + g_lab)
    unlabelled = (
        (conf >= partial_conf) & labelled_here & (best_iou < match_iou) & ~covered_by_group
    )
    return {"sample": p_code[unlabelled], "label": p_lab[unlabelled], "conf": conf[unlabelled],
            "n_samples": np.array(n_samples)}


def _partial_frame(partial, sample_ids, label_names, g_code, threshold) -> pd.DataFrame:
    """Per-sample noisy-or of the unlabelled predictions' confidences."""
    n = int(partial["n_samples"])
    log_none = np.bincount(partial["sample"], weights=np.log1p(-np.clip(partial["conf"], 0, 1
                                                                        - 1e-12)), minlength=n)
    has_gt = np.bincount(g_code, minlength=n) > 0
    score = np.where(has_gt, 1.0 - np.exp(log_none), np.nan)
    classes: list[tuple[str, ...]] = [() for _ in range(n)]
    if partial["sample"].size:
        uniq = pd.DataFrame({"s": partial["sample"], "l": partial["label"]}).drop_duplicates()
        for s, grp in uniq.groupby("s")["l"]:
            classes[int(s)] = tuple(str(label_names[i]) for i in sorted(grp.to_numpy()))
    return pd.DataFrame(
        {
            "partial_labels_score": score,
            "is_partial_labels_issue": np.nan_to_num(score, nan=0.0) >= threshold,
            "n_unlabelled": np.bincount(partial["sample"], minlength=n).astype(np.int64),
            "partial_classes": pd.Series(classes, dtype=object).to_numpy(),
        },
        index=pd.Index(np.asarray(sample_ids, dtype=object), name="sample_id"),
    )


def class_conventions(
    group_boxes: pd.DataFrame, partial: pd.DataFrame, *, mixed_min: float = C.MIXED_CONVENTION_MIN
) -> pd.DataFrame:
    """Per-class labelling conventions.

    Args:
        group_boxes: ``InconsistencyResult.boxes``.
        partial: ``InconsistencyResult.samples``.
        mixed_min: each convention must cover at least this share of the class's boxes.

    Shares count objects, not boxes: a group box stands for the objects the model sees inside it
    (``n_members``, at least two), so ten group boxes over five books each weigh as fifty books
    against the books boxed one by one.

    Returns:
        Frame indexed by ``label``: ``n_boxes``, ``n_group`` (group boxes), ``n_group_objects``
        (objects inside them), ``share_group`` / ``share_individual`` (share of the class's
        objects labelled each way), ``n_images_group``, ``n_images_individual``,
        ``n_images_partial`` (images where the class is partly unlabelled),
        ``is_mixed_convention``.
    """
    g = group_boxes
    labels = sorted(g["label"].unique().tolist())
    n_boxes = g.groupby("label").size().reindex(labels, fill_value=0)
    n_group = g.groupby("label")["is_group"].sum().reindex(labels, fill_value=0)
    members = g["n_members"].clip(lower=2) if "n_members" in g else pd.Series(2, index=g.index)
    n_group_objects = members[g["is_group"]].groupby(g.loc[g["is_group"], "label"]).sum() \
        .reindex(labels, fill_value=0)
    img_g = g[g["is_group"]].groupby("label")["sample_id"].nunique()
    img_i = g[~g["is_group"]].groupby("label")["sample_id"].nunique()
    flat = [c for cls in partial["partial_classes"] for c in cls]
    img_p = pd.Series(flat, dtype=object).value_counts()
    out = pd.DataFrame(index=pd.Index(labels, name="label", dtype=object))
    out["n_boxes"] = n_boxes.to_numpy(np.int64)
    out["n_group"] = n_group.to_numpy(np.int64)
    out["n_group_objects"] = n_group_objects.to_numpy(np.int64)
    n_objects = out["n_group_objects"] + out["n_boxes"] - out["n_group"]
    out["share_group"] = out["n_group_objects"] / n_objects.clip(lower=1)
    out["share_individual"] = 1.0 - out["share_group"]
    out["n_images_group"] = img_g.reindex(labels, fill_value=0).to_numpy(np.int64)
    out["n_images_individual"] = img_i.reindex(labels, fill_value=0).to_numpy(np.int64)
    out["n_images_partial"] = img_p.reindex(labels, fill_value=0).to_numpy(np.int64)
    out["is_mixed_convention"] = (out["share_group"] >= mixed_min) & (
        out["share_individual"] >= mixed_min
    )
    return out


def _plural(label: str) -> str:
    """Naive English plural of a class name."""
    return label if label.endswith("s") else label + "s"


def convention_insights(classes: pd.DataFrame, group_boxes: pd.DataFrame) -> list[Insight]:
    """One insight per class that mixes conventions.

    Args:
        classes: output of :func:`class_conventions`.
        group_boxes: ``InconsistencyResult.boxes`` (gives the sample ids of the group boxes).

    Returns:
        Insights of kind ``inconsistency``, severity = share of the minority convention x 2.
    """
    out = []
    for label, row in classes[classes["is_mixed_convention"]].iterrows():
        many = _plural(str(label))
        sentence = (
            f"{label} is labelled two ways: {round(100 * row.share_group)} % of the {many} are "
            f"inside {row.n_group} boxes that each enclose several {many} "
            f"({row.n_images_group} images), {round(100 * row.share_individual)} % have a box "
            f"each ({row.n_images_individual} images)"
        )
        if row.n_images_partial:
            sentence += f"; {row.n_images_partial} images leave {many} unlabelled"
        sentence += ". Pick one convention and relabel the other boxes to it."
        ids = group_boxes.loc[group_boxes["is_group"] & (group_boxes["label"] == label),
                              "sample_id"].drop_duplicates()
        stats = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        out.append(Insight(
            kind="inconsistency", title=f"{label}: mixed box conventions", sentence=sentence,
            cluster=None, label=str(label),
            severity=float(min(1.0, 2 * min(row.share_group, row.share_individual))),
            sample_ids=tuple(str(s) for s in ids), stats=stats, issue="group_box",
            evidence={"plot": "convention_shares", "label": str(label),
                      "shares": {"group": float(row.share_group),
                                 "individual": float(row.share_individual)}},
        ))
    return out
