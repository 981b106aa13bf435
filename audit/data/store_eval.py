"""Detection metrics of an audit dataset: COCO mAP with pycocotools' ``COCOeval``.

Read by :func:`audit.data.views.evaluation`. One evaluation over IoU 0.50:0.95 (plus the
requested IoU) gives COCO mAP, mAP at that IoU and per-class AP from the same precision array
(area range "all", at most 100 detections per image and class, ``iscrowd`` boxes as ignore
regions: the COCO protocol). pycocotools evaluates in C and numpy; FiftyOne's
``evaluate_detections`` gives the same figures (``tests/data/test_store_eval.py`` compares them)
but took 36 s on the 300-image demo (27,247 predictions) against about 2 s here, and it scales
with the number of images.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import fiftyone as fo
import numpy as np
import pandas as pd

from audit.data.store import audit_info, boxes_frame, update_audit_info

COCO_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # COCO's 0.50:0.05:0.95


def coco_precision(boxes: pd.DataFrame, threshs: list[float]) -> tuple[np.ndarray, list[str]]:
    """COCOeval precision ``(n_iou, n_classes, 101 recall points)`` (-1 = class without gt) and
    the class names, from a boxes frame (gt and pred rows, absolute ``xyxy``)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, pred = boxes[boxes["source"] == "gt"], boxes[boxes["source"] == "pred"]
    classes = sorted(set(gt["label"].astype(str)))
    if not classes:
        return np.full((len(threshs), 0, 101), -1.0), []
    cat = {c: i + 1 for i, c in enumerate(classes)}
    images = {s: i + 1 for i, s in enumerate(pd.unique(boxes["sample_id"]))}

    def xywh(frame: pd.DataFrame) -> np.ndarray:
        xy = frame[["x1", "y1", "x2", "y2"]].to_numpy(float)
        return np.column_stack([xy[:, :2], xy[:, 2:] - xy[:, :2]])

    g = xywh(gt)
    crowd = pd.to_numeric(gt.get("iscrowd", 0), errors="coerce").fillna(0).astype(int).to_numpy()
    data = {"images": [{"id": i} for i in images.values()],
            "categories": [{"id": i, "name": c} for c, i in cat.items()],
            "annotations": [{"id": k + 1, "image_id": images[s], "category_id": cat[str(lab)],
                             "bbox": b.tolist(), "area": float(b[2] * b[3]), "iscrowd": int(c)}
                            for k, (s, lab, b, c) in enumerate(zip(
                                gt["sample_id"], gt["label"], g, crowd, strict=True))]}
    known = pred["label"].astype(str).isin(cat).to_numpy()
    pred = pred[known]
    dets = [{"image_id": images[s], "category_id": cat[str(lab)], "bbox": b.tolist(),
             "score": float(c)} for s, lab, b, c in zip(pred["sample_id"], pred["label"],
                                                         xywh(pred), pred["confidence"],
                                                         strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its steps
        truth = COCO()
        truth.dataset = data
        truth.createIndex()
        if not dets:
            precision = np.full((len(threshs), len(classes), 101), -1.0)
            has_gt = [bool(truth.getAnnIds(catIds=[cat[c]], iscrowd=False)) for c in classes]
            precision[:, np.asarray(has_gt, bool), :] = 0.0
            return precision, classes
        run = COCOeval(truth, truth.loadRes(dets), "bbox")
        run.params.iouThrs = np.asarray(threshs, float)
        run.evaluate()
        run.accumulate()
    # (T, R, K, area, maxDets) -> area "all", 100 detections -> (T, K, R)
    return np.transpose(run.eval["precision"][:, :, :, 0, -1], (0, 2, 1)), classes


def evaluate(ds: fo.Dataset, *, iou: float = 0.5) -> dict[str, Any]:
    """COCO-style detection metrics of the stored predictions against the ground truth.

    Runs pycocotools' ``COCOeval`` (COCO protocol, ``iscrowd`` honoured) once over IoU
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
    boxes, _ = boxes_frame(ds, with_features=False)
    precision, classes = coco_precision(boxes, threshs)  # (n_iou, n_classes, n_recall), -1: n/a
    coco = [i for i, t in enumerate(threshs) if t in COCO_IOUS]
    at_iou = threshs.index(round(float(iou), 4))
    valid = precision[0, :, 0] > -1
    ap = np.where(valid, precision[coco].mean(axis=(0, 2)), np.nan)
    ap50 = np.where(valid, precision[at_iou].mean(axis=1), np.nan)
    out = {"mAP": float(np.nanmean(ap)) if valid.any() else float("nan"),
           "mAP50": float(np.nanmean(ap50)) if valid.any() else float("nan"),
           "per_class_AP": {c: float(a) for c, a, v in zip(classes, ap, valid, strict=True) if v},
           "per_class_AP50": {c: float(a) for c, a, v in zip(classes, ap50, valid, strict=True)
                              if v},
           "iou": float(iou), "key": key}
    update_audit_info(ds, evaluation=out)
    return out
