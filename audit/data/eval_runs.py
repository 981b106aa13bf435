"""The evaluation drill-down's data: a split's boxes, and the evaluation stored as a FiftyOne run.

The drill-down itself (TP / FP / FN per box, confusion matrix, PR curves) is pure
(:mod:`audit.evaluation`); this module reads the boxes of one split and stores the same
evaluation as a FiftyOne evaluation run (``evaluate_detections`` with an ``eval_key``), so the
FiftyOne App's Model Evaluation panel and its ``<key>`` TP / FP / FN label fields can be used on
the dataset too.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
from fiftyone import ViewField as F

from audit.data.store import boxes_frame

ALL_SPLITS = "all"  # the split choice that evaluates every sample


def split_view(ds: Any, split: str) -> Any:
    """The samples of ``split`` ("all": every sample); ValueError naming the known splits."""
    if split == ALL_SPLITS:
        return ds.view()
    known = sorted(map(str, ds.distinct("split"))) if len(ds) else []
    if split not in known:
        raise ValueError(f"dataset {ds.name!r} has no split {split!r}; known: "
                         f"{', '.join(known) or 'none'}")
    return ds.match(F("split") == split)


def split_boxes(ds: Any, split: str, *, min_confidence: float = 0.0) -> pd.DataFrame:
    """Boxes frame (:func:`audit.data.store.boxes_frame`, no features) of one split."""
    frame, _ = boxes_frame(split_view(ds, split), min_confidence=min_confidence,
                           with_features=False)
    return frame


def eval_key(split: str, iou: float) -> str:
    """The evaluation run's key, e.g. ``audit_val_iou50`` (a valid field name)."""
    safe = re.sub(r"\W", "_", str(split)) or "split"
    return f"audit_{safe}_iou{round(float(iou) * 100):d}"


def store_evaluation_run(ds: Any, split: str, *, iou: float, conf: float) -> str:
    """Evaluate ``split``'s predictions at or above ``conf`` with FiftyOne's COCO-style
    ``evaluate_detections`` at ``iou`` (class-wise, crowd labels honoured) and store it as an
    evaluation run, replacing a run of the same key.

    Returns:
        The run's ``eval_key`` (``ds.list_evaluations()`` holds it; each evaluated label gets
        ``<key>`` = "tp" | "fp" | "fn").

    Raises:
        ValueError: unknown split, ``iou`` outside (0, 1), or nothing to evaluate.

    Example:
        >>> store_evaluation_run(ds, "val", iou=0.5, conf=0.25)  # doctest: +SKIP
        'audit_val_iou50'
    """
    if not 0 < iou < 1:
        raise ValueError(f"iou must be in (0, 1), got {iou}")
    view = split_view(ds, split)
    if not view.count("ground_truth.detections"):
        raise ValueError(f"dataset {ds.name!r}: split {split!r} has no labels to evaluate")
    view = view.filter_labels("predictions", F("confidence") >= conf, only_matches=False)
    key = eval_key(split, iou)
    if key in ds.list_evaluations():
        ds.delete_evaluation(key)
    view.evaluate_detections("predictions", gt_field="ground_truth", eval_key=key, iou=iou,
                             classwise=True, progress=False)
    return key
