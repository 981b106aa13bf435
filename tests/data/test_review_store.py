"""audit.data.review_store: what a review may write (the refusals are in test_catalogue.py).

A box partly outside the image is clipped to it before it is logged or stored, so no export
holds a negative COCO bbox or a YOLO coordinate above 1; a dataset without stored class names
takes the labels it uses as its classes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fiftyone")

WIDTH, HEIGHT = 320, 240  # build_review_dataset's image size


@pytest.fixture
def review_ds() -> Iterator[object]:
    """Two samples, three gt boxes each, classes ball / crate / book stored in the info."""
    from benchmarks.review_load import build_review_dataset

    ds = build_review_dataset(f"review-store-{uuid.uuid4().hex[:8]}", 2)
    yield ds
    ds.delete()


def test_a_box_partly_outside_is_clipped_before_it_is_logged_or_exported(review_ds,
                                                                        tmp_path: Path) -> None:
    from audit.data.exports import export
    from audit.data.review_store import REVIEWED_FIELD, record_decision
    from audit.reviews import Decision, read_records

    sample = review_ds.first()
    box_id = sample.ground_truth.detections[0].id
    outcome = record_decision(review_ds, Decision(
        dataset=review_ds.name, sample_id=sample.id, box_id=box_id, action="accept_prediction",
        box=(-20.0, 100.0, 350.0, 260.0), base_revision=0), home=tmp_path)
    assert outcome.decision.box == (0.0, 100.0, WIDTH, HEIGHT)
    [record] = read_records(review_ds.name, home=tmp_path)
    assert record.decision.box == (0.0, 100.0, WIDTH, HEIGHT)  # the log holds the clipped box
    review_ds.reload()
    det = next(d for d in review_ds.first()[REVIEWED_FIELD].detections if d.id == box_id)
    assert det.bounding_box == pytest.approx([0.0, 100 / HEIGHT, 1.0, 140 / HEIGHT])

    coco = json.loads(export(review_ds, "coco", tmp_path / "out").read_text())
    assert all(v >= 0 for a in coco["annotations"] for v in a["bbox"])
    yolo = export(review_ds, "yolo", tmp_path / "out")
    values = [float(v) for txt in yolo.glob("labels/*/*.txt")
              for line in txt.read_text().splitlines() for v in line.split()[1:]]
    assert values and all(0 <= v <= 1 for v in values)


def test_without_stored_classes_the_labels_in_use_are_the_classes(review_ds,
                                                                  tmp_path: Path) -> None:
    from audit.data.review_store import class_names, record_decision
    from audit.reviews import Decision

    review_ds.info = {}
    review_ds.save()
    assert set(class_names(review_ds)) <= {"ball", "crate", "book"}
    sample = review_ds.first()
    label = sample.ground_truth.detections[1].label
    decide = {"dataset": review_ds.name, "sample_id": sample.id, "action": "fix_class",
              "box_id": sample.ground_truth.detections[0].id, "base_revision": 0}
    assert record_decision(review_ds, Decision(**decide, new_label=label),
                           home=tmp_path).revision == 1
    with pytest.raises(ValueError, match=f"sample {sample.id}: label 'lamp' is not a class"):
        record_decision(review_ds, Decision(**decide | {"base_revision": 1}, new_label="lamp"),
                        home=tmp_path)


def _first_prediction(ds) -> tuple[object, str]:
    """The first sample and the id of its first prediction."""
    sample = ds.first()
    return sample, sample.predictions.detections[0].id


def test_accepting_one_prediction_twice_adds_one_label(review_ds, tmp_path: Path) -> None:
    from audit.data.review_store import REVIEWED_FIELD, current_revision, record_decision
    from audit.reviews import Decision, read_records

    sample, pred_id = _first_prediction(review_ds)
    outcomes = [record_decision(review_ds, Decision(
        dataset=review_ds.name, sample_id=sample.id, box_id=pred_id, action="accept_prediction",
        base_revision=current_revision(review_ds, sample.id)), home=tmp_path) for _ in range(2)]
    review_ds.reload()
    taken = [d for d in review_ds.first()[REVIEWED_FIELD].detections
             if d.get_attribute_value("accepted_from", None) == pred_id]
    assert [d.id for d in taken] == [outcomes[0].box_id] == [outcomes[1].box_id]
    assert len(read_records(review_ds.name, home=tmp_path)) == 1  # the second logs nothing
    assert outcomes[1].revision == 1


def test_an_accepted_prediction_undone_can_be_accepted_again(review_ds, tmp_path: Path) -> None:
    from audit.data.review_store import REVIEWED_FIELD, current_revision, record_decision
    from audit.reviews import Decision

    sample, pred_id = _first_prediction(review_ds)
    for action, box_id in (("accept_prediction", pred_id), ("undo", None),
                           ("accept_prediction", pred_id)):
        record_decision(review_ds, Decision(
            dataset=review_ds.name, sample_id=sample.id, box_id=box_id, action=action,
            base_revision=current_revision(review_ds, sample.id)), home=tmp_path)
    review_ds.reload()
    assert sum(d.get_attribute_value("accepted_from", None) == pred_id
               for d in review_ds.first()[REVIEWED_FIELD].detections) == 1
    assert current_revision(review_ds, sample.id) == 3


def test_a_dismissed_prediction_is_marked_and_its_undo_clears_the_mark(review_ds,
                                                                       tmp_path: Path) -> None:
    from audit.data.review_plan import DISMISSED_FIELD
    from audit.data.review_store import current_revision, record_decision
    from audit.reviews import Decision

    sample, pred_id = _first_prediction(review_ds)
    labels_before = [d.id for d in sample.ground_truth.detections]
    outcome = record_decision(review_ds, Decision(
        dataset=review_ds.name, sample_id=sample.id, box_id=pred_id, action="dismiss",
        base_revision=0), home=tmp_path)
    assert (outcome.sample_status, outcome.box_id) == ("confirmed", None)
    review_ds.reload()
    stored = review_ds.first()
    assert stored[DISMISSED_FIELD] == [pred_id]
    assert [d.id for d in stored.ground_truth_reviewed.detections] == labels_before
    record_decision(review_ds, Decision(
        dataset=review_ds.name, sample_id=sample.id, action="undo",
        base_revision=current_revision(review_ds, sample.id)), home=tmp_path)
    review_ds.reload()
    assert review_ds.first()[DISMISSED_FIELD] == []


def test_dismissing_a_label_instead_of_a_prediction_is_refused(review_ds, tmp_path: Path) -> None:
    from audit.data.review_store import record_decision
    from audit.reviews import Decision

    sample = review_ds.first()
    with pytest.raises(ValueError, match="not one of its predictions"):
        record_decision(review_ds, Decision(
            dataset=review_ds.name, sample_id=sample.id, action="dismiss",
            box_id=sample.ground_truth.detections[0].id, base_revision=0), home=tmp_path)
