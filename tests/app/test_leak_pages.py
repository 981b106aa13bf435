"""The leak card on the Insights page: both images of each pair, and the hand-off to triage."""

from __future__ import annotations

import numpy as np
import pytest

from tests.app.conftest import build_app_dataset, start_on

pytest.importorskip("fiftyone")
from streamlit.testing.v1 import AppTest

from audit.leaks import duplicate_insights, find_duplicates


@pytest.fixture
def leaky(tmp_path) -> tuple[str, str, str]:
    """A scored dataset whose insights hold a leak: a val sample paired with a train sample."""
    import fiftyone as fo

    name = "app-test-leaks"
    ds = build_app_dataset(tmp_path / "images", name)
    ids, splits = ds.values("id"), ds.values("split")
    vectors = np.random.default_rng(0).normal(size=(len(ids), 8))
    val = splits.index("val")
    train = splits.index("train")
    vectors[val] = vectors[train] + 1e-4
    pairs, summary = find_duplicates(vectors, splits, ids)
    info = ds.info
    info["audit"]["insights"] = [i.to_dict() for i in duplicate_insights(pairs, summary)]
    ds.info = info
    ds.save()
    yield name, ids[val], ids[train]
    fo.delete_dataset(name)


def _insights_page(name: str) -> AppTest:
    at = start_on(name)
    at.switch_page("pages/insights.py").run()
    assert not at.exception, at.exception
    return at


def test_leak_card_shows_both_images_and_hands_the_pair_to_triage(leaky):
    name, val_id, train_id = leaky
    at = _insights_page(name)
    assert any("1 val image is a near-copy of a train image" in m.value for m in at.markdown)
    captions = [c for image in at.get("image") for c in image.captions]
    assert any(val_id in c and c.startswith("val") for c in captions), captions
    assert any(train_id in c and c.startswith("train") for c in captions), captions
    at.button(key="insights_triage_0").click().run()
    assert not at.exception
    assert at.session_state["app_state"].triage.sample_ids == (val_id, train_id)
