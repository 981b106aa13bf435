"""Adapters that run the two peer label-error finders on the same predictions as the auditor.

* FiftyOne Brain ``compute_mistakenness`` (fiftyone-brain 0.25): matches predictions to ground
  truth with ``evaluate_detections(classwise=False, iou=0.5)`` and, from the prediction
  ``confidence`` alone (``use_logits=False``, so no logits are needed), writes per ground-truth box
  ``mistakenness`` (class mistake, in [0, 1]) and ``mistakenness_loc`` (localisation mistake), the
  flag ``possible_spurious`` on unmatched ground truth and the flag ``possible_missing`` on
  unmatched predictions with confidence > 0.95. It saves every sample, so it runs on a temporary
  clone of the two label fields and never writes into the audited dataset.
* cleanlab ObjectLab (cleanlab 2.9, ``cleanlab.object_detection.rank``): per ground-truth box a
  ``swap`` and a ``badloc`` quality, per prediction an ``overlooked`` quality (NaN unless the
  prediction is confident and overlaps no label), and per image ``get_label_quality_scores``.
  Its qualities are in [0, 1] with LOWER = more likely wrong; the adapter returns ``1 - quality``.

Both adapters return :class:`PeerScores`, whose scores all point one way: higher = more likely a
label error, NaN = the method says nothing about that box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm.auto import tqdm

BOX_COLUMNS = ("sample_id", "box_id", "source", "x1", "y1", "x2", "y2", "label", "confidence")


@dataclass(frozen=True)
class PeerScores:
    """What one peer method said about every box and image.

    Attributes:
        boxes: frame indexed by ``box_id`` (FiftyOne detection id), one float column per score the
            method writes (higher = more likely wrong, NaN = not scored).
        samples: frame indexed by ``sample_id`` with float column ``image_score`` (higher = more
            likely the image holds a label error).
    """

    boxes: pd.DataFrame
    samples: pd.DataFrame


def brain_scores(
    dataset,
    *,
    pred_field: str = "predictions",
    gt_field: str = "ground_truth",
    progress: bool = True,
) -> PeerScores:
    """Run FiftyOne Brain's mistakenness on a temporary clone of ``dataset``'s label fields.

    Args:
        dataset: a FiftyOne dataset or view whose ``gt_field`` and ``pred_field`` are
            ``Detections``; predictions must carry ``confidence``.
        pred_field: the predictions field.
        gt_field: the ground-truth field.
        progress: show FiftyOne's progress bars.

    Returns:
        PeerScores. ``boxes`` columns: ``mistakenness`` and ``mistakenness_loc`` (ground truth
        matched to a prediction, else NaN), ``possible_spurious`` (1.0 on unmatched ground truth,
        0.0 on other ground truth), ``possible_missing`` (1.0 on confident unmatched predictions,
        0.0 on other predictions). ``samples.image_score`` is the image's largest box score;
        ``samples.image_score_sum`` Brain's three per-image fields summed (mistakenness and the
        counts of possibly missing and possibly spurious labels), its other reading of an image.

    Example:
        >>> scores = brain_scores(ds, progress=False)  # doctest: +SKIP
        >>> scores.boxes["mistakenness"].max() <= 1.0  # doctest: +SKIP
    """
    import fiftyone.brain as fob

    clone = dataset.select_fields([gt_field, pred_field]).clone()
    try:
        fob.compute_mistakenness(clone, pred_field, label_field=gt_field, progress=progress)
        gt_ids, mist, loc, spur = clone.values([
            f"{gt_field}.detections.id",
            f"{gt_field}.detections.mistakenness",
            f"{gt_field}.detections.mistakenness_loc",
            f"{gt_field}.detections.possible_spurious",
        ])
        pred_ids, missing = clone.values([
            f"{pred_field}.detections.id", f"{pred_field}.detections.possible_missing",
        ])
        sample_ids = clone.values("id")
        # Brain's own per-image fields: the image's mistakenness and its counts of possibly
        # missing and possibly spurious labels (None where it wrote nothing)
        totals = np.zeros(len(sample_ids))
        for name in ("mistakenness", "possible_missing", "possible_spurious"):
            if name in clone.get_field_schema():
                totals += np.nan_to_num(np.array(clone.values(name), dtype=float))
    finally:
        clone.delete()
    gt = pd.DataFrame({
        "box_id": _flat(gt_ids),
        "mistakenness": _flat(mist, float),
        "mistakenness_loc": _flat(loc, float),
        "possible_spurious": _flat(spur, _flag),
    })
    pred = pd.DataFrame({"box_id": _flat(pred_ids), "possible_missing": _flat(missing, _flag)})
    boxes = pd.concat([gt, pred], ignore_index=True).set_index("box_id")
    owner = np.repeat(sample_ids, [len(x or []) for x in gt_ids])
    owner = np.concatenate([owner, np.repeat(sample_ids, [len(x or []) for x in pred_ids])])
    image = boxes.max(axis=1, skipna=True).groupby(owner).max().reindex(sample_ids).fillna(0.0)
    samples = pd.DataFrame({"image_score": image.to_numpy(), "image_score_sum": totals},
                           index=pd.Index(sample_ids, name="sample_id"))
    return PeerScores(boxes=boxes, samples=samples)


def _flag(value) -> float:
    """Brain's flags are True or unset: 1.0 or 0.0."""
    return 1.0 if value else 0.0


def _flat(nested, cast=None) -> list:
    """Flatten FiftyOne's per-sample lists (None for an empty field), casting None to NaN."""
    out = []
    for row in nested:
        for v in row or []:
            if cast is None:
                out.append(v)
            elif cast is float:
                out.append(np.nan if v is None else float(v))
            else:
                out.append(cast(v))
    return out


def objectlab_scores(
    boxes: pd.DataFrame,
    sample_ids: list[str],
    *,
    progress: bool = True,
) -> PeerScores:
    """Run cleanlab ObjectLab on the auditor's boxes frame.

    Args:
        boxes: long boxes frame, one row per box, with columns ``sample_id``, ``box_id``,
            ``source`` ("gt" | "pred"), ``x1, y1, x2, y2`` (absolute pixels, xyxy), ``label``
            (str) and ``confidence`` (float, predictions only).
        sample_ids: every sample to score, in order (images without boxes included).
        progress: show a progress bar while the per-image inputs are built.

    Returns:
        PeerScores. ``boxes`` columns (all ``1 - ObjectLab quality``, higher = more likely wrong):
        ``swap`` and ``badloc`` on ground truth, ``overlooked`` on predictions (NaN where
        ObjectLab does not score the prediction), and ``image_overall`` on ground truth: its
        image's ``1 - get_label_quality_scores`` (ObjectLab has no per-box spurious score).
        ``samples.image_score`` = 1 - ``get_label_quality_scores``.

    Raises:
        ValueError: if a column is missing or ``sample_ids`` is empty.

    Example:
        >>> scores = objectlab_scores(boxes_frame, list(samples.index))  # doctest: +SKIP
    """
    from cleanlab.internal.constants import ALPHA
    from cleanlab.object_detection import rank

    missing = [c for c in BOX_COLUMNS if c not in boxes.columns]
    if missing or not sample_ids:
        raise ValueError(f"objectlab_scores: expected columns {BOX_COLUMNS} and at least one "
                         f"sample; missing columns {missing}, {len(sample_ids)} samples")
    labels, predictions, gt_order, pred_order = _objectlab_inputs(boxes, sample_ids, progress)
    aux = rank._get_valid_inputs_for_compute_scores(ALPHA, labels, predictions)
    swap = rank.compute_swap_box_scores(auxiliary_inputs=aux)
    badloc = rank.compute_badloc_box_scores(auxiliary_inputs=aux)
    overlooked = rank.compute_overlooked_box_scores(auxiliary_inputs=aux)
    quality = rank.get_label_quality_scores(labels, predictions, verbose=False)
    gt = pd.DataFrame({
        "box_id": [b for ids in gt_order for b in ids],
        "swap": 1.0 - _cat(swap),
        "badloc": 1.0 - _cat(badloc),
    })
    image_bad = 1.0 - np.asarray(quality, dtype=float)
    owner = np.repeat(np.arange(len(sample_ids)), [len(ids) for ids in gt_order])
    gt["image_overall"] = image_bad[owner]
    pred = pd.DataFrame({
        "box_id": [b for ids in pred_order for b in ids],
        "overlooked": 1.0 - _cat(overlooked),
    })
    out = pd.concat([gt, pred], ignore_index=True).set_index("box_id")
    samples = pd.DataFrame({"image_score": image_bad},
                           index=pd.Index(sample_ids, name="sample_id"))
    return PeerScores(boxes=out, samples=samples)


def _cat(parts: list[NDArray]) -> NDArray[np.float64]:
    """Concatenate per-image score arrays (possibly all empty) into one float array."""
    return np.concatenate([np.asarray(p, dtype=float).ravel() for p in parts] + [np.empty(0)])


def _objectlab_inputs(boxes: pd.DataFrame, sample_ids: list[str], progress: bool):
    """ObjectLab's labels (dicts of xyxy bboxes + int labels) and per-class prediction arrays.

    Returns the labels, the predictions, and per image the gt / pred box ids in the order
    ObjectLab scores them (gt in frame order; predictions grouped by class id).
    """
    classes = sorted(boxes["label"].astype(str).unique())
    class_id = {c: i for i, c in enumerate(classes)}
    groups = dict(tuple(boxes.groupby("sample_id", sort=False)))
    empty = boxes.iloc[:0]
    labels, predictions, gt_order, pred_order = [], [], [], []
    for sid in tqdm(sample_ids, desc="objectlab inputs", disable=not progress):
        frame = groups.get(sid, empty)
        gt = frame[frame["source"] == "gt"]
        pred = frame[frame["source"] == "pred"]
        labels.append({
            "bboxes": gt[["x1", "y1", "x2", "y2"]].to_numpy(float).reshape(-1, 4),
            "labels": gt["label"].astype(str).map(class_id).to_numpy(int),
        })
        cls = pred["label"].astype(str).map(class_id).to_numpy(int)
        rows = pred[["x1", "y1", "x2", "y2", "confidence"]].to_numpy(float).reshape(-1, 5)
        predictions.append([rows[cls == k] for k in range(len(classes))])
        gt_order.append(gt["box_id"].tolist())
        pred_order.append([b for k in range(len(classes)) for b in pred["box_id"][cls == k]])
    return labels, predictions, gt_order, pred_order
