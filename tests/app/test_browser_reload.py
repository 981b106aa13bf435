"""A reload in a real browser (issue 14): the triage page comes back on the same dataset, with the
reviewer's name, instead of asking to pick a dataset on the Start page."""

from __future__ import annotations

import pytest

from tests.app import live
from tests.app.conftest import build_app_dataset

pytest.importorskip("fiftyone")


@pytest.mark.browser
def test_a_reload_keeps_the_dataset_and_the_reviewer(tmp_path):
    live.require_browser()
    name = "app-test-reload"
    build_app_dataset(tmp_path / "images", name)
    with live.running_server(tmp_path / "streamlit.log") as server, \
            live.chromium_page() as page:
        live.open_app(page, server, name, reviewer="ana")
        live.go(page, "Triage")
        assert f"dataset={name}" in page.url and "reviewer=ana" in page.url
        page.reload()
        page.get_by_role("heading", name="Triage").first.wait_for()
        live.wait_idle(page)
        assert page.get_by_text("Start** page first").count() == 0
        assert page.get_by_text("Pick or build a dataset").count() == 0
        assert page.get_by_label("Reviewer").input_value() == "ana"
        assert page.get_by_text(f"Dataset: {name}").count() == 1  # the sidebar's caption
        live.screenshot(page, "reload-triage")
