"""Triage decisions as a reviewer makes them (issue 14): one label per accepted prediction, a
dismissed prediction marked and said so, a note that stays with its own image."""

from __future__ import annotations

import itertools

import pytest

from tests.app.conftest import build_app_dataset, start_on

pytest.importorskip("fiftyone")
from streamlit.testing.v1 import AppTest

_names = itertools.count()


@pytest.fixture
def dataset(tmp_path) -> str:
    """A new scored dataset (sample 0, first in the queue, has a possibly missing person)."""
    name = f"app-test-triage-review-{next(_names)}"
    build_app_dataset(tmp_path / "images", name)
    return name


def _triage(name: str) -> AppTest:
    """The app on the triage page of dataset ``name``."""
    at = start_on(name)
    at.text_input(key="app_reviewer").set_value("ana").run()
    at.switch_page("pages/triage.py").run()
    assert not at.exception, at.exception
    return at


def _boxes(at: AppTest, name: str):
    """Boxes of the sample the triage page shows."""
    from audit.data import store, views

    sid = at.session_state["app_state"].analysis_sample
    return views.sample_boxes(store.load_dataset(name), sid)


def _pick_person(at: AppTest, name: str) -> str:
    """Pick the possibly missing person's prediction; its id."""
    boxes = _boxes(at, name)
    person = boxes[(boxes["source"] == "pred") & (boxes["label"] == "person")].iloc[0]
    at.radio(key="triage_box").set_value(person["box_id"]).run()
    return str(person["box_id"])


def test_a_second_accept_of_one_prediction_adds_no_second_label(dataset):
    at = _triage(dataset)
    person = _pick_person(at, dataset)
    at.button(key="triage_accept").click().run()
    assert at.button(key="triage_accept").disabled  # accepted: the page offers it no more
    boxes = _boxes(at, dataset)
    assert (boxes["source"] == "gt").sum() == 3  # book, cup and the one new person
    assert boxes.set_index("box_id").loc[person, "review_status"] == "accepted"


def test_dismiss_says_so_and_marks_the_prediction(dataset):
    at = _triage(dataset)
    person = _pick_person(at, dataset)
    at.button(key="triage_dismiss").click().run()
    assert not at.exception
    assert [s.value for s in at.success] and "Dismissed the model's box" in at.success[0].value
    assert "Confirmed the image" not in at.success[0].value
    boxes = _boxes(at, dataset).set_index("box_id")
    assert boxes.loc[person, "review_status"] == "dismissed"
    assert "[dismissed]" in at.radio(key="triage_box").format_func(person)
    assert at.button(key="triage_dismiss").disabled


def test_the_note_stays_with_its_image_and_goes_with_its_decisions(dataset):
    from audit.reviews import read_records

    at = _triage(dataset)
    first = at.session_state["app_state"].analysis_sample
    at.text_input(key=f"triage_note_{first}").set_value("shelf half cut off").run()
    at.button(key="triage_delete").click().run()
    at.button(key="triage_next").click().run()
    second = at.session_state["app_state"].analysis_sample
    assert second != first
    assert at.text_input(key=f"triage_note_{second}").value == ""  # nothing carried over
    at.button(key="triage_relabel").click().run()
    notes = {r.decision.sample_id: r.decision.note for r in read_records(dataset)}
    assert notes == {first: "shelf half cut off", second: ""}
    assert {r.decision.reviewer for r in read_records(dataset)} == {"ana"}


def test_unreviewed_only_leaves_out_the_samples_reviewed_so_far(dataset):
    at = _triage(dataset)
    first = at.session_state["app_state"].analysis_sample
    at.button(key="triage_delete").click().run()  # the first sample is reviewed now
    at.toggle(key="triage_unreviewed").set_value(True).run()
    assert not at.exception, at.exception
    state = at.session_state["app_state"]
    assert state.triage.skip_ids == (first,)
    assert state.analysis_sample != first
    at.button(key="triage_confirm").click().run()  # reviewing here keeps the queue still
    assert at.session_state["app_state"].analysis_sample == state.analysis_sample
    at.toggle(key="triage_unreviewed").set_value(False).run()
    assert at.session_state["app_state"].analysis_sample == first
