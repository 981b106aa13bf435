"""Planning one review decision on a sample's raw document: before and after states (pure).

Works on the raw MongoDB sample document (plain dicts, ``bson`` ids) that
:mod:`audit.data.review_store` reads and writes; nothing here touches the database. A *state*
is what a log record stores on each side of a decision: the sample's review status and one box
(its id, its index in the corrected list, and its raw detection as extended JSON).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bson import ObjectId, json_util

from audit.reviews import ACTION_STATUS, Decision, LogRecord, merge_status, undo_target

REVIEWED_FIELD = "ground_truth_reviewed"  # corrected copy of ground_truth
DISMISSED_FIELD = "review_dismissed"  # ids of the predictions a reviewer dismissed (no object)
IMAGE = "<image>"  # what an image-level decision touches, for rebasing (never a box id)


def to_json(value: Any) -> Any:
    """BSON value (ObjectId, bytes, NaN) -> plain JSON-safe value (MongoDB extended JSON)."""
    return json.loads(json_util.dumps(value))


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json`."""
    return json_util.loads(json.dumps(value))


def current_boxes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Deep copy of the sample's current corrected boxes (raw detection dicts)."""
    labels = doc.get(REVIEWED_FIELD) or doc.get("ground_truth") or {}
    return copy.deepcopy(labels.get("detections") or [])


def find_box(dets: Sequence[dict[str, Any]], box_id: str) -> tuple[int | None, dict | None]:
    """Index and dict of the detection with id ``box_id``, or ``(None, None)``."""
    for i, det in enumerate(dets):
        if str(det.get("_id")) == box_id:
            return i, det
    return None, None


def image_size(doc: dict[str, Any], sample_id: str, box: Sequence[float]) -> tuple[float, float]:
    """The sample's ``(width, height)`` in px; ValueError naming the sample and ``box`` if
    it has none."""
    meta = doc.get("metadata") or {}
    width, height = meta.get("width") or doc.get("width"), meta.get("height") or doc.get("height")
    if not width or not height:
        raise ValueError(f"sample {sample_id}: no image size (metadata.width/height) to convert "
                         f"box {tuple(box)} from pixels")
    return float(width), float(height)


def relative_box(box: Sequence[float], doc: dict[str, Any], sample_id: str) -> list[float]:
    """Absolute pixel xyxy -> FiftyOne relative ``[x, y, w, h]`` using the sample's image size."""
    width, height = image_size(doc, sample_id, box)
    x1, y1, x2, y2 = box
    return [x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height]


def checked_decision(doc: dict[str, Any], decision: Decision,
                     class_names: Sequence[str]) -> Decision:
    """``decision`` as it may be applied to the sample ``doc``, or ValueError naming the value.

    Its ``new_label`` must be one of ``class_names`` (the dataset's classes); its ``box``
    (absolute px ``xyxy``, already finite with x1 < x2, y1 < y2: see ``Decision``) is clipped to
    the image, and refused when nothing of it lies inside. Exports then never see a label
    outside the class list, a negative COCO bbox or a YOLO coordinate above 1.

    Example:
        >>> doc = {"metadata": {"width": 100, "height": 50}}
        >>> d = Decision(dataset="demo", sample_id="s", box_id="b", action="accept_prediction",
        ...              box=(-5, 10, 40, 70), base_revision=0)
        >>> checked_decision(doc, d, ["cat"]).box
        (0.0, 10.0, 40.0, 50.0)
    """
    who = f"sample {decision.sample_id}"
    if decision.new_label and decision.new_label not in class_names:
        raise ValueError(f"{who}: label {decision.new_label!r} is not a class of dataset "
                         f"{decision.dataset!r}; choose one of: {', '.join(class_names)}")
    if decision.box is None:
        return decision
    width, height = image_size(doc, decision.sample_id, decision.box)
    x1, y1, x2, y2 = decision.box
    clipped = (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
               min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise ValueError(f"{who}: box {decision.box} (xyxy px) lies wholly outside its "
                         f"{width:g}x{height:g} image")
    return decision if clipped == decision.box else replace(decision, box=clipped)


def _state(status: str, box_id: str | None, index: int | None, det: dict | None) -> dict:
    """One before/after state of a log record (JSON-safe)."""
    return {"sample_status": status, "box_id": box_id, "index": index,
            "box": to_json(det) if det is not None else None}


def _from_prediction(doc: dict, decision: Decision) -> tuple[str, dict]:
    """A new ground-truth box copied from the prediction ``decision.box_id``."""
    preds = (doc.get("predictions") or {}).get("detections") or []
    _, pred = find_box(preds, decision.box_id)
    if pred is None:
        raise ValueError(f"sample {decision.sample_id}: box {decision.box_id} is neither in its "
                         "ground truth nor in its predictions")
    new = {k: copy.deepcopy(v) for k, v in pred.items()
           if k not in ("_id", "confidence", "suggested_label") and not k.endswith("_score")}
    new.update(_id=ObjectId(), iscrowd=False, accepted_from=decision.box_id)
    return str(new["_id"]), new


def accepted_as(doc: dict[str, Any], prediction_id: str) -> str | None:
    """Id of the corrected box already taken from prediction ``prediction_id``, or None."""
    return next((str(d["_id"]) for d in current_boxes(doc)
                 if str(d.get("accepted_from")) == prediction_id), None)


def _dismiss(doc: dict, decision: Decision, status: str, after_status: str) -> tuple[dict, dict]:
    """Before and after states of dismissing the prediction ``decision.box_id``: the sample's
    list of dismissed predictions without and with it (the labels are left as they are)."""
    preds = (doc.get("predictions") or {}).get("detections") or []
    if find_box(preds, decision.box_id)[1] is None:
        raise ValueError(f"sample {decision.sample_id}: box {decision.box_id} is not one of its "
                         "predictions, so it cannot be dismissed")
    dismissed = [str(i) for i in doc.get(DISMISSED_FIELD) or []]
    after = dismissed if decision.box_id in dismissed else [*dismissed, decision.box_id]
    return ({**_state(status, None, None, None), "dismissed": dismissed},
            {**_state(after_status, None, None, None), "dismissed": after})


def _changed_box(det: dict, decision: Decision, doc: dict) -> dict | None:
    """The box after a box-level decision (None = deleted)."""
    if decision.action == "delete":
        return None
    new = copy.deepcopy(det)
    if decision.action == "fix_class":
        new["label"] = decision.new_label
    if decision.action == "accept_prediction":
        if decision.box is None:
            raise ValueError(f"decision {decision.decision_id}: accept_prediction on ground-truth "
                             f"box {decision.box_id} needs the prediction's box (xyxy px)")
        new["bounding_box"] = relative_box(decision.box, doc, decision.sample_id)
        if decision.new_label:
            new["label"] = decision.new_label
    new["review_status"] = ACTION_STATUS[decision.action]
    return new


def plan(doc: dict, decision: Decision, applied: Sequence[LogRecord]) -> tuple[dict, dict]:
    """Before and after states of ``decision`` applied to ``doc`` (raw sample document)."""
    status = doc.get("review_status") or "unreviewed"
    dets = current_boxes(doc)
    if decision.action == "undo":
        target = undo_target(applied)
        if target is None:
            raise ValueError(f"sample {decision.sample_id}: nothing to undo")
        box_id = target.after["box_id"]
        index, det = find_box(dets, box_id) if box_id else (None, None)
        index = target.after["index"] if index is None else index
        return _state(status, box_id, index, det), copy.deepcopy(target.before)
    after_status = merge_status(status, decision.action)
    if decision.box_id is None:
        return _state(status, None, None, None), _state(after_status, None, None, None)
    if decision.action == "dismiss":
        return _dismiss(doc, decision, status, after_status)
    index, det = find_box(dets, decision.box_id)
    if det is None and decision.action == "accept_prediction":
        box_id, new = _from_prediction(doc, decision)
        if decision.box is not None:
            new["bounding_box"] = relative_box(decision.box, doc, decision.sample_id)
        if decision.new_label:
            new["label"] = decision.new_label
        new["review_status"] = "fixed"
        return _state(status, box_id, len(dets), None), _state(after_status, box_id, len(dets), new)
    if det is None:
        raise ValueError(f"sample {decision.sample_id}: box {decision.box_id} is not in its "
                         "ground truth")
    new = _changed_box(det, decision, doc)
    return (_state(status, decision.box_id, index, det),
            _state(after_status, decision.box_id, index, new))


def apply_state(dets: list[dict], state: dict) -> list[dict]:
    """The box list with ``state``'s box put in place (or removed when it is None)."""
    if state["box_id"] is None:
        return dets
    out = [d for d in dets if str(d.get("_id")) != state["box_id"]]
    if state["box"] is not None:
        out.insert(min(state["index"], len(out)), from_json(state["box"]))
    return out


def stable_key(doc: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """What finds the decision's sample and box again once the dataset is ingested anew (new
    ids): the image's file path and, for a box decision, the box as it is now (``source`` gt or
    pred, ``label``, relative ``bounding_box``). Stored in the log record's ``before`` state."""
    key: dict[str, Any] = {"filepath": doc.get("filepath")}
    if decision.box_id:
        preds = (doc.get("predictions") or {}).get("detections") or []
        for source, dets in (("gt", current_boxes(doc)), ("pred", preds)):
            _, det = find_box(dets, decision.box_id)
            if det is not None:
                key["box"] = {"source": source, "label": det.get("label"),
                              "bounding_box": [float(v) for v in det.get("bounding_box") or []]}
                break
    return key


def touched(record: LogRecord) -> set[str]:
    """What a logged decision touched: its box ids (gt and accepted prediction), or image."""
    ids = {record.decision.box_id, record.before.get("box_id"), record.after.get("box_id")}
    return {str(i) for i in ids if i} or {IMAGE}
