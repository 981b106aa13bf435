"""The evaluation drill-down's data layer: split boxes, and the stored FiftyOne evaluation run."""

from __future__ import annotations

import pytest

pytest.importorskip("fiftyone")

from audit.data.eval_runs import eval_key, split_boxes, store_evaluation_run
from audit.evaluation import evaluate_boxes
from tests.app.conftest import N_SAMPLES, build_app_dataset


@pytest.fixture
def dataset(tmp_path):
    import fiftyone as fo

    ds = build_app_dataset(tmp_path / "images", "eval-runs-test")
    yield ds
    fo.delete_dataset("eval-runs-test")


@pytest.mark.parametrize(("split", "iou", "key"), [
    ("val", 0.5, "audit_val_iou50"), ("all", 0.75, "audit_all_iou75"),
    ("my split", 0.3, "audit_my_split_iou30")])
def test_eval_key(split, iou, key):
    assert eval_key(split, iou) == key


def test_split_boxes_hold_one_split(dataset):
    val = split_boxes(dataset, "val")
    n_val = len(dataset.match_tags("val"))
    assert val["sample_id"].nunique() == n_val < N_SAMPLES
    assert len(split_boxes(dataset, "all")["sample_id"].unique()) == N_SAMPLES
    faint = split_boxes(dataset, "val", min_confidence=0.75)
    assert set(faint.loc[faint["source"] == "pred", "label"]) == {"book", "cup"}
    with pytest.raises(ValueError, match="no split 'test'; known: train, val"):
        split_boxes(dataset, "test")


@pytest.mark.parametrize(("split", "conf"), [("val", 0.25), ("train", 0.75)])
def test_stored_run_agrees_with_the_drill_down(dataset, split, conf):
    key = store_evaluation_run(dataset, split, iou=0.5, conf=conf)
    assert key in dataset.list_evaluations()
    view = dataset.match_tags(split)
    ours = evaluate_boxes(split_boxes(dataset, split), iou=0.5, conf=conf).outcomes
    pred, gt = ours[ours["source"] == "pred"], ours[ours["source"] == "gt"]
    assert sum(view.values(f"{key}_tp")) == int((pred["outcome"] == "TP").sum())
    assert sum(view.values(f"{key}_fp")) == int((pred["outcome"] == "FP").sum())
    assert sum(view.values(f"{key}_fn")) == int((gt["outcome"] == "FN").sum())
    assert store_evaluation_run(dataset, split, iou=0.5, conf=conf) == key  # replaced, not doubled
    assert dataset.list_evaluations().count(key) == 1


def test_store_refuses_a_bad_iou(dataset):
    with pytest.raises(ValueError, match="iou"):
        store_evaluation_run(dataset, "val", iou=1.5, conf=0.25)
