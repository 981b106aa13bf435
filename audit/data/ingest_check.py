"""A resumed ingest must not meet other labels than it stored: edited inputs are refused.

Ingest adds the images a dataset does not hold yet; it never changes what it stored, because
everything computed at ingest and after depends on the labels (each box's features, each image's
loss, metadata and class counts, the scores, the review decisions made on the stored boxes).
So a re-run whose COCO JSON (or YOLO labels) give a stored image other boxes, classes, crowd
flags, annotation ids or another split is refused before anything is written, naming the file,
the image and what differs, and saying what to do: ingest the edited labels under a new name (or
delete the dataset first); corrections made in the auditor go through review instead.
"""

from __future__ import annotations

from typing import Any

import fiftyone as fo
import numpy as np

from audit.boxes import xyxy_abs_to_xywh_rel
from audit.data.inputs import CocoSplit, ImageRecord

SHOWN = 5  # changed images named in the refusal
BOX_TOLERANCE = 1e-9  # relative box coordinates stored from the same inputs are equal to this
GT_PATHS = ("ground_truth.detections.label", "ground_truth.detections.bounding_box",
            "ground_truth.detections.coco_id", "ground_truth.detections.iscrowd")


def _stored(ds: fo.Dataset, paths: set[str]) -> dict[str, tuple[Any, ...]]:
    """filepath -> (split, labels, boxes, coco ids, crowd flags) of the stored samples among
    ``paths`` (one read of the whole dataset: a query listing 100k paths could pass MongoDB's
    16 MB limit)."""
    values = ds.values(["filepath", "split", *GT_PATHS])
    return {row[0]: tuple(row[1:]) for row in zip(*values, strict=True) if row[0] in paths}


def _box_px(box: list[float] | np.ndarray, rec: ImageRecord) -> str:
    """A relative ``[x, y, w, h]`` box as px ``[x, y, w, h]`` (one decimal) for a message."""
    x, y, w, h = (float(v) for v in box)
    return f"[{x * rec.width:.1f}, {y * rec.height:.1f}, {w * rec.width:.1f}, " \
           f"{h * rec.height:.1f}]"


def _difference(rec: ImageRecord, split: str, stored: tuple[Any, ...]) -> str | None:
    """What differs between a record and its stored sample, None when nothing does."""
    s_split, labels, boxes, ids, crowd = (stored[0], *(v or [] for v in stored[1:]))
    if s_split != split:
        return f"stored in the {s_split} split, this input puts it in {split}"
    if len(labels) != len(rec.labels):
        return f"{len(labels)} box(es) stored, {len(rec.labels)} in this input"
    rel = xyxy_abs_to_xywh_rel(rec.boxes, rec.width, rec.height)
    order = np.argsort(rec.coco_ids, kind="stable")  # the same boxes, listed in another order
    kept = sorted(range(len(labels)), key=lambda j: (ids[j] is None, ids[j] or 0))
    for n, (j, k) in enumerate(zip(kept, order, strict=True), start=1):
        same = (labels[j] == rec.labels[k] and ids[j] in (None, int(rec.coco_ids[k]))
                and bool(crowd[j]) == bool(rec.iscrowd[k])
                and np.allclose(boxes[j], rel[k], rtol=0, atol=BOX_TOLERANCE))
        if not same:
            crowd_note = " crowd" if rec.iscrowd[k] else ""
            return (f"box {n} (annotation id {ids[j]}) is stored as {labels[j]!r} "
                    f"{_box_px(boxes[j], rec)}, this input has annotation id "
                    f"{int(rec.coco_ids[k])} {rec.labels[k]!r}{crowd_note} {_box_px(rel[k], rec)}")
    return None


def check_labels_unchanged(ds: fo.Dataset, splits: list[CocoSplit]) -> None:
    """Refuse inputs that give an image ``ds`` already stores other labels or another split.

    Raises:
        ValueError: names the dataset, each changed image's record (file and image, up to
            ``SHOWN``) and what differs, and says what to do.
    """
    records = {str(r.filepath): (s.split, r) for s in splits for r in s.images}
    stored = _stored(ds, set(records)) if len(ds) and records else {}
    changed = []
    for path, row in stored.items():
        split, rec = records[path]
        why = _difference(rec, split, row)
        if why is not None:
            changed.append(f"{rec.record}: {why}")
    if not changed:
        return
    shown = "\n  ".join(sorted(changed)[:SHOWN])
    more = f"\n  ... and {len(changed) - SHOWN} more" if len(changed) > SHOWN else ""
    raise ValueError(
        f"{len(changed)} image(s) already in dataset {ds.name!r} have other labels in the input "
        "than the dataset stores; ingest only adds images, it never changes stored labels (the "
        "features, losses, scores and reviews depend on them): ingest the edited labels under "
        f"a new name (--name {ds.name}-2), or delete dataset {ds.name!r} first; corrections "
        f"made in the auditor are review decisions and go into its exports:\n  {shown}{more}")
