"""audit.pipeline: run_all over seeded synthetic frames with planted errors, and class_recall."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from audit.insight import Insight
from audit.pipeline import AuditResult, class_recall, run_all
from benchmarks.synthetic import make_frames
from tests.builders import boxes_frame, empty_boxes, gt, pred, samples_frame

BOX_SCORES = ["wrong_class_score", "bad_box_score", "spurious_score", "missing_score",
              "group_box_score"]


@pytest.fixture(scope="module")
def frames():
    return make_frames(400, seed=0, planted=True)


@pytest.fixture(scope="module")
def result(frames) -> AuditResult:
    # k given: choosing it by silhouette is tested in test_clusters and costs seconds here
    return run_all(frames.samples, frames.embeddings, frames.boxes, frames.box_features,
                   projections=("pca",), n_clusters=8)


def _by_box(result: AuditResult, frames) -> tuple[pd.DataFrame, pd.Series]:
    boxes = result.boxes.set_index("box_id")
    return boxes, frames.truth.reindex(boxes.index)


# --- the whole run on planted errors ------------------------------------------------------------


def test_run_all_returns_every_part(result, frames):
    assert isinstance(result, AuditResult)
    assert result.samples.index.equals(frames.samples.index.astype(str))
    for col in ("mistakenness_score", "flagged", "cluster", "proj_pca_x", "proj_pca_y",
                "partial_labels_score", "neighbour_loss_ratio", *BOX_SCORES):
        assert col in result.samples.columns, col
    assert (result.samples["neighbour_loss_ratio"].dropna() > 0).all()
    assert "proj_tsne_x" not in result.samples.columns  # only the projections asked for
    assert result.samples["cluster"].dtype == np.int64
    assert np.isfinite(result.samples[["proj_pca_x", "proj_pca_y"]]).all().all()
    assert all(isinstance(f, list) for f in result.samples["flagged"])
    assert len(result.boxes) == len(frames.boxes)
    assert set(result.boxes["box_id"]) == set(frames.boxes["box_id"])
    assert {"sample_id", "source", "label", "suggested_label", "is_group_box_issue"} <= set(
        result.boxes.columns)
    assert list(result.clusters.index) == sorted(result.samples["cluster"].unique())
    assert result.clusters["size"].sum() == len(frames.samples)
    assert "book" in result.classes.index
    assert {"mistakenness_s", "inconsistency_s", "projection_pca_s", "clusters_s",
            "insights_s"} <= set(result.timings)


def test_scores_are_probabilities_or_nan(result):
    boxes = result.boxes[BOX_SCORES].to_numpy(float)
    assert np.all(np.isnan(boxes) | ((boxes >= 0) & (boxes <= 1)))
    ms = result.samples["mistakenness_score"].to_numpy(float)
    assert np.all(np.isnan(ms) | ((ms >= 0) & (ms <= 1)))


def test_box_scores_rank_planted_errors_above_clean_boxes(result, frames):
    boxes, truth = _by_box(result, frames)
    score = boxes[BOX_SCORES].max(axis=1).fillna(0.0)
    auroc = roc_auc_score(truth != "clean", score)
    assert auroc > 0.8, auroc


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("flip", ["wrong_class_score"]),
        ("shift", ["bad_box_score"]),
        ("spawn", ["spurious_score"]),
        ("drop", ["missing_score"]),
        ("merge", ["bad_box_score", "group_box_score"]),
        ("group", ["group_box_score"]),
    ],
)
def test_each_planted_error_is_found_by_its_own_score(result, frames, kind, columns):
    boxes, truth = _by_box(result, frames)
    source = "pred" if kind == "drop" else "gt"
    rows = (boxes["source"] == source) & truth.isin([kind, "clean"])
    assert (truth[rows] == kind).sum() >= 10  # enough planted to measure
    score = boxes.loc[rows, columns].max(axis=1).fillna(0.0)
    auroc = roc_auc_score(truth[rows] == kind, score)
    assert auroc > 0.8, (kind, auroc)


def test_flipped_labels_get_their_true_class_suggested(result, frames):
    boxes, truth = _by_box(result, frames)
    flips = boxes[(truth == "flip") & boxes["is_wrong_class_issue"]]
    assert len(flips) >= 10
    assert (flips["suggested_label"] != flips["label"]).all()


def test_samples_with_planted_errors_score_higher(result, frames):
    truth = frames.truth
    bad = set(frames.boxes.loc[frames.boxes["box_id"].isin(truth.index[~truth.isin(
        ["clean", "group"])]), "sample_id"])
    has_error = result.samples.index.isin(bad)
    auroc = roc_auc_score(has_error, result.samples["mistakenness_score"].fillna(0.0))
    assert auroc > 0.8, auroc
    flagged = result.samples["flagged"].map(len) > 0
    assert flagged[has_error].mean() > flagged[~has_error].mean()


def test_planted_insights_are_found(result, frames):
    kinds = {i.kind for i in result.insights}
    assert {"imbalance", "inconsistency"} <= kinds
    assert all(isinstance(i, Insight) for i in result.insights)
    severities = [i.severity for i in result.insights]
    assert severities == sorted(severities, reverse=True)
    # the train-heavy insight is about the cluster holding the planted train-heavy images
    imbalance = [i for i in result.insights if i.kind == "imbalance" and "train-heavy" in i.title]
    assert imbalance
    truth_cluster = frames.samples["truth_cluster"]
    members = truth_cluster[result.samples["cluster"] == imbalance[0].cluster]
    assert members.mode().iloc[0] == 0
    (book,) = [i for i in result.insights if i.kind == "inconsistency"]
    assert book.label == "book"


def test_run_all_does_not_mutate_its_inputs():
    small = make_frames(30, seed=1)
    before = (small.samples.copy(), small.boxes.copy(), small.embeddings.copy(),
              small.box_features.copy())
    res = run_all(small.samples, small.embeddings, small.boxes, small.box_features,
                  projections=("pca",), n_clusters=2)
    pd.testing.assert_frame_equal(small.samples, before[0])
    pd.testing.assert_frame_equal(small.boxes, before[1])
    np.testing.assert_array_equal(small.embeddings, before[2])
    np.testing.assert_array_equal(small.box_features, before[3])
    assert sorted(res.samples["cluster"].unique()) == [0, 1]


def test_run_all_without_box_features_or_boxes():
    small = make_frames(30, seed=2)
    res = run_all(small.samples, small.embeddings, small.boxes, None, projections=(),
                  n_clusters=3)
    assert len(res.boxes) == len(small.boxes)
    empty = run_all(small.samples, small.embeddings, empty_boxes(), None, projections=(),
                    n_clusters=3)
    assert empty.boxes.empty
    assert empty.samples["mistakenness_score"].isna().all()
    assert empty.samples["flagged"].map(len).eq(0).all()


# --- bad input ----------------------------------------------------------------------------------


def _tiny():
    samples = samples_frame(["s0", "s1", "s2"], split=["train", "val", "val"])
    boxes = boxes_frame([gt("s0", (0, 0, 10, 10)), pred("s0", (0, 0, 10, 10))])
    return samples, np.zeros((3, 4), np.float32), boxes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s, e, b, f: (s, e[:2], b, f), r"embeddings: expected shape \(3, D\), got \(2, 4\)"),
        (lambda s, e, b, f: (s, e[:, 0], b, f), r"embeddings: expected shape \(3, D\), got \(3,\)"),
        (lambda s, e, b, f: (s, e, boxes_frame([gt("s9", (0, 0, 1, 1))]), f),
         "boxes: sample_id 's9' is not in the samples frame"),
        (lambda s, e, b, f: (s, e, b, np.zeros((5, 8))),
         r"box_features: expected shape \(2, F\), got \(5, 8\)"),
        (lambda s, e, b, f: (s.drop(columns="loss"), e, b, f), r"missing columns \['loss'\]"),
        (lambda s, e, b, f: (s, e, b.drop(columns="label"), f), r"missing columns \['label'\]"),
        (lambda s, e, b, f: (s, e, b.assign(source="x"), f), "expected 'gt' or 'pred'"),
    ],
)
def test_run_all_rejects_bad_input(change, message):
    samples, emb, boxes = _tiny()
    args = change(samples, emb, boxes, None)
    with pytest.raises(ValueError, match=message):
        run_all(*args, projections=())


# --- class recall -------------------------------------------------------------------------------


def test_class_recall_per_cluster_and_class():
    boxes = boxes_frame([
        gt("a", (0, 0, 10, 10), "car"), pred("a", (0, 0, 10, 10), "car", 0.9),  # found
        gt("a", (20, 0, 30, 10), "car"), pred("a", (20, 0, 30, 10), "car", 0.1),  # too unsure
        gt("b", (0, 0, 10, 10), "dog"), pred("b", (0, 0, 10, 10), "car", 0.9),  # wrong class
        gt("c", (0, 0, 10, 10), "dog"), pred("c", (0, 0, 10, 10), "dog", 0.9),  # found
        gt("c", (50, 50, 90, 90), "dog", iscrowd=True),  # crowd: left out
        gt("d", (0, 0, 10, 10), "dog"),  # train: left out with split
    ])
    labels = pd.Series([0, 0, 1, 1], index=["a", "b", "c", "d"])
    split = pd.Series(["val", "val", "val", "train"], index=labels.index)
    recall = class_recall(boxes, labels, split=split)
    assert list(recall.index) == [0, 1] and list(recall.columns) == ["car", "dog"]
    assert recall.loc[0, "car"] == 0.5 and recall.loc[0, "dog"] == 0.0
    assert np.isnan(recall.loc[1, "car"]) and recall.loc[1, "dog"] == 1.0
    assert class_recall(boxes, labels).loc[1, "dog"] == 0.5  # without split, d counts


def test_class_recall_without_gt_is_empty():
    assert class_recall(empty_boxes(), pd.Series(dtype=float)).empty
    boxes = boxes_frame([pred("a", (0, 0, 10, 10))])
    assert class_recall(boxes, pd.Series([0], index=["a"])).empty


def test_run_all_names_a_val_image_copied_from_train():
    small = make_frames(60, seed=3)
    split = small.samples["split"].to_numpy()
    train, val = np.flatnonzero(split == "train")[0], np.flatnonzero(split != "train")[0]
    emb = small.embeddings.copy()
    res = run_all(small.samples, emb, small.boxes, None, projections=(), n_clusters=2)
    assert not [i for i in res.insights if i.kind == "leak"]
    emb[val] = emb[train] * 1.0001  # the same image, a little altered
    res = run_all(small.samples, emb, small.boxes, None, projections=(), n_clusters=2)
    (leak,) = [i for i in res.insights if i.kind == "leak"]
    ids = small.samples.index.astype(str)
    assert leak.evidence["pairs"][0]["sample_a"] == ids[val]
    assert leak.evidence["pairs"][0]["sample_b"] == ids[train]
