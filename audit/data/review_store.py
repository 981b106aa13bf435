"""Apply review decisions to the FiftyOne dataset: one conditional write per decision.

Order of one decision (``record_decision``):

0. take the dataset's writer lock (``<AUDIT_HOME>/<dataset>/reviews.lock``, an exclusive
   ``flock``), so writers sharing the review home, processes or threads, run steps 1-3 one at a
   time;
1. read the sample's raw document (the before/after states are planned on it by
   :mod:`audit.data.review_plan`) and check its ``review_revision`` equals the decision's
   ``base_revision``. If the sample moved on, the decision is *rebased* onto the current revision
   when none of the decisions applied since its base touched what it touches (another box of
   the sample: both land); else (the same box, both image-level, an undo on either side)
   :class:`ReviewConflict` is raised and nothing is written;
2. append the decision with the sample's before/after state to the review log
   (``audit.reviews``: exclusive lock + fsync, durable);
3. ONE ``update_one`` on the dataset's MongoDB sample collection, filtered on ``_id``,
   ``review_revision == base_revision`` and "decision id not yet applied", that sets the corrected
   boxes, the status, ``review_revision = base + 1`` and pushes the decision id. FiftyOne's own
   ``Sample.save()`` is not conditional, so this goes through ``Dataset._sample_collection`` (a
   pymongo ``Collection``); the in-memory sample, if any, is reloaded afterwards. If a writer
   outside the lock (another review home) got there first the update matches nothing and
   :class:`ReviewConflict` is raised.

A process killed between 2 and 3 loses nothing: :func:`replay_log` re-applies every logged
decision whose id is not in its sample's ``review_decision_ids`` and whose base revision is still
the sample's revision (the others lost a race and were reported as conflicts).

Schema written here: sample fields ``ground_truth_reviewed`` (Detections: a copy of
``ground_truth`` made at the sample's first decision, then corrected; the original
``ground_truth`` is never touched), ``review_revision`` (int, number of applied decisions),
``review_status`` (``unreviewed`` / ``confirmed`` / ``fixed`` / ``relabel``),
``review_decision_ids`` (list of decision ids in applied order), ``review_dismissed`` (ids of
the predictions dismissed as no object); detection attributes
``review_status`` and, on boxes taken from a prediction, ``accepted_from`` (the prediction id).
Box coordinates: ``Decision.box`` is absolute pixel xyxy, stored as FiftyOne relative
``[x, y, w, h]`` using the sample's ``metadata.width/height`` (or ``width``/``height`` fields).
"""

from __future__ import annotations

import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import fiftyone as fo
from bson import ObjectId
from bson.errors import InvalidId
from fiftyone import ViewField as F
from tqdm.auto import tqdm

from audit.data.review_plan import (
    DISMISSED_FIELD,
    IMAGE,
    REVIEWED_FIELD,
    accepted_as,
    apply_state,
    checked_decision,
    current_boxes,
    plan,
    stable_key,
    touched,
)
from audit.reviews import (
    Decision,
    LogRecord,
    append_record,
    log_path,
    read_records,
    writer_lock,
)

REVIEWED_STATUSES = ("confirmed", "fixed", "relabel")  # statuses that count as reviewed
_PROJECTION = {k: 1 for k in ("filepath", "ground_truth", REVIEWED_FIELD, "predictions", "metadata",
                              "width", "height", "review_revision", "review_status",
                              "review_decision_ids", DISMISSED_FIELD)}


class ReviewConflict(ValueError):
    """A decision was based on a revision that another decision already replaced.

    Attributes:
        decision: the refused decision.
        current_revision: the sample's revision now.
        others: the decisions applied to the sample since ``decision.base_revision``, oldest
            first, so a UI can show who changed what.
    """

    def __init__(self, decision: Decision, current_revision: int,
                 others: Sequence[Decision]) -> None:
        self.decision = decision
        self.current_revision = current_revision
        self.others = tuple(others)
        who = ", ".join(f"{o.action} by {o.reviewer or 'unknown'} at {o.created_at}"
                        for o in self.others) or "decisions not in the log"
        super().__init__(f"dataset {decision.dataset!r}, sample {decision.sample_id}: decision "
                         f"{decision.decision_id} was based on review revision "
                         f"{decision.base_revision} but the sample is at revision "
                         f"{current_revision} ({who}); reload the sample and decide again")


@dataclass(frozen=True)
class ReviewOutcome:
    """What one applied decision did.

    Attributes:
        decision: the decision.
        revision: the sample's review revision after it (the next decision's base_revision).
        sample_status: the sample's review status after it.
        box_id: the ground-truth box it changed (a new id for an accepted prediction), or None.
    """

    decision: Decision
    revision: int
    sample_status: str
    box_id: str | None


def ensure_review_fields(ds: fo.Dataset) -> None:
    """Declare the review fields on ``ds`` if missing (idempotent; call before forking writers)."""
    wanted = {REVIEWED_FIELD, "review_revision", "review_status", "review_decision_ids",
              DISMISSED_FIELD}
    if wanted <= set(ds.get_field_schema()):
        return
    ds.reload()  # another process may have declared them since this handle was loaded
    schema = ds.get_field_schema()
    if REVIEWED_FIELD not in schema:
        ds.add_sample_field(REVIEWED_FIELD, fo.EmbeddedDocumentField,
                            embedded_doc_type=fo.Detections)
    if "review_revision" not in schema:
        ds.add_sample_field("review_revision", fo.IntField)
    if "review_status" not in schema:
        ds.add_sample_field("review_status", fo.StringField)
    for field in ("review_decision_ids", DISMISSED_FIELD):
        if field not in schema:
            ds.add_sample_field(field, fo.ListField, subfield=fo.StringField)


def _load_doc(ds: fo.Dataset, sample_id: str) -> dict[str, Any]:
    """The sample's raw document (review-relevant fields), or ``ValueError`` naming it."""
    try:
        oid = ObjectId(sample_id)
    except (InvalidId, TypeError):
        raise ValueError(f"dataset {ds.name!r}: {sample_id!r} is not a sample id") from None
    doc = ds._sample_collection.find_one({"_id": oid}, _PROJECTION)
    if doc is None:
        raise ValueError(f"dataset {ds.name!r} has no sample {sample_id}")
    return doc


def _write(ds: fo.Dataset, doc: dict, record: LogRecord) -> bool:
    """The one conditional update; True if it applied (doc must be at the record's base)."""
    decision = record.decision
    base = decision.base_revision
    reviewed = {"_cls": "Detections", "detections": apply_state(current_boxes(doc), record.after)}
    changes = {REVIEWED_FIELD: reviewed, "review_revision": base + 1,
               "review_status": record.after["sample_status"],
               "last_modified_at": datetime.now(UTC)}
    if "dismissed" in record.after:  # a dismissed prediction, or the undo of one
        changes[DISMISSED_FIELD] = record.after["dismissed"]
    result = ds._sample_collection.update_one(
        {"_id": doc["_id"], "review_revision": base if base else {"$in": [0, None]},
         "review_decision_ids": {"$ne": decision.decision_id}},
        {"$set": changes, "$push": {"review_decision_ids": decision.decision_id}},
    )
    return result.matched_count == 1


def _decisions(ds: fo.Dataset, sample_id: str, ids: Sequence[str], home) -> list[Decision]:
    """The logged decisions with these ids, in the order of ``ids``."""
    by_id = {r.decision.decision_id: r.decision
             for r in read_records(ds.name, sample_id=sample_id, home=home)}
    return [by_id[i] for i in ids if i in by_id]


def _conflict(ds: fo.Dataset, decision: Decision, doc: dict, home) -> ReviewConflict:
    """Build the conflict error with the decisions applied since the decision's base."""
    applied = doc.get("review_decision_ids") or []
    since = applied[decision.base_revision:]
    others = _decisions(ds, decision.sample_id, since, home)
    return ReviewConflict(decision, doc.get("review_revision") or 0, others)


def _rebase(ds: fo.Dataset, decision: Decision, doc: dict, home) -> Decision:
    """``decision`` moved onto the sample's current revision, or ReviewConflict.

    It moves when every decision applied since its base is in the log, none is an undo, and none
    touched the box it is about (or, for an image-level decision, none was image-level). An undo
    never moves: it reverts whatever was applied last.
    """
    current = doc.get("review_revision") or 0
    since_ids = (doc.get("review_decision_ids") or [])[decision.base_revision:]
    if decision.action == "undo" or decision.base_revision > current or not since_ids:
        raise _conflict(ds, decision, doc, home)
    by_id = {r.decision.decision_id: r
             for r in read_records(ds.name, sample_id=decision.sample_id, home=home)}
    since = [by_id.get(i) for i in since_ids]
    target = decision.box_id or IMAGE
    if any(r is None or r.decision.action == "undo" or target in touched(r) for r in since):
        raise _conflict(ds, decision, doc, home)
    return replace(decision, base_revision=current)


def record_decision(ds: fo.Dataset, decision: Decision, *, home=None,
                    reapplied_from: str | None = None) -> ReviewOutcome:
    """Log and apply one decision atomically (see the module docstring for the order).

    Args:
        ds: the dataset named by ``decision.dataset``.
        decision: the decision; ``base_revision`` is the sample's review revision the reviewer
            saw. If the sample has moved on only through decisions on other boxes, the decision
            is rebased (logged and applied with ``base_revision`` = the current revision, the
            revision it was made on kept as ``rebased_from`` in the record's ``after`` state).
        home: folder holding the review logs (default ``constants.AUDIT_HOME``).
        reapplied_from: the id of an orphaned decision this one re-applies (kept in the
            record's ``after`` state; see :mod:`audit.data.review_log`).

    Returns:
        A :class:`ReviewOutcome` (its ``decision`` is the one applied, rebased or not);
        recording an already-applied decision again returns its outcome, and so does
        accepting a prediction that a box was already taken from (that box; nothing logged).

    Raises:
        ReviewConflict: the sample moved past ``base_revision`` through a decision on the same
            box (or an undo, or another image-level decision); carries those decisions.
        ValueError: unknown sample or box, a decision for another dataset, nothing to undo, a
            label that is not one of the dataset's classes, a box wholly outside the image
            (a box partly outside is clipped to it); nothing is written then.

    Example:
        >>> out = record_decision(ds, Decision(dataset=ds.name, sample_id=sid, box_id=bid,
        ...                       action="fix_class", new_label="cat", base_revision=0))
        >>> out.revision
        1
    """
    if decision.dataset != ds.name:
        raise ValueError(f"decision {decision.decision_id} is for dataset {decision.dataset!r}, "
                         f"not {ds.name!r}")
    decision = checked_decision(_load_doc(ds, decision.sample_id), decision, class_names(ds))
    ensure_review_fields(ds)
    with writer_lock(ds.name, home=home):
        return _record_locked(ds, decision, home, reapplied_from)


def class_names(ds: fo.Dataset) -> list[str]:
    """The labels a review may give: the model's classes stored at ingest, else (a dataset not
    built by the auditor) the labels its ground truth and predictions use."""
    stored = ((ds.info or {}).get("audit") or {}).get("class_names")
    if stored:
        return [str(n) for n in stored]
    schema = ds.get_field_schema()
    used = {label for field in ("ground_truth", "predictions") if field in schema
            for label in ds.distinct(f"{field}.detections.label")}
    return sorted(map(str, used))


def _record_locked(ds: fo.Dataset, decision: Decision, home,
                   reapplied_from: str | None = None) -> ReviewOutcome:
    """Body of :func:`record_decision`, run under the writer lock."""
    doc = _load_doc(ds, decision.sample_id)
    applied = doc.get("review_decision_ids") or []
    if decision.decision_id in applied:
        return _outcome_of_applied(ds, decision, applied, home)
    seen = decision.base_revision
    if (doc.get("review_revision") or 0) != seen:
        decision = _rebase(ds, decision, doc, home)
    if decision.action == "accept_prediction" and (kept := accepted_as(doc, decision.box_id)):
        return ReviewOutcome(decision, doc.get("review_revision") or 0,  # one box per prediction
                             doc.get("review_status") or "unreviewed", kept)
    history = []
    if decision.action == "undo":
        by_id = {r.decision.decision_id: r
                 for r in read_records(ds.name, sample_id=decision.sample_id, home=home)}
        history = [by_id[i] for i in applied if i in by_id]
    before, after = plan(doc, decision, history)
    if decision.base_revision != seen:
        after = {**after, "rebased_from": seen}
    if reapplied_from:
        after = {**after, "reapplied_from": reapplied_from}
    record = LogRecord(decision, {**before, "key": stable_key(doc, decision)}, after)
    append_record(record, home=home)
    if not _write(ds, doc, record):
        doc = _load_doc(ds, decision.sample_id)
        if decision.decision_id not in (doc.get("review_decision_ids") or []):
            raise _conflict(ds, decision, doc, home)  # lost the race after the early check
    fo.Sample._reload_doc(ds._sample_collection_name, decision.sample_id)
    return ReviewOutcome(decision, decision.base_revision + 1, after["sample_status"],
                         after["box_id"])


def _outcome_of_applied(ds, decision: Decision, applied: list[str], home) -> ReviewOutcome:
    """Outcome of a decision that is already applied (idempotent re-record)."""
    record = next((r for r in read_records(ds.name, sample_id=decision.sample_id, home=home)
                   if r.decision.decision_id == decision.decision_id), None)
    status = record.after["sample_status"] if record else "unreviewed"
    box_id = record.after["box_id"] if record else decision.box_id
    return ReviewOutcome(decision, applied.index(decision.decision_id) + 1, status, box_id)


def _revisions(ds: fo.Dataset, sample_ids: set[str]) -> dict[str, tuple[int, list[str]]]:
    """``sample_id -> (review_revision, review_decision_ids)`` for the existing samples."""
    oids = [ObjectId(s) for s in sample_ids if ObjectId.is_valid(s)]
    docs = ds._sample_collection.find({"_id": {"$in": oids}},
                                      {"review_revision": 1, "review_decision_ids": 1})
    return {str(d["_id"]): (d.get("review_revision") or 0, list(d.get("review_decision_ids") or []))
            for d in docs}


def replay_log(ds: fo.Dataset, *, home=None, progress: bool = True) -> int:
    """Re-apply logged decisions that never reached the dataset (e.g. a kill between writes).

    A logged decision is re-applied when its id is not in its sample's ``review_decision_ids``
    and its ``base_revision`` is still the sample's revision; decisions whose base is stale lost
    a race (they were reported as conflicts) and are left out. Idempotent.

    Returns:
        The number of decisions applied now.
    """
    if not log_path(ds.name, home=home).exists():
        return 0
    ensure_review_fields(ds)
    with writer_lock(ds.name, home=home):
        records = [r for r in read_records(ds.name, home=home) if r.decision.dataset == ds.name]
        return _replay_locked(ds, records, progress) if records else 0


def _replay_locked(ds: fo.Dataset, records: list[LogRecord], progress: bool) -> int:
    """Body of :func:`replay_log`, run under the writer lock."""
    state = _revisions(ds, {r.decision.sample_id for r in records})
    reapplied = {r.after.get("reapplied_from") for r in records}
    orphans = [r for r in records if r.decision.sample_id not in state
               and r.decision.decision_id not in reapplied]
    if orphans:
        missing = sorted({r.decision.sample_id for r in orphans})
        warnings.warn(f"review log of {ds.name!r}: {len(orphans)} decision(s) on "
                      f"{len(missing)} sample(s) no longer in the dataset (deleted, or the "
                      f"dataset was ingested again; e.g. sample {missing[0]}): re-apply them by "
                      f"file path and box with `python -m audit reviews --name "
                      f"{shlex.quote(ds.name)} --reapply`", stacklevel=3)
    applied = 0
    for record in tqdm(records, desc="replay reviews", disable=not progress):
        d = record.decision
        if d.sample_id not in state:
            continue
        revision, ids = state[d.sample_id]
        if d.decision_id in ids or d.base_revision != revision:
            continue
        if _write(ds, _load_doc(ds, d.sample_id), record):
            state[d.sample_id] = (revision + 1, [*ids, d.decision_id])
            applied += 1
    if applied:
        ds.reload()
    return applied


def current_revision(ds: fo.Dataset, sample_id: str) -> int:
    """The sample's review revision now: the ``base_revision`` for its next decision."""
    return _load_doc(ds, sample_id).get("review_revision") or 0


def review_progress(ds: fo.Dataset | fo.DatasetView) -> tuple[int, int]:
    """``(reviewed, total_flagged)``: flagged samples with a decision, and all flagged samples.

    A sample is flagged when its ``flagged`` list (written by scoring) is non-empty; reviewed when
    its ``review_status`` is confirmed, fixed or relabel. ``(0, 0)`` before scoring.
    """
    schema = ds.get_field_schema()
    if "flagged" not in schema:
        return 0, 0
    flagged = ds.exists("flagged").match(F("flagged").length() > 0)
    if "review_status" not in schema:
        return 0, flagged.count()
    return flagged.match(F("review_status").is_in(REVIEWED_STATUSES)).count(), flagged.count()


def corrected_detections(ds: fo.Dataset | fo.DatasetView) -> fo.DatasetView:
    """A view whose ``ground_truth`` holds the corrected boxes: reviewed where present, else GT.

    Nothing is written: the view swaps the field with an aggregation expression, so FiftyOne's
    exporters and ``values()`` read corrected labels (deleted boxes gone, fixed classes and
    accepted predictions in) while the stored ``ground_truth`` stays the original.
    """
    if REVIEWED_FIELD not in ds.get_field_schema():
        return ds.view()
    reviewed = F(REVIEWED_FIELD)
    return ds.set_field("ground_truth", (reviewed != None).if_else(reviewed, F("ground_truth")))  # noqa: E711
