"""audit.data.relabel: the relabel CSV lists what is left to relabel, with the decisions on it.

A box confirmed, fixed or deleted is reviewed and no longer listed (the export page says the CSV
lists the boxes not yet reviewed); an image marked for relabelling is listed with the reviewer's
decision, note, name and time, and an undo takes it off again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("fiftyone")


@pytest.fixture
def ds() -> Iterator[object]:
    """Six samples, three scored gt boxes and three scored predictions each."""
    from benchmarks.review_load import build_review_dataset

    ds = build_review_dataset(f"relabel-{uuid.uuid4().hex[:8]}", 6)
    yield ds
    ds.delete()


def _decide(ds, sample_id: str, action: str, box_id: str | None = None, **kw):
    """Record one decision by 'ana' on the sample's current revision."""
    from audit.data.review_store import current_revision, record_decision
    from audit.reviews import Decision

    return record_decision(ds, Decision(
        dataset=ds.name, sample_id=sample_id, box_id=box_id, action=action, reviewer="ana",
        base_revision=current_revision(ds, sample_id), **kw))


def _flagged_gt(frame: pd.DataFrame, ds) -> list[tuple[str, str]]:
    """``(sample_id, box_id)`` of the listed ground-truth boxes."""
    gt = {d.id for s in ds for d in s.ground_truth.detections}
    return [(s, b) for s, b in zip(frame["sample_id"], frame["box_id"], strict=True) if b in gt]


def test_reviewed_boxes_are_not_listed_and_open_ones_are(ds) -> None:
    from audit.data.relabel import relabel_frame

    listed = _flagged_gt(relabel_frame(ds), ds)
    assert len(listed) >= 4
    (s1, b1), (s2, b2), (s3, b3), rest = listed[0], listed[1], listed[2], listed[3:]
    _decide(ds, s1, "delete", b1)
    _decide(ds, s2, "confirm", b2)
    label = next(d.label for d in ds[s3].ground_truth.detections if d.id == b3)
    _decide(ds, s3, "fix_class", b3, new_label="crate" if label != "crate" else "ball")
    after = relabel_frame(ds)
    assert set(_flagged_gt(after, ds)) == set(rest)
    assert set(after["review_status"]) <= {"unreviewed", "relabel"}


def test_a_prediction_accepted_or_dismissed_is_not_listed(ds) -> None:
    from audit.data.relabel import relabel_frame

    frame = relabel_frame(ds)
    gt = {d.id for s in ds for d in s.ground_truth.detections}
    preds = frame[~frame["box_id"].isin(gt) & frame["box_id"].notna()]
    assert len(preds) >= 2
    (s1, p1), (s2, p2) = list(zip(preds["sample_id"], preds["box_id"], strict=True))[:2]
    _decide(ds, s1, "accept_prediction", p1)
    _decide(ds, s2, "dismiss", p2)
    assert not {p1, p2} & set(relabel_frame(ds)["box_id"])


def test_an_image_marked_for_relabelling_carries_the_note_reviewer_and_time(ds) -> None:
    from audit.data.relabel import DECISION_COLUMNS, relabel_frame

    sample = ds.skip(1).first()
    outcome = _decide(ds, sample.id, "relabel", note="shelf half cut off")
    frame = relabel_frame(ds)
    assert list(frame.columns[-4:]) == list(DECISION_COLUMNS)
    row = frame[(frame["sample_id"] == sample.id) & frame["box_id"].isna()]
    assert len(row) == 1
    assert row.iloc[0][list(DECISION_COLUMNS)].tolist() == [
        "relabel", "shelf half cut off", "ana", outcome.decision.created_at]
    assert row.iloc[0]["review_status"] == "relabel"
    _decide(ds, sample.id, "undo")
    frame = relabel_frame(ds)
    assert frame[(frame["sample_id"] == sample.id) & frame["box_id"].isna()].empty


def test_the_csv_file_holds_the_decision_columns(ds, tmp_path: Path) -> None:
    from audit.data.exports import export

    sample = ds.first()
    _decide(ds, sample.id, "relabel", note="blurred, redo every box")
    frame = pd.read_csv(export(ds, "relabel-csv", tmp_path), keep_default_na=False)
    row = frame[(frame["sample_id"] == sample.id) & (frame["box_id"] == "")]
    assert row[["decision", "note", "reviewer"]].values.tolist() == [
        ["relabel", "blurred, redo every box", "ana"]]
    assert row["decided_at"].iloc[0].startswith("20")
