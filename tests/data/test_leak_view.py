"""The ``leaks`` saved view written with the scores (audit.data.store_write.save_leak_view)."""

from __future__ import annotations

import pytest

pytest.importorskip("fiftyone")

from audit.data.store_write import LEAK_VIEW, save_leak_view
from tests.app.conftest import build_app_dataset


@pytest.fixture
def dataset(tmp_path):
    import fiftyone as fo

    ds = build_app_dataset(tmp_path / "images", "leak-view-test")
    yield ds
    fo.delete_dataset("leak-view-test")


def test_leak_view_holds_both_images_of_each_pair_then_goes(dataset):
    import fiftyone as fo

    ids = dataset.values("id")
    sample = dataset[ids[3]]
    sample.predictions.detections.append(fo.Detection(label="cup", confidence=0.1,
                                                      bounding_box=[0.1, 0.1, 0.2, 0.2]))
    sample.save()  # a faint prediction the view hides
    insights = [{"kind": "leak", "sample_ids": [ids[3], ids[1], ids[3]]},
                {"kind": "duplicate", "sample_ids": [ids[5], ids[6]]}]  # within a split: not
    assert save_leak_view(dataset, insights) == 2
    view = dataset.load_saved_view(LEAK_VIEW)
    assert view.values("id") == [ids[3], ids[1]]
    assert min(view.values("predictions.detections.confidence", unwind=True)) >= 0.25
    assert save_leak_view(dataset, insights[1:]) == 0  # re-scored without a leak
    assert not dataset.has_saved_view(LEAK_VIEW)
    assert save_leak_view(dataset, []) == 0
