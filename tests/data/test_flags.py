"""One flag rule (audit.mistakenness.is_flagged) for the scorer, the triage boxes and the
relabel list: a faint unlabelled prediction is ranked by its missing score but not flagged."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("fiftyone")
import fiftyone as fo

from audit import constants as C
from audit.data.exports import relabel_frame
from audit.data.views import sample_boxes
from audit.mistakenness import is_flagged


@pytest.fixture
def dataset():
    def pred(x: float, conf: float) -> fo.Detection:
        det = fo.Detection(label="cat", bounding_box=[x, 0.1, 0.2, 0.2], confidence=conf)
        det["missing_score"] = 0.8
        return det

    ds = fo.Dataset()
    sample = fo.Sample(filepath="/tmp/flags/0.jpg", split="val",
                       metadata=fo.ImageMetadata(width=100, height=100),
                       ground_truth=fo.Detections(detections=[]),
                       predictions=fo.Detections(detections=[pred(0.1, 0.6), pred(0.5, 0.1)]))
    ds.add_sample(sample)
    yield ds, sample.id, [d.id for d in sample.predictions.detections]
    ds.delete()


def test_the_rule_needs_the_confidence_floor_for_missing_only() -> None:
    assert is_flagged("missing", [0.8, 0.8, 0.2], [0.6, 0.1, 0.9]).tolist() == [True, False,
                                                                                False]
    below = C.SPURIOUS_SCORE - 0.01
    assert is_flagged("spurious", [C.SPURIOUS_SCORE, below]).tolist() == [True, False]
    assert not is_flagged("bad_box", float("nan"))


def test_triage_boxes_and_relabel_list_follow_the_rule(dataset) -> None:
    ds, sample_id, (bright, faint) = dataset
    boxes = sample_boxes(ds, sample_id).set_index("box_id")
    assert boxes.loc[bright, "flagged_issue"] == "missing"
    assert pd.isna(boxes.loc[faint, "flagged_issue"])
    assert boxes.loc[faint, "missing_score"] == pytest.approx(0.8)  # still scored
    rows = relabel_frame(ds)
    assert rows["box_id"].tolist() == [bright]
