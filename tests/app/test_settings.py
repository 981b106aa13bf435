"""The Start page's scoring config and settings panel, through ``streamlit.testing.v1.AppTest``."""

from __future__ import annotations

import itertools

import pytest

from tests.app.conftest import N_SAMPLES, build_app_dataset, start_on

pytest.importorskip("fiftyone")
from streamlit.testing.v1 import AppTest

from audit.ui.settings import PANEL_FIELDS, widget_key

_names = itertools.count()


@pytest.fixture
def dataset(tmp_path) -> str:
    """A new scored dataset (wrong-class score 0.95 - 0.02 k on sample k's book)."""
    name = f"app-test-settings-{next(_names)}"
    build_app_dataset(tmp_path / "images", name)
    return name


def _open(name: str) -> AppTest:
    """The Start page with ``name`` picked."""
    at = start_on(name)
    assert not at.exception, at.exception
    return at


def test_panel_shows_every_field_and_the_stored_config(dataset):
    at = _open(dataset)
    for field in PANEL_FIELDS:
        assert at.number_input(key=widget_key(dataset, field)) is not None
    assert at.button(key="start_apply_settings").disabled  # nothing changed yet
    assert any("0 setting(s) changed" in e.label for e in at.expander)


def test_a_threshold_change_reflags_the_dataset(dataset):
    import fiftyone as fo

    from audit.data import views

    at = _open(dataset)
    at.number_input(key=widget_key(dataset, "wrong_class_flag")).set_value(0.9).run()
    button = at.button(key="start_apply_settings")
    assert button.label == "Re-flag" and not button.disabled
    button.click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    ds = fo.load_dataset(dataset)
    assert views.scoring_config(ds).wrong_class_flag == 0.9
    flagged = ds.values("flagged")
    # sample k's book scores 0.95 - 0.02 k: k = 0, 1, 2 reach 0.9
    assert sum("wrong_class" in f for f in flagged) == 3 < N_SAMPLES
    assert ds.values("wrong_class_score")[5] == pytest.approx(0.85)  # scores untouched
    assert any("1 setting(s) changed" in e.label for e in at.expander)
    assert any("**wrong_class_flag = 0.9**" in m.value for m in at.markdown)


def test_a_weight_change_offers_a_rescore_and_reports_its_failure(dataset):
    at = _open(dataset)
    at.number_input(key=widget_key(dataset, "class_knn_weight")).set_value(0.5).run()
    button = at.button(key="start_apply_settings")
    assert button.label == "Re-score"
    button.click().run()
    assert not at.exception, at.exception
    # the hand-built dataset was never ingested: scoring refuses it, and the page says so
    assert any("Re-score failed" in e.value for e in at.error)
