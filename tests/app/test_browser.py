"""The whole app once, end to end, in a real headless Chromium against ``streamlit run``.

Walks every page of the scored test dataset (a screenshot of each goes to ``$ARTIFACTS_DIR`` or
``artifacts/screenshots``), fixes the class of the flagged box on the triage page to the model's
suggestion, exports COCO JSON from the export page and checks the file holds the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app import live
from tests.app.conftest import IMG_H, IMG_W, N_SAMPLES

pytestmark = pytest.mark.browser
pytest.importorskip("fiftyone")

INSIGHT = {  # one insight card with a plot, so the screenshot shows a real chart
    "kind": "cluster_imbalance", "title": "Cluster 1 is rare in val", "severity": 0.8,
    "sentence": "Cluster 1 holds 8 train images but 4 val images.", "cluster": 1, "label": None,
    "sample_ids": [], "stats": {},
    "evidence": {"plot": "train_val_counts", "data": [
        {"cluster": c, "split": s, "count": n} for c in ("0", "1")
        for s, n in (("train", 8), ("val", 4))]},
}
BOOK_BBOX = [20.0, 30.0, 100.0, 80.0]  # COCO [x, y, w, h] px of sample 0's wrongly-classed book


def _no_exception(page) -> None:
    """No Streamlit exception box on the page."""
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def _visit(page, title: str, shot: str, *, expect: str, charts: int = 0) -> None:
    """Open a page from the sidebar, wait for ``expect`` and ``charts`` drawn charts, check it
    rendered without an exception, screenshot it."""
    live.go(page, title)
    page.get_by_text(expect).first.wait_for()
    for i in range(charts):
        page.locator('[data-testid="stVegaLiteChart"] canvas, '
                     '[data-testid="stVegaLiteChart"] svg').nth(i).wait_for()
    live.wait_idle(page)
    _no_exception(page)
    live.screenshot(page, shot)


@pytest.fixture
def browser_dataset(app_dataset) -> str:
    """The scored test dataset with one insight card to draw (skips first if no browser)."""
    import fiftyone as fo

    live.require_browser()

    ds = fo.load_dataset(app_dataset)
    info = ds.info
    info["audit"]["insights"] = [{**INSIGHT, "sample_ids": ds.values("id")[:4]}]
    ds.info = info
    ds.save()
    return app_dataset


def test_fix_a_label_and_export_it_in_a_real_browser(browser_dataset, tmp_path):
    with live.running_server(tmp_path / "streamlit.log") as server, live.chromium_page() as page:
        live.open_app(page, server, browser_dataset, reviewer="e2e")
        assert page.get_by_text(str(N_SAMPLES), exact=True).count()  # the Samples metric
        _no_exception(page)
        live.screenshot(page, "1-start")
        _visit(page, "Overview", "2-overview", expect="Flagged samples per issue", charts=2)
        _visit(page, "Latent space", "3-latent-space", expect="Drag to select a region",
               charts=1)
        _visit(page, "Insights", "4-insights", expect="Cluster 1 is rare in val", charts=1)
        _visit(page, "Triage", "5-triage-before", expect="Correct class")

        fix_box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Correct class")
        assert live.selected(fix_box) == "book", "the model's suggestion is not preselected"
        page.get_by_role("button", name="Fix class").click()
        page.get_by_text("Fixed the class of the box").wait_for()
        live.wait_idle(page)
        assert page.get_by_text("[fixed]").count(), "the box caption does not show its review"
        _no_exception(page)
        live.screenshot(page, "5-triage")

        _visit(page, "Sample analysis", "6-sample-analysis",
               expect="does not record its model checkpoint")
        _visit(page, "Export", "7-export", expect="Output folder")
        page.get_by_role("button", name="COCO JSON").click()
        written = page.locator("code").filter(has_text="-coco.json")
        written.wait_for()
        live.wait_idle(page)
        _no_exception(page)
        live.screenshot(page, "7-export")
        coco_path = Path(written.inner_text().strip())

    assert coco_path.exists(), server.tail()
    _check_coco_has_fix(json.loads(coco_path.read_text()))


def _check_coco_has_fix(coco: dict) -> None:
    """Sample 0's book is a 'book' now; every other box kept its label."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    sizes = {(im["width"], im["height"]) for im in coco["images"]}
    assert len(files) == N_SAMPLES and sizes == {(IMG_W, IMG_H)}
    labels = {}
    for ann in coco["annotations"]:
        key = (Path(files[ann["image_id"]]).name, round(ann["bbox"][0]))
        labels[key] = names[ann["category_id"]]
    assert labels[("img_000.png", 20)] == "book"  # the fix
    assert ann_bbox(coco, "img_000.png", 20) == pytest.approx(BOOK_BBOX, abs=0.01)
    others = {k: v for k, v in labels.items() if k != ("img_000.png", 20)}
    assert len(others) == 2 * N_SAMPLES - 1
    assert set(others.values()) == {"cup"}  # nothing else changed


def ann_bbox(coco: dict, file_name: str, x: int) -> list[float]:
    """The bbox of the annotation of ``file_name`` whose x rounds to ``x``."""
    ids = {im["id"] for im in coco["images"] if Path(im["file_name"]).name == file_name}
    return next(a["bbox"] for a in coco["annotations"]
                if a["image_id"] in ids and round(a["bbox"][0]) == x)
