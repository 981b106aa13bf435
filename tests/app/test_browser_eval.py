"""In a real headless Chromium: a click on a confusion-matrix cell lands in triage on its boxes."""

from __future__ import annotations

import pytest

from tests.app import live
from tests.app.conftest import build_app_dataset

pytestmark = pytest.mark.browser
pytest.importorskip("fiftyone")

NAME = "app-test-browser-eval"
# the test dataset's val matrix: labels say cup only; predictions book, cup, person
ROWS = ["book", "cup", "person", "(background)"]
COLUMNS = ["book", "cup", "person", "(background)"]


@pytest.fixture
def dataset(tmp_path) -> str:
    import fiftyone as fo

    live.require_browser()
    build_app_dataset(tmp_path / "images", NAME)
    yield NAME
    fo.delete_dataset(NAME)


def _click_cell(page, true: str, pred: str) -> None:
    """Click the matrix cell (``true`` row, ``pred`` column); the grid is a canvas, its layout
    fixed by the page (pages/overview.py MATRIX_*_PX)."""
    grid = page.locator(".st-key-overview_matrix")
    grid.scroll_into_view_if_needed()
    live.wait_idle(page)
    box = grid.bounding_box()
    x = box["x"] + 150 + 110 * (COLUMNS.index(pred) + 0.5)
    y = box["y"] + 35 * (ROWS.index(true) + 1.5)  # below the header row
    page.mouse.click(x, y)
    live.wait_idle(page)


def test_a_matrix_click_lands_in_triage_on_the_cells_boxes(dataset):
    with live.running_server(live.artifacts_dir() / "streamlit-eval.log") as server, \
            live.chromium_page() as page:
        live.open_app(page, server, dataset, reviewer="e2e")
        live.go(page, "Overview")
        page.get_by_text("Evaluation drill-down").first.wait_for()
        _click_cell(page, "(background)", "person")
        select = page.locator('[data-testid="stSelectbox"]')
        assert live.selected(select.filter(has_text="True class (row)")) == "(background)"
        assert live.selected(select.filter(has_text="Predicted class (column)")) == "person"
        live.screenshot(page, "8-evaluation")
        page.get_by_role("button", name="Review these 2 boxes in triage").click()
        page.get_by_text("person predicted on background").first.wait_for()
        page.get_by_text("Boxes of the selection").first.wait_for()
        live.wait_idle(page)
        live.screenshot(page, "9-triage-from-matrix")
        assert page.get_by_text("pred 'person' (0.70)").count()
