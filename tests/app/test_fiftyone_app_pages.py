"""The insight cards' "Open in FiftyOne App": the link, or why not, right below the button."""

from __future__ import annotations

import itertools

import pytest

from tests.app.conftest import build_app_dataset, start_on

pytest.importorskip("fiftyone")
from streamlit.testing.v1 import AppTest

from audit.data import app_launch

_names = itertools.count()


@pytest.fixture
def insights_page(tmp_path) -> AppTest:
    """The Insights page of a dataset holding one insight about five samples."""
    import fiftyone as fo

    name = f"app-test-fiftyone-{next(_names)}"
    ds = build_app_dataset(tmp_path / "images", name)
    info = ds.info
    info["audit"]["insights"] = [{
        "kind": "curve", "title": "Loss rises", "severity": 0.5, "sentence": "It rises.",
        "cluster": None, "label": None, "sample_ids": ds.values("id")[:5], "stats": {},
        "evidence": {}}]
    ds.info = info
    ds.save()
    at = start_on(name)
    at.switch_page("pages/insights.py").run()
    assert not at.exception, at.exception
    yield at
    fo.delete_dataset(name)


def _links(at: AppTest) -> list[str]:
    return [e.proto.url for e in at.main if getattr(e, "type", "") == "link_button"]


def test_the_link_appears_below_the_button_in_the_same_run(insights_page, monkeypatch):
    asked = {}

    def launch(name, *, sample_ids):
        asked.update(name=name, ids=sample_ids)
        return "http://127.0.0.1:5999/"

    monkeypatch.setattr(app_launch, "launch_app", launch)
    at = insights_page
    assert not _links(at)
    at.button(key="insights_fiftyone_0").click().run()
    assert not at.exception and not at.error
    assert _links(at) == ["http://127.0.0.1:5999/"]
    assert asked["name"].startswith("app-test-fiftyone-") and len(asked["ids"]) == 5
    assert any("predictions below confidence 0.25 are hidden" in c.value for c in at.caption)
    assert at.session_state["app_state"].fiftyone_url == "http://127.0.0.1:5999/"


def test_why_not_is_said_at_once(insights_page, monkeypatch):
    def launch(name, *, sample_ids):
        raise RuntimeError("the FiftyOne App could not start: OSError: address in use")

    monkeypatch.setattr(app_launch, "launch_app", launch)
    at = insights_page
    at.button(key="insights_fiftyone_0").click().run()
    assert not at.exception and not _links(at)
    assert any("could not start: OSError: address in use" in e.value for e in at.error)


def test_rendering_the_page_starts_no_app_in_tests(insights_page):
    assert app_launch.app_status()[0] == "stopped"  # no server started by a render
