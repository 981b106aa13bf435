"""What survives a reload (issue 14): the dataset and the reviewer ride in the URL's query
parameters, and the Start page opens on the dataset picked last, never on one the auditor did not
build."""

from __future__ import annotations

import uuid

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import APP, build_app_dataset, start_on

fo = pytest.importorskip("fiftyone")



@pytest.fixture
def last_name(tmp_path) -> str:
    """An audit dataset whose name sorts after every other one."""
    name = f"zz-session-{uuid.uuid4().hex[:8]}"
    build_app_dataset(tmp_path / "images", name)
    yield name
    fo.delete_dataset(name)


def test_a_reload_keeps_the_dataset_and_the_reviewer(last_name):
    at = start_on(last_name)
    at.text_input(key="app_reviewer").set_value("ana").run()
    assert dict(at.query_params) == {"dataset": last_name, "reviewer": "ana"}  # in the URL
    reloaded = AppTest.from_file(APP, default_timeout=120)  # a new session, the same URL
    reloaded.query_params["dataset"] = last_name
    reloaded.query_params["reviewer"] = "ana"
    reloaded.run()
    reloaded.switch_page("pages/triage.py").run()
    assert not reloaded.exception, reloaded.exception
    state = reloaded.session_state["app_state"]
    assert (state.dataset, state.reviewer) == (last_name, "ana")
    assert not any("Start** page first" in i.value for i in reloaded.info)
    assert reloaded.button(key="triage_next") is not None  # the triage page itself


def test_an_unknown_dataset_in_the_url_is_ignored(last_name):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["dataset"] = "no-such-dataset"
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["app_state"].dataset != "no-such-dataset"


def test_the_start_page_opens_on_the_dataset_picked_last_not_on_another_one(last_name,
                                                                           tmp_path):
    plain = fo.Dataset(f"aaa-not-an-audit-{uuid.uuid4().hex[:8]}", persistent=True)
    other = build_app_dataset(tmp_path / "other", f"aab-audit-{uuid.uuid4().hex[:8]}")
    try:
        first = AppTest.from_file(APP, default_timeout=120).run()
        options = first.selectbox(key="start_dataset").options
        assert plain.name not in options and options.index(other.name) < options.index(last_name)
        first.selectbox(key="start_dataset").set_value(last_name).run()
        later = AppTest.from_file(APP, default_timeout=120).run()  # no URL: a new visit
        assert later.selectbox(key="start_dataset").value == last_name
        assert later.session_state["app_state"].dataset == last_name
    finally:
        plain.delete()
        other.delete()
