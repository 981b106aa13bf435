"""The relabel list: what is left for a relabelling team, with the reviewers' decisions on it.

One row per flagged box not yet reviewed, per flagged image-level issue not yet settled, and per
image a reviewer marked for relabelling, each with the decision in force on it (``decision``,
``note``, ``reviewer``, ``decided_at``; empty where there is none). A box a reviewer confirmed,
fixed or deleted, and a prediction accepted as a label or dismissed, is reviewed: it is not
listed. The decisions are read from the review log (:mod:`audit.reviews`), in the order the
dataset applied them, with undone ones left out.

Boxes are absolute px ``xyxy``; higher score = more likely wrong.
"""

from __future__ import annotations

from typing import Any

import fiftyone as fo
import pandas as pd
from fiftyone import ViewField as F

from audit import issues as I
from audit.config import ScoringConfig
from audit.data.review_plan import DISMISSED_FIELD, REVIEWED_FIELD
from audit.data.views import scoring_config
from audit.mistakenness import is_flagged
from audit.reviews import Decision, in_force, read_records

DECISION_COLUMNS = ("decision", "note", "reviewer", "decided_at")
RELABEL_COLUMNS = ("sample_id", "filepath", "split", "issue", "score", "x1", "y1", "x2", "y2",
                   "current_label", "suggested_label", "review_status", "box_id",
                   *DECISION_COLUMNS)
OPEN_STATUSES = ("unreviewed", "relabel")  # box statuses still listed: nothing settled them


def decisions_in_force(ds: fo.Dataset, applied: dict[str, list[str]]
                       ) -> dict[tuple[str, str | None], Decision]:
    """``(sample_id, box_id or None) -> `` the last decision in force on that box or image.

    Args:
        ds: the dataset (its review log is read).
        applied: ``sample_id -> review_decision_ids`` (the order the dataset applied them).
    """
    by_id = {r.decision.decision_id: r for r in read_records(ds.name)}
    out: dict[tuple[str, str | None], Decision] = {}
    for sample_id, ids in applied.items():
        for record in in_force([by_id[i] for i in ids or [] if i in by_id]):
            out[(sample_id, record.decision.box_id)] = record.decision
    return out


def _decision_cells(decision: Decision | None) -> dict[str, str]:
    """The ``DECISION_COLUMNS`` of one row."""
    if decision is None:
        return dict.fromkeys(DECISION_COLUMNS, "")
    return {"decision": decision.action, "note": decision.note, "reviewer": decision.reviewer,
            "decided_at": decision.created_at}


def _score(det: Any, issue: str) -> float:
    """``<issue>_score`` attribute of a detection, NaN when absent."""
    value = det.get_field(f"{issue}_score") if det.has_field(f"{issue}_score") else None
    return float(value) if value is not None else float("nan")


def _xyxy(det: Any, width: float, height: float) -> list[float]:
    """FiftyOne relative ``[x, y, w, h]`` -> absolute px ``[x1, y1, x2, y2]``."""
    x, y, w, h = det.bounding_box
    return [x * width, y * height, (x + w) * width, (y + h) * height]


def _hit(det: Any, issues: tuple[str, ...], config: ScoringConfig) -> tuple[str, float] | None:
    """The highest-scoring issue that flags ``det`` at ``config``'s thresholds, or None."""
    thresholds = config.flag_thresholds()
    scores = {i: _score(det, i) for i in issues}
    hits = {i: s for i, s in scores.items() if is_flagged(
        i, s, det.confidence, threshold=thresholds[i], missing_flag_conf=config.missing_flag_conf)}
    return max(hits.items(), key=lambda kv: kv[1]) if hits else None


def _current(sample: dict[str, Any], source: str, det: Any) -> tuple[Any, str]:
    """The box as reviewed (None: deleted, or a prediction) and its review status."""
    reviewed = sample["reviewed"]
    if source == "pred":
        accepted = {d.get_attribute_value("accepted_from", None)
                    for d in (reviewed.detections if reviewed else [])}
        status = "fixed" if det.id in accepted else \
            "dismissed" if det.id in (sample.get("dismissed") or []) else "unreviewed"
        return None, status
    if reviewed is None:
        return det, "unreviewed"
    current = next((d for d in reviewed.detections if d.id == det.id), None)
    if current is None:
        return None, "deleted"
    return current, (current.get_field("review_status") if current.has_field("review_status")
                     else None) or "unreviewed"


def _box_rows(sample: dict[str, Any], config: ScoringConfig,
              decided: dict[tuple[str, str | None], Decision]
              ) -> tuple[list[dict[str, Any]], set[str]]:
    """Rows of one sample's flagged boxes not yet reviewed (gt issues, then missing
    predictions), flagged at ``config``'s thresholds; and the issues its boxes are flagged for,
    reviewed or not."""
    rows, covered = [], set()
    for source, issues in (("gt", I.GT_ISSUES), ("pred", I.PRED_ISSUES)):
        labels = sample[source]
        for det in labels.detections if labels else []:
            hit = _hit(det, issues, config)
            if hit is None:
                continue
            covered.add(hit[0])
            current, status = _current(sample, source, det)
            if status not in OPEN_STATUSES:
                continue
            suggested = det.get_field("suggested_label") if det.has_field("suggested_label") \
                else (det.label if source == "pred" else None)
            box = _xyxy(current or det, sample["width"], sample["height"])
            rows.append({"issue": hit[0], "score": hit[1], "x1": box[0], "y1": box[1],
                         "x2": box[2], "y2": box[3], "box_id": det.id, "review_status": status,
                         "current_label": current.label if current is not None else "",
                         "suggested_label": suggested or "",
                         **_decision_cells(decided.get((sample["id"], det.id)))})
    return rows, covered


def _image_rows(sample: dict[str, Any], covered: set[str],
                decided: dict[tuple[str, str | None], Decision]) -> list[dict[str, Any]]:
    """Rows of one sample's flagged image-level issues that no box row covers and no image
    decision settled, and one row for an image marked for relabelling (with its note)."""
    decision = decided.get((sample["id"], None))
    if decision is not None and decision.action != "relabel":
        return []  # the image was confirmed as it is
    status = sample.get("review_status") or "unreviewed"
    cells = _decision_cells(decision)
    if decision is not None and not decision.note:  # the latest note typed on this image
        notes = [d.note for (sid, _), d in decided.items() if sid == sample["id"] and d.note]
        cells["note"] = notes[-1] if notes else ""
    rows = [{"issue": issue, "review_status": status, **cells,
             "score": float("nan") if sample.get(f"{issue}_score") is None
             else sample[f"{issue}_score"]}
            for issue in sorted(set(sample.get("flagged") or []) - covered)]
    if decision is not None and not rows:
        rows.append({"issue": "", "score": float("nan"), "review_status": status, **cells})
    return rows


def relabel_frame(ds: fo.Dataset, *, split: str | None = None) -> pd.DataFrame:
    """The relabel list: what a relabelling team still has to do, highest score first.

    A box is listed when one of its ``<issue>_score`` attributes flags it
    (:func:`audit.mistakenness.is_flagged` at the thresholds stored with the dataset's scores,
    :func:`audit.data.store.scoring_config`; ``missing`` is scored on prediction boxes and needs
    their confidence to reach its ``missing_flag_conf``) and no review settled it (see the
    module docstring); ``issue``/``score`` are its highest one. An image is listed once more for
    each issue in its ``flagged`` list that no box row covers (e.g. ``partial_labels``), with an
    empty box, unless a reviewer confirmed the image; an image marked for relabelling is listed
    (``issue`` empty when nothing else lists it) with the reviewer's decision, note and time.
    Coordinates are the corrected box in absolute px ``xyxy``; ``review_status`` is the box's,
    or the sample's for image rows. Higher score = more likely wrong.

    Returns:
        A frame with columns ``RELABEL_COLUMNS`` (empty with those columns if nothing is listed).
    """
    view = ds.match(F("split") == split) if split is not None else ds.view()
    schema = view.get_field_schema()
    paths = {"id": "id", "filepath": "filepath", "width": "metadata.width",
             "height": "metadata.height", "gt": "ground_truth", "pred": "predictions"}
    paths |= {k: k for k in ("split", "flagged", "review_status", "review_decision_ids")
              if k in schema}
    paths |= {f"{i}_score": f"{i}_score" for i in I.NAMES if f"{i}_score" in schema}
    paths |= {k: f for k, f in (("reviewed", REVIEWED_FIELD), ("dismissed", DISMISSED_FIELD))
              if f in schema}
    values = dict(zip(paths, view.values(list(paths.values())), strict=True))
    config = scoring_config(ds)
    decided = decisions_in_force(ds, dict(zip(values["id"], values.get(
        "review_decision_ids", [[]] * len(values["id"])), strict=True)))
    rows = []
    for i, sample_id in enumerate(values["id"]):
        sample = {"reviewed": None} | {k: values[k][i] for k in paths}
        if not sample["width"] or not sample["height"]:
            raise ValueError(f"sample {sample_id} ({sample['filepath']}) has no image size")
        box_rows, covered = _box_rows(sample, config, decided)
        box_rows += _image_rows(sample, covered, decided)
        rows += [{"sample_id": sample_id, "filepath": sample["filepath"],
                  "split": sample.get("split"), **row} for row in box_rows]
    frame = pd.DataFrame(rows, columns=list(RELABEL_COLUMNS))
    return frame.sort_values("score", ascending=False, na_position="last", kind="stable") \
        .reset_index(drop=True)
