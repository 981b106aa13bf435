"""The Overview page's evaluation drill-down: per-split counts, the confusion matrix, a cell
handed to triage on its boxes, the PR curves and the stored FiftyOne evaluation run."""

from __future__ import annotations

import itertools

import pytest

from tests.app.conftest import N_SAMPLES, build_app_dataset, start_on

pytest.importorskip("fiftyone")
from streamlit.testing.v1 import AppTest

N_VAL = len(range(0, N_SAMPLES, 3))  # sample k is in val when k % 3 == 0
_names = itertools.count()


@pytest.fixture
def dataset(tmp_path):
    import fiftyone as fo

    name = f"app-test-eval-{next(_names)}"
    build_app_dataset(tmp_path / "images", name)
    yield name
    fo.delete_dataset(name)


def _overview(name: str) -> AppTest:
    at = start_on(name)
    at.switch_page("pages/overview.py").run()
    assert not at.exception, at.exception
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_val_counts_and_the_commonest_confusion(dataset):
    at = _overview(dataset)
    assert at.selectbox(key="overview_eval_split").value == "val"
    metrics = _metrics(at)
    # per val image: the cup is found (TP), the book labelled "cup" is an FN and its book
    # prediction an FP; every 4th image has an unlabelled person (FP)
    n_person = len([k for k in range(0, N_SAMPLES, 3) if k % 4 == 0])
    assert metrics["TP (val)"] == str(N_VAL)
    assert metrics["FP (val)"] == str(N_VAL + n_person)
    assert metrics["FN (val)"] == str(N_VAL)
    assert at.selectbox(key="overview_cell_true").value == "cup"
    assert at.selectbox(key="overview_cell_pred").value == "book"
    button = at.button(key="overview_cell_triage")
    assert button.label == f"Review these {2 * N_VAL} boxes in triage"
    assert not at.error


def test_a_higher_confidence_turns_found_cups_into_misses(dataset):
    at = _overview(dataset)
    at.slider(key="overview_eval_conf").set_value(0.85).run()
    metrics = _metrics(at)
    assert metrics["TP (val)"] == "0"  # the cups (0.8) are no longer predicted
    assert metrics["FN (val)"] == str(2 * N_VAL)
    at.selectbox(key="overview_eval_split").set_value("all").run()
    assert _metrics(at)["FN (all)"] == str(2 * N_SAMPLES)


def test_a_cell_lands_in_triage_on_its_boxes(dataset):
    import fiftyone as fo

    at = _overview(dataset)
    at.selectbox(key="overview_cell_true").set_value("(background)").run()
    at.selectbox(key="overview_cell_pred").set_value("person").run()
    at.button(key="overview_cell_triage").click().run()
    assert not at.exception, at.exception
    flt = at.session_state["app_state"].triage
    ds = fo.load_dataset(dataset)
    persons = [(s.id, d.id) for s in ds.match_tags("val") for d in s.predictions.detections
               if d.label == "person"]
    assert set(flt.sample_ids) == {s for s, _ in persons}
    assert set(flt.box_ids) == {d for _, d in persons}
    radio = at.radio(key="triage_box")
    assert radio.label == "Boxes of the selection"
    assert len(radio.options) == 1 and "person" in radio.options[0]
    assert any("person predicted on background" in i.value for i in at.info)


def test_pr_curves_and_the_stored_evaluation_run(dataset):
    import fiftyone as fo

    at = _overview(dataset)
    assert at.toggle(key="overview_show_pr").value
    charts = [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    assert charts
    at.button(key="overview_store_run").click().run()
    assert not at.exception, at.exception
    assert any("audit_val_iou50" in s.value for s in at.success)
    ds = fo.load_dataset(dataset)
    assert "audit_val_iou50" in ds.list_evaluations()
    assert sum(ds.match_tags("val").values("audit_val_iou50_tp")) == N_VAL


def test_operating_points_are_the_curves_at_the_working_confidence():
    import pandas as pd

    from audit.ui.evaluation import operating_points

    curve = pd.DataFrame({"label": ["a", "a", "a", "b"], "confidence": [0.9, 0.5, 0.1, 0.2],
                          "precision": [1.0, 0.5, 0.4, 1.0], "recall": [0.2, 0.4, 0.6, 1.0]})
    points = operating_points(curve, 0.25)
    assert points[["label", "precision", "recall"]].values.tolist() == [["a", 0.5, 0.4]]
    assert operating_points(curve, 0.0)["label"].tolist() == ["a", "b"]
