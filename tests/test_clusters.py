"""audit.clusters: PCA-reduced embeddings, 2-D projections, k-means and per-cluster statistics."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from audit import clusters as CL
from audit.frames import LOSS_COLUMNS
from tests.builders import blobs, samples_frame

# --- reduce -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "dims", "expected"),
    [
        ((0, 8), 50, (0, 1)),
        ((1, 8), 50, (1, 1)),
        ((2, 8), 50, (2, 1)),
        ((20, 8), 50, (20, 8)),
        ((20, 8), 3, (20, 3)),
        ((60, 100), 50, (60, 50)),
    ],
)
def test_reduce_shape(shape, dims, expected):
    x = np.random.default_rng(0).normal(size=shape)
    assert CL.reduce(x, dims=dims).shape == expected


# --- project ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "n"), [("pca", 3), ("pca", 45), (CL.ProjectionMethod.PCA, 45)])
def test_project_gives_finite_2d_points(method, n):
    x, _ = blobs(15, 3, 10)
    xy = CL.project(x[:n], method)
    assert xy.shape == (n, 2) and xy.dtype == np.float64
    assert np.isfinite(xy).all()


def test_tsne_projection_shape_and_placement_beyond_max_points():
    """One t-SNE run (slow on a busy machine): 24 points fitted, 21 placed by kNN."""
    x, labels = blobs(15, 3, 10)
    xy = CL.project(x, "tsne", max_points=24)
    assert xy.shape == (45, 2) and xy.dtype == np.float64 and np.isfinite(xy).all()
    # every point's nearest projected neighbour comes from its own blob
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(45) * 1e9
    assert np.mean(labels[d.argmin(axis=1)] == labels) > 0.95


def test_umap_projection_shape():
    """One small UMAP fit: numba compiles on first use (tens of seconds on a busy machine);
    ``transform`` beyond ``max_points`` would compile as much again, so it is left out."""
    x, _ = blobs(10, 3, 6)
    xy = CL.project(x, "umap")
    assert xy.shape == (30, 2) and xy.dtype == np.float64 and np.isfinite(xy).all()


def test_pca_projection_separates_blobs_and_is_seeded():
    x, labels = blobs(20, 3, 10)
    xy = CL.project(x, "pca")
    np.testing.assert_array_equal(xy, CL.project(x, "pca"))
    centres = np.stack([xy[labels == k].mean(axis=0) for k in range(3)])
    spread = max(np.linalg.norm(xy[labels == k] - centres[k], axis=1).max() for k in range(3))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, np.zeros((0, 2))), (1, [[0.0, 0.0]]), (2, [[0.0, 0.0], [1.0, 0.0]])],
)
@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_project_degenerate_sizes(n, expected, method):
    x = np.random.default_rng(0).normal(size=(n, 5))
    np.testing.assert_array_equal(CL.project(x, method), expected)


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_project_identical_points_collapse_to_one(method):
    """All-identical embeddings used to crash t-SNE (segfault); now they project to (0, 0)."""
    xy = CL.project(np.ones((12, 4)), method)
    np.testing.assert_array_equal(xy, np.zeros((12, 2)))


@pytest.mark.parametrize(
    ("embeddings", "method", "message"),
    [
        (np.zeros((5, 3)), "mds", r"method: expected one of \('pca', 'tsne', 'umap'\), got 'mds'"),
        (np.zeros(5), "pca", r"embeddings: expected shape \(n_samples, D\), got \(5,\)"),
        (np.zeros((2, 3, 4)), "pca", r"expected shape \(n_samples, D\), got \(2, 3, 4\)"),
        (np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, 2.0]]), "pca", "row 1 has non-finite values"),
    ],
)
def test_project_rejects_bad_input(embeddings, method, message):
    with pytest.raises(ValueError, match=message):
        CL.project(embeddings, method)


# --- cluster ------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 4, 6])
def test_cluster_returns_k_labels(k):
    x, _ = blobs(10, 4, 8)
    labels = CL.cluster(x, n_clusters=k)
    assert labels.shape == (40,) and labels.dtype == np.int64
    assert sorted(np.unique(labels)) == list(range(k))


def test_choose_k_finds_three_well_separated_blobs():
    x, truth = blobs(25, 3, 12, seed=3)
    labels = CL.cluster(x, k_range=(2, 8))
    assert len(np.unique(labels)) == 3
    assert adjusted_rand_score(truth, labels) == 1.0


def test_choose_k_finds_six_blobs_in_the_default_range():
    x, truth = blobs(20, 6, 12, seed=4)
    labels = CL.cluster(x)
    assert len(np.unique(labels)) == 6
    assert adjusted_rand_score(truth, labels) == 1.0


def test_reduced_input_gives_the_same_result():
    x, _ = blobs(20, 4, 12, seed=5)
    z = CL.reduce(x)
    np.testing.assert_array_equal(CL.cluster(x, reduced=z), CL.cluster(x))
    np.testing.assert_allclose(CL.project(x, "pca", reduced=z), CL.project(x, "pca"))
    with pytest.raises(ValueError, match="reduced"):
        CL.project(x, "pca", reduced=z[:-1])


def test_cluster_is_seeded():
    x, _ = blobs(10, 5, 8, seed=1, spread=2.0)
    np.testing.assert_array_equal(CL.cluster(x, seed=7), CL.cluster(x, seed=7))


@pytest.mark.parametrize(
    ("n", "n_clusters", "expected"),
    [(0, None, []), (1, None, [0]), (1, 3, [0]), (3, None, [0, 0, 0])],
)
def test_cluster_degenerate_sizes(n, n_clusters, expected):
    x = np.random.default_rng(0).normal(size=(n, 4))
    assert CL.cluster(x, n_clusters=n_clusters).tolist() == expected


def test_cluster_caps_k_at_the_number_of_points_and_says_so():
    x = np.random.default_rng(0).normal(size=(4, 4))
    with pytest.warns(UserWarning, match=r"n_clusters=10 .* the 4 images: k-means used k=4"):
        assert sorted(np.unique(CL.cluster(x, n_clusters=10))) == [0, 1, 2, 3]


def test_cluster_is_silent_when_k_fits():
    x = np.random.default_rng(0).normal(size=(60, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert len(np.unique(CL.cluster(x, n_clusters=5))) == 5


@pytest.mark.parametrize("n_clusters", [0, -2])
def test_cluster_rejects_non_positive_k(n_clusters):
    with pytest.raises(ValueError, match="n_clusters: expected a positive int or None"):
        CL.cluster(np.zeros((5, 2)), n_clusters=n_clusters)


# --- cluster_stats ------------------------------------------------------------------------------


def _stats_samples() -> pd.DataFrame:
    return samples_frame(
        [f"s{i}" for i in range(6)],
        split=["train", "train", "val", "train", "val", "val"],
        loss=[1.0, 3.0, 5.0, 2.0, 4.0, 6.0],
        n_objects=[1, 2, 3, 4, 5, 6],
        count_car=[1, 2, 0, 0, 0, 1],
        count_dog=[0, 0, 3, 4, 5, 5],
        count_cup=[0, 0, 0, 0, 0, 0],
    )


def test_cluster_stats_columns_and_values():
    stats = CL.cluster_stats(_stats_samples(), np.array([0, 0, 0, 1, 1, 1]))
    assert stats.index.name == "cluster" and list(stats.index) == [0, 1]
    expected_cols = ["size", "n_train", "n_val", "train_share", "median_train_loss",
                     "median_val_loss", *[f"median_val_{c}" for c in LOSS_COLUMNS[:-1]],
                     "mean_n_objects", "mean_count_car", "mean_count_dog", "mean_count_cup",
                     "dominant_classes"]
    assert list(stats.columns) == expected_cols
    assert stats["size"].tolist() == [3, 3]
    assert stats["n_train"].tolist() == [2, 1] and stats["n_val"].tolist() == [1, 2]
    np.testing.assert_allclose(stats["train_share"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(stats["median_train_loss"], [2.0, 2.0])
    np.testing.assert_allclose(stats["median_val_loss"], [5.0, 5.0])
    np.testing.assert_allclose(stats["median_val_loss_box"], [2.0, 2.0])
    np.testing.assert_allclose(stats["mean_n_objects"], [2.0, 5.0])
    assert stats["dominant_classes"].tolist() == ["car, dog", "dog, car"]


def test_cluster_stats_without_counts_or_one_split():
    samples = samples_frame(["a", "b", "c"], split="train", loss=[1.0, 2.0, 3.0])
    stats = CL.cluster_stats(samples[["split", "loss"]], [0, 0, 1])
    assert stats["n_val"].tolist() == [0, 0]
    assert stats["median_val_loss"].isna().all()
    assert stats["dominant_classes"].tolist() == ["", ""]


def test_cluster_stats_empty():
    stats = CL.cluster_stats(samples_frame([]), np.zeros(0, np.int64))
    assert stats.empty and {"size", "train_share", "dominant_classes"} <= set(stats.columns)


@pytest.mark.parametrize(
    ("samples", "labels", "message"),
    [
        (_stats_samples(), [0, 1], r"labels: expected shape \(6,\), got \(2,\)"),
        (_stats_samples(), np.zeros((6, 1)), r"labels: expected shape \(6,\), got \(6, 1\)"),
        (_stats_samples().drop(columns="split"), np.zeros(6), r"missing columns \['split'\]"),
        (_stats_samples().drop(columns="loss"), np.zeros(6), r"missing columns \['loss'\]"),
    ],
)
def test_cluster_stats_rejects_bad_input(samples, labels, message):
    with pytest.raises(ValueError, match=message):
        CL.cluster_stats(samples, labels)
