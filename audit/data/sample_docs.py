"""Samples of the auditor's schema as FiftyOne's MongoDB documents, and their bulk insert.

Ingest writes ~200 predicted boxes per image (confidence >= 0.001, with a feature vector each).
Building ``fo.Sample`` / ``fo.Detection`` objects for them, validating them and turning them back
into backing documents costs FiftyOne ~120 ms per image on a 2-core machine, five times the
forward pass. So ingest builds the documents directly (:func:`sample_doc`) and inserts them in one
``insert_many`` per batch (:func:`add_sample_docs`), once the dataset's schema declares every field
they carry; a batch that would add a field (the first one) goes through ``add_samples``, which
declares and validates it. ``tests/data/test_sample_docs.py`` checks that both paths store the
same document.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import fiftyone as fo
import numpy as np
from bson import ObjectId
from fiftyone.core.odm.sample import _generate_rand  # FiftyOne's own draw of _rand
from numpy.typing import NDArray
from pymongo.errors import BulkWriteError, DuplicateKeyError

from audit.boxes import xyxy_abs_to_xywh_rel
from audit.data.store import plain_value

DUPLICATE_KEY = 11000  # MongoDB's error code for a write that breaks a unique index


def _feature(row: NDArray) -> list[float] | None:
    """A feature row as a list of floats, None for a NaN row."""
    return row.tolist() if np.isfinite(row).all() else None


def _detection(label: str, box: list[float], **attributes: Any) -> dict[str, Any]:
    """One ``fo.Detection`` as stored (``None`` attributes are stored as null, as FiftyOne does)."""
    return {"_id": ObjectId(), "_cls": "Detection", "tags": [], "attributes": {}, "label": label,
            "bounding_box": box, **attributes}


def sample_doc(filepath: str, split: str, width: int, height: int, *, gt_boxes: NDArray,
               gt_labels: list[str], gt_iscrowd: NDArray, gt_coco_ids: NDArray,
               gt_features: NDArray, pred_boxes: NDArray, pred_labels: list[str],
               pred_conf: NDArray, pred_features: NDArray, loss: NDArray,
               embedding: NDArray, metadata: dict[str, Any],
               class_counts: dict[str, int], probe_boxes: NDArray | None = None,
               probe_features: NDArray | None = None) -> dict[str, Any]:
    """One sample in the auditor's schema, as its document (without dataset keys).

    Args:
        filepath: absolute image path.
        split: ``"train"`` or ``"val"`` (stored as field ``split`` and as a tag).
        width: image width in px.
        height: image height in px.
        gt_boxes: ``(M, 4)`` absolute px ``xyxy``; labels, iscrowd, coco ids, features
            ``(M, F)`` aligned.
        pred_boxes: ``(N, 4)`` absolute px ``xyxy``; labels, confidence, features ``(N, F)``
            (NaN rows: no feature stored) aligned.
        loss: ``(3,)`` box, cls, dfl loss of this image (higher = fits the labels worse).
        embedding: ``(D,)`` image embedding.
        metadata: scalar fields (``n_objects``, ``median_box_area``, ...).
        class_counts: ground-truth boxes per class name.
        probe_boxes, probe_features: ``(K, 4)`` absolute px ``xyxy`` label-sized boxes on
            background and the model's features there (``(K, F)``), stored as the
            ``background_probes`` detections (label "background"); None: not stored.

    Returns:
        The document; top-level ``None`` values are left out (FiftyOne's "missing").
    """
    gt_rel = xyxy_abs_to_xywh_rel(gt_boxes, width, height).tolist()
    pred_rel = xyxy_abs_to_xywh_rel(pred_boxes, width, height).tolist()
    gt_features = np.asarray(gt_features, dtype=np.float64)
    pred_features = np.asarray(pred_features, dtype=np.float64)
    gt = [_detection(lab, gt_rel[j], iscrowd=bool(gt_iscrowd[j]), coco_id=int(gt_coco_ids[j]),
                     feature=_feature(gt_features[j]))
          for j, lab in enumerate(gt_labels)]
    conf = np.asarray(pred_conf, dtype=np.float64).tolist()
    pred = [_detection(lab, pred_rel[j], confidence=conf[j], feature=_feature(pred_features[j]))
            for j, lab in enumerate(pred_labels)]
    probes = None
    if probe_boxes is not None and len(probe_boxes):
        rel = xyxy_abs_to_xywh_rel(np.asarray(probe_boxes, float), width, height).tolist()
        pf = np.asarray(probe_features, dtype=np.float64)
        probes = {"_cls": "Detections", "detections": [
            _detection("background", rel[j], feature=_feature(pf[j])) for j in range(len(rel))]}
    losses = [float(v) for v in loss]
    doc = {
        "filepath": filepath, "tags": [split], "_media_type": "image",
        "metadata": {"_cls": "ImageMetadata", "width": int(width), "height": int(height),
                     "num_channels": 3},
        "split": split,
        "ground_truth": {"_cls": "Detections", "detections": gt},
        "predictions": {"_cls": "Detections", "detections": pred},
        "background_probes": probes,
        "loss_box": losses[0], "loss_cls": losses[1], "loss_dfl": losses[2],
        "loss": float(sum(losses)),
        "embedding": np.asarray(embedding, dtype=np.float64).tolist(),
        "class_counts": {str(k): int(v) for k, v in class_counts.items()},
        **{k: plain_value(v) for k, v in metadata.items()},
    }
    return {k: v for k, v in doc.items() if v is not None}


def add_sample_docs(ds: fo.Dataset, docs: list[dict[str, Any]]) -> None:
    """Insert sample documents from :func:`sample_doc` into ``ds``, in order, in bulk.

    A document carrying a top-level field the dataset's schema does not declare yet (the first
    one, or the first with a new field) goes through FiftyOne's ``add_samples``, which declares
    and validates it; the runs of documents between them go in one raw ``insert_many`` each.

    A document whose filepath the dataset already holds (stored by a concurrent ingest; the
    filepath index is unique, :mod:`audit.data.store_create`) is refused by the database and
    skipped; the others of its batch are stored.

    Raises:
        ValueError: the database refused a document for another reason (its message).
    """
    declared = set(ds.get_field_schema()) if len(ds) else set()
    run: list[dict[str, Any]] = []
    for doc in docs:
        if set(doc) - {"_media_type"} <= declared:
            run.append(doc)
            continue
        _insert(ds, run)
        run = []
        try:
            ds.add_samples([fo.Sample.from_dict(doc)], progress=False)
        except ValueError as exc:  # FiftyOne re-raises the BulkWriteError as its message
            cause = exc.__cause__
            if not isinstance(cause, BulkWriteError | DuplicateKeyError) or \
                    not _only_duplicates(cause):
                raise
        declared = set(ds.get_field_schema())
    _insert(ds, run)


def _only_duplicates(exc: BulkWriteError | DuplicateKeyError) -> bool:
    """True when every error of a write is a duplicate filepath (a sample already stored)."""
    errors = exc.details.get("writeErrors", []) if isinstance(exc, BulkWriteError) \
        else [exc.details or {}]
    return bool(errors) and all(
        e.get("code") == DUPLICATE_KEY and "filepath" in (e.get("keyPattern") or {})
        for e in errors)


def _insert(ds: fo.Dataset, docs: list[dict[str, Any]]) -> None:
    """One raw ``insert_many`` of documents whose fields the schema declares."""
    if not docs:
        return
    now = datetime.now(UTC).replace(tzinfo=None)  # FiftyOne stores naive UTC datetimes
    rows = [{**d, "_id": ObjectId(), "_rand": _generate_rand(), "_dataset_id": ds._doc.id,
             "created_at": now, "last_modified_at": now} for d in docs]
    try:
        ds._sample_collection.insert_many(rows, ordered=False)
    except BulkWriteError as exc:
        if not _only_duplicates(exc):
            raise ValueError(exc.details["writeErrors"][0]["errmsg"]) from exc
