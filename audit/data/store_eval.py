"""Detection metrics of an audit dataset: FiftyOne's COCO-protocol ``evaluate_detections``.

Used through :func:`audit.data.store.evaluate`. One evaluation over IoU 0.50:0.95 (plus the
requested IoU) gives COCO mAP, mAP at that IoU and per-class AP from the same precision array.
"""

from __future__ import annotations

import logging
from typing import Any

import fiftyone as fo
import numpy as np

from audit.data.store import audit_info, update_audit_info

COCO_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # COCO's 0.50:0.05:0.95


def evaluate(ds: fo.Dataset, *, iou: float = 0.5) -> dict[str, Any]:
    """COCO-style detection metrics of the stored predictions against the ground truth.

    Runs FiftyOne's ``evaluate_detections`` (COCO protocol, ``iscrowd`` honoured) once over IoU
    0.50:0.95 and reads mAP at ``iou`` from the same precision array; cached in
    ``info["audit"]["evaluation"]`` keyed by model and the dataset's last modification.

    Returns:
        ``{"mAP": COCO mAP50-95, "mAP50": mAP at ``iou``, "per_class_AP": {class: AP50-95},
        "per_class_AP50": {...}, "iou": iou, "key": cache key}`` (higher = better).
    """
    info = audit_info(ds)
    stamp = ds.bounds("last_modified_at")[1] if len(ds) else None
    key = f"{info.get('model')}|{stamp}|iou={iou:g}"
    cached = info.get("evaluation")
    if isinstance(cached, dict) and cached.get("key") == key:
        return cached
    if not len(ds) or not ds.count("ground_truth.detections"):
        raise ValueError(f"dataset {ds.name!r} has no ground-truth boxes to evaluate against")
    if not 0 < iou < 1:
        raise ValueError(f"iou must be in (0, 1), got {iou}")
    threshs = sorted(set(COCO_IOUS) | {round(float(iou), 4)})
    logger = logging.getLogger("fiftyone")
    level = logger.level
    logger.setLevel(logging.WARNING)  # evaluate_detections logs its steps at INFO
    try:
        res = ds.evaluate_detections("predictions", gt_field="ground_truth", compute_mAP=True,
                                     iou_threshs=threshs, classwise=True, progress=False)
    finally:
        logger.setLevel(level)
    precision = np.asarray(res.precision, dtype=float)  # (n_iou, n_classes, n_recall), -1 = n/a
    coco = [i for i, t in enumerate(threshs) if t in COCO_IOUS]
    at_iou = threshs.index(round(float(iou), 4))
    valid = precision[0, :, 0] > -1
    ap = np.where(valid, precision[coco].mean(axis=(0, 2)), np.nan)
    ap50 = np.where(valid, precision[at_iou].mean(axis=1), np.nan)
    classes = [str(c) for c in res.classes]
    out = {"mAP": float(np.nanmean(ap)) if valid.any() else float("nan"),
           "mAP50": float(np.nanmean(ap50)) if valid.any() else float("nan"),
           "per_class_AP": {c: float(a) for c, a, v in zip(classes, ap, valid, strict=True) if v},
           "per_class_AP50": {c: float(a) for c, a, v in zip(classes, ap50, valid, strict=True)
                              if v},
           "iou": float(iou), "key": key}
    update_audit_info(ds, evaluation=out)
    return out
