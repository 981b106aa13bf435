"""The Start page after a dataset was deleted and built again under its name (issue 17, case 6):
it says the review log holds decisions on samples no longer there, and re-applies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.conftest import build_app_dataset, start_on

pytest.importorskip("fiftyone")



def test_orphaned_decisions_are_announced_and_reapplied(tmp_path: Path) -> None:
    from audit.data import store
    from audit.data.review_store import REVIEWED_FIELD, record_decision
    from audit.reviews import Decision

    name = "app-test-reingested"
    ds = build_app_dataset(tmp_path / "images", name)
    sample = ds.first()
    box = sample.ground_truth.detections[0]
    record_decision(ds, Decision(dataset=name, sample_id=sample.id, box_id=box.id,
                                 action="delete", reviewer="ana", base_revision=0))
    ds = build_app_dataset(tmp_path / "images", name)  # deleted and built again: new ids
    try:
        at = start_on(name)
        assert not at.exception, at.exception
        assert any("1 decision(s) on samples no longer in this dataset" in w.value
                   for w in at.warning)
        at.button(key="start_reapply").click().run()
        assert not at.exception, at.exception
        assert any("re-applied 1 of 1" in s.value for s in at.success)
        again = store.load_dataset(name)
        first = again[sample.filepath]
        assert len(first[REVIEWED_FIELD].detections) == len(sample.ground_truth.detections) - 1
    finally:
        ds.delete()
