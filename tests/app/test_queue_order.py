"""The triage queue comes in the order of the issue the reviewer came for (issue 14): from the
"book: mixed box conventions" card, the most group-boxed image first, not the most mistaken."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from audit.inconsistency import class_conventions, convention_insights
from audit.ui.queue import build_queue
from audit.ui.state import TriageFilter
from tests.app.conftest import N_SAMPLES, build_app_dataset, start_on

_names = itertools.count()


def _table() -> pd.DataFrame:
    """Four flagged samples whose group-box order is the reverse of their mistakenness."""
    return pd.DataFrame({
        "filepath": list("abcd"), "split": "train", "cluster": 0,
        "flagged": [("wrong_class",), ("group_box",), ("group_box",), ("missing",)],
        "mistakenness": [0.9, 0.8, 0.7, 0.6], "group_box_score": [0.0, 0.2, 0.9, float("nan")],
    }, index=pd.Index(["s0", "s1", "s2", "s3"], name="sample_id"))


@pytest.mark.parametrize(("flt", "expected"), [
    (TriageFilter(), ["s0", "s1", "s2", "s3"]),
    (TriageFilter(sample_ids=("s0", "s1", "s2")), ["s0", "s1", "s2"]),
    (TriageFilter(sample_ids=("s0", "s1", "s2"), order_by="group_box"), ["s2", "s1", "s0"]),
    (TriageFilter(order_by="group_box"), ["s2", "s1", "s0", "s3"]),  # NaN last
    (TriageFilter(issue="group_box"), ["s2", "s1"]),
    (TriageFilter(skip_ids=("s0", "s2")), ["s1", "s3"]),
    (TriageFilter(issue="group_box", order_by="spurious"), ["s2", "s1"]),  # no such score
])
def test_the_queue_follows_the_issue_it_is_ordered_by(flt, expected) -> None:
    assert build_queue(_table(), flt).index.tolist() == expected


def test_a_mixed_convention_insight_names_the_group_box_issue() -> None:
    boxes = pd.DataFrame({"sample_id": ["a", "a", "b", "c"], "label": "book",
                          "is_group": [True, False, False, True], "n_members": [4, 1, 1, 3]})
    partial = pd.DataFrame({"partial_classes": [(), (), ()]})
    [insight] = convention_insights(class_conventions(boxes, partial), boxes)
    assert insight.issue == "group_box"
    assert insight.to_dict()["issue"] == "group_box"


@pytest.mark.parametrize("stored_issue", [{"issue": "group_box"}, {}],
                         ids=["names its issue", "stored before insights named one"])
def test_from_the_conventions_card_triage_opens_the_most_group_boxed_image(
        tmp_path, stored_issue: dict) -> None:
    import fiftyone as fo

    name = f"app-test-queue-order-{next(_names)}"
    ds = build_app_dataset(tmp_path / "images", name)
    try:
        ids = ds.values("id")  # mistakenness falls with k: sample 0 is the most mistaken
        ds.set_values("group_box_score", [0.01 * k for k in range(N_SAMPLES)])
        info = ds.info
        info["audit"]["insights"] = [{
            "kind": "inconsistency", "title": "book: mixed box conventions", "severity": 0.9,
            "sentence": "book is labelled two ways.", "cluster": None, "label": "book",
            "sample_ids": ids[:10], "stats": {}, "evidence": {}, **stored_issue}]
        ds.info = info
        ds.save()
        at = start_on(name)
        at.switch_page("pages/insights.py").run()
        at.button(key="insights_triage_0").click().run()
        assert not at.exception, at.exception
        assert at.session_state["app_state"].analysis_sample == ids[9]  # group_box_score 0.09
        assert at.selectbox(key="triage_order").value == "group_box"
    finally:
        fo.delete_dataset(name)
