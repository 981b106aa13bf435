"""The review log read against the dataset: each decision's state, and re-applying the decisions
that a dataset deleted and ingested again under its name left orphaned.

:func:`list_decisions` says of every logged decision whether it is applied, pending, rejected,
``sample_missing`` or ``reapplied``. The review log (``<AUDIT_HOME>/<dataset>/reviews.jsonl``)
outlives the dataset, but its decisions name samples and boxes by FiftyOne ids, which a new
ingest draws anew: every decision of the old dataset is then ``sample_missing``. Each log record
also holds a stable key (:func:`audit.data.review_plan.stable_key`): the image's file path and
the box it was about (source, label, relative box). :func:`reapply_orphaned` finds the sample
now at that file path and the box with that label at that place (within ``GT_TOLERANCE`` for a
label, ``PRED_TOLERANCE`` for a prediction, which the new ingest recomputed) and records the
decision again, in log order, as a new decision whose record names the one it re-applies
(``after["reapplied_from"]``); the old one then reads ``reapplied``. Decisions that cannot be
placed (the image or the box is gone or changed) are left as they are and reported with the
reason. A log written before records kept the key is placed by its label's COCO annotation id
where that is unambiguous. Running it again re-applies nothing twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import fiftyone as fo
import pandas as pd
from fiftyone import ViewField as F

from audit.data.review_plan import current_boxes
from audit.data.review_store import (
    _load_doc,
    _revisions,
    current_revision,
    ensure_review_fields,
    record_decision,
)
from audit.reviews import Decision, LogRecord, read_records

GT_TOLERANCE = 1e-6  # a label box matches at this largest difference of relative coordinates
PRED_TOLERANCE = 1e-3  # a prediction, recomputed by the new ingest, at this one


@dataclass(frozen=True)
class ReapplyReport:
    """What :func:`reapply_orphaned` did.

    Attributes:
        orphaned: decisions on samples no longer in the dataset, not re-applied before.
        reapplied: how many of them are applied now.
        skipped: ``(decision_id, reason)`` for each one left as it was.
    """

    orphaned: int
    reapplied: int
    skipped: tuple[tuple[str, str], ...] = field(default=())

    def summary(self, name: str) -> str:
        """One line for the command line."""
        line = (f"dataset {name!r}: re-applied {self.reapplied} of {self.orphaned} orphaned "
                "review decision(s) by file path and box")
        if self.skipped:
            reasons = sorted({reason for _, reason in self.skipped})
            line += f"; {len(self.skipped)} left as they were ({'; '.join(reasons[:3])})"
        return line


def list_decisions(ds: fo.Dataset, *, sample_id: str | None = None, home=None) -> pd.DataFrame:
    """Every logged decision of ``ds`` (optionally one sample's), in log order.

    Returns:
        One row per decision: the :class:`Decision` fields, ``state`` (``applied``; ``pending``:
        logged but not applied, :func:`replay_log` would apply it; ``rejected``: lost a race;
        ``sample_missing``: the sample is no longer in the dataset; ``reapplied``: it was not,
        and a later decision re-applied it to the sample now at its file path, see
        :func:`reapply_orphaned`),
        and ``revision`` (the sample revision it produced; NaN unless applied).
    """
    records = read_records(ds.name, sample_id=sample_id, home=home)
    columns = [*Decision.__dataclass_fields__, "state", "revision"]
    state = _revisions(ds, {r.decision.sample_id for r in records})
    simulated = {sid: rev for sid, (rev, _) in state.items()}
    reapplied = {r.after.get("reapplied_from") for r in records}
    rows = []
    for record in records:
        d = record.decision
        _, ids = state.get(d.sample_id, (0, []))
        if d.sample_id not in state:
            row_state = "reapplied" if d.decision_id in reapplied else "sample_missing"
            produced = float("nan")
        elif d.decision_id in ids:
            row_state, produced = "applied", float(ids.index(d.decision_id) + 1)
        elif d.base_revision == simulated[d.sample_id]:
            row_state, produced = "pending", float("nan")
            simulated[d.sample_id] += 1
        else:
            row_state, produced = "rejected", float("nan")
        rows.append({**d.to_dict(), "state": row_state, "revision": produced})
    return pd.DataFrame(rows, columns=columns)


def orphaned_records(ds: fo.Dataset, *, home=None) -> list[LogRecord]:
    """The logged decisions whose sample is not in ``ds`` and that nothing re-applied yet, in
    log order, without those that had lost a race in their time (never applied there)."""
    records = [r for r in read_records(ds.name, home=home) if r.decision.dataset == ds.name]
    present = _revisions(ds, {r.decision.sample_id for r in records})
    reapplied = {r.after.get("reapplied_from") for r in records}
    simulated: dict[str, int] = {}
    out = []
    for r in records:
        d = r.decision
        if d.sample_id in present:
            continue
        revision = simulated.get(d.sample_id, 0)
        if d.base_revision != revision:
            continue  # rejected (lost a race) when it was made
        simulated[d.sample_id] = revision + 1
        if d.decision_id not in reapplied:
            out.append(r)
    return out


def reapply_orphaned(ds: fo.Dataset, *, home=None) -> ReapplyReport:
    """Re-apply the decisions of samples no longer in ``ds`` to the samples now at their file
    paths, matching boxes by label and place (see the module docstring).

    A record logged before records kept the key is placed by its box's COCO annotation id (the
    one sample whose label with that id, class and place is still there), and the other
    decisions of its old sample follow it there.

    Returns:
        A :class:`ReapplyReport`. Once a decision of an old sample cannot be placed, its later
        decisions are left too (each builds on the one before).

    Example:
        >>> reapply_orphaned(store.load_dataset("my-data")).reapplied  # doctest: +SKIP
        20
    """
    orphans = orphaned_records(ds, home=home)
    if not orphans:
        return ReapplyReport(0, 0)
    ensure_review_fields(ds)
    places = _Places(dict(zip(ds.values("filepath"), ds.values("id"), strict=True)))
    _place_old_samples(ds, orphans, places)
    failed: dict[str, str] = {}  # old sample id -> why its chain stopped
    skipped, done = [], 0
    for record in orphans:
        old_sample = record.decision.sample_id
        reason = failed.get(old_sample) or _reapply(ds, record, places, home)
        if reason:
            failed.setdefault(old_sample, f"after an earlier one: {reason}")
            skipped.append((record.decision.decision_id, reason))
        else:
            done += 1
    return ReapplyReport(len(orphans), done, tuple(skipped))


@dataclass
class _Places:
    """Where the old ids are now: file path -> sample, old sample -> sample, old box -> box."""

    by_path: dict[str, str]
    samples: dict[str, str] = field(default_factory=dict)
    boxes: dict[str, str] = field(default_factory=dict)


def _key(record: LogRecord) -> dict[str, Any]:
    """The record's stable key; for a record logged before keys were kept, the label box it
    was about (its ``before`` state) as the key's box, without a file path."""
    key = record.before.get("key")
    if isinstance(key, dict):
        return key
    det = record.before.get("box") or {}
    if not det.get("bounding_box"):
        return {}
    return {"box": {"source": "gt", "label": det.get("label"), "coco_id": det.get("coco_id"),
                    "bounding_box": det["bounding_box"]}}


def _sample(ds: fo.Dataset, record: LogRecord, key: dict[str, Any],
            places: _Places) -> tuple[str | None, str]:
    """The sample the record's decision belongs to now, and what the record calls it."""
    old = record.decision.sample_id
    if key.get("filepath"):
        return places.by_path.get(key["filepath"]), str(key["filepath"])
    if old in places.samples:
        return places.samples[old], f"sample {old}"
    box = key.get("box") or {}
    if box.get("coco_id") is None:
        return None, f"sample {old}"
    ids = ds.filter_labels("ground_truth", (F("coco_id") == box["coco_id"])
                           & (F("label") == box.get("label"))).values("id")
    return (ids[0] if len(ids) == 1 else None), f"annotation id {box['coco_id']}"


def _place_old_samples(ds: fo.Dataset, orphans: list[LogRecord], places: _Places) -> None:
    """Find, before anything is re-applied, the sample now of each old sample whose records have
    no file path, by any of its records' label box (an image-level decision may come first)."""
    for record in orphans:
        old, key = record.decision.sample_id, _key(record)
        if old not in places.samples and not key.get("filepath"):
            sample_id, _ = _sample(ds, record, key, places)
            if sample_id is not None:
                places.samples[old] = sample_id


def _reapply(ds: fo.Dataset, record: LogRecord, places: _Places, home) -> str | None:
    """Record one orphaned decision again on its sample now; None, or why it cannot be."""
    key = _key(record)
    old = record.decision
    sample_id, where = _sample(ds, record, key, places)
    if sample_id is None:
        return (f"{where} is not in the dataset" if key.get("filepath") else
                f"{where}: logged before review records kept the file path, and no one label "
                "of the dataset has its annotation id, class and place")
    box_id = None
    if old.box_id:
        box_id = places.boxes.get(old.box_id) or _match(_load_doc(ds, sample_id), key.get("box"))
        box = key.get("box")
        if box_id is None and not box:
            return f"{where}: box {old.box_id} was logged without its label and place"
        if box_id is None:
            return (f"{where} holds no {box.get('source')} box {box.get('label')!r} at "
                    f"{box.get('bounding_box')}")
    decision = replace(old, decision_id=uuid.uuid4().hex, sample_id=sample_id, box_id=box_id,
                       base_revision=current_revision(ds, sample_id))
    try:
        outcome = record_decision(ds, decision, home=home, reapplied_from=old.decision_id)
    except ValueError as exc:  # nothing to undo, a label no longer a class, ...
        return str(exc)
    places.samples[old.sample_id] = sample_id
    if old.box_id:
        places.boxes[old.box_id] = box_id
    if record.after.get("box_id") and outcome.box_id:
        places.boxes[str(record.after["box_id"])] = outcome.box_id
    return None


def _match(doc: dict[str, Any], box: dict[str, Any] | None) -> str | None:
    """Id of the detection of ``doc`` with the key's source, label and relative box, or None."""
    if not box:
        return None
    source = box.get("source")
    dets = current_boxes(doc) if source == "gt" else \
        ((doc.get("predictions") or {}).get("detections") or [])
    tolerance = GT_TOLERANCE if source == "gt" else PRED_TOLERANCE
    want = [float(v) for v in box.get("bounding_box") or []]
    for det in dets:
        have = [float(v) for v in det.get("bounding_box") or []]
        if det.get("label") == box.get("label") and len(have) == len(want) == 4 and \
                max(abs(a - b) for a, b in zip(have, want, strict=True)) <= tolerance:
            return str(det["_id"])
    return None
