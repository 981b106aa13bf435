"""Latent space: 2-D projections, k-means clusters and per-cluster statistics (pure).

Embeddings are ``(n_samples, D)`` float arrays aligned with the samples frame. Every method first
standardises the embeddings and reduces them with PCA to at most ``CLUSTER_PCA_DIMS`` dimensions
(scikit-learn ``PCA``, randomized SVD above 10k rows), which keeps 100k x 448 inputs fast.
"""

from __future__ import annotations

import warnings
from enum import StrEnum

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from audit import constants as C
from audit.frames import LOSS_COLUMNS, require_columns
from audit.metadata import METADATA_COLUMNS


class ProjectionMethod(StrEnum):
    """2-D projection methods; the string values are accepted everywhere."""

    PCA = "pca"
    TSNE = "tsne"
    UMAP = "umap"


def _check(embeddings: NDArray) -> NDArray[np.float32]:
    """Validate a 2-D finite embedding matrix."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings: expected shape (n_samples, D), got {x.shape}")
    if x.size and not np.isfinite(x).all():
        row = int(np.argmax(~np.isfinite(x).all(axis=1)))
        raise ValueError(f"embeddings: row {row} has non-finite values")
    return x


def reduce(embeddings: NDArray, *, dims: int = C.CLUSTER_PCA_DIMS, seed: int = C.SEED) -> NDArray:
    """Standardise each column, then PCA to ``min(dims, n - 1, D)`` dimensions, ``(n, d)``."""
    x = _check(embeddings)
    if len(x) == 0:  # no rows: nothing to standardise (and no empty-slice warnings)
        return x[:, : int(min(dims, 1, x.shape[1]))]
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    d = int(min(dims, max(len(z) - 1, 1), z.shape[1]))
    if len(z) < 2 or d < 1:
        return z[:, :d]
    solver = "randomized" if len(z) > 10_000 else "auto"
    return PCA(d, svd_solver=solver, random_state=seed).fit_transform(z).astype(np.float32)


def project(
    embeddings: NDArray,
    method: str | ProjectionMethod = "pca",
    *,
    seed: int = C.SEED,
    max_points: int | None = None,
    reduced: NDArray | None = None,
) -> NDArray[np.float64]:
    """2-D projection of the embeddings.

    * ``pca``: first two components of scikit-learn ``PCA`` on the standardised embeddings.
    * ``tsne``: scikit-learn ``TSNE`` (Barnes-Hut, perplexity min(30, (m - 1) / 3), PCA init)
      on the PCA-50 space of a seeded subsample of ``max_points`` (default ``TSNE_MAX_POINTS``);
      the other points are placed at the distance-weighted mean of the t-SNE positions of their
      ``PROJECTION_KNN`` nearest fitted neighbours in PCA-50 space.
    * ``umap``: umap-learn ``UMAP`` (15 neighbours from scikit-learn's exact kNN, min_dist 0.1,
      ``UMAP_EPOCHS`` epochs, seeded) fitted on a seeded
      subsample of at most ``max_points`` (default ``UMAP_MAX_POINTS``) points in PCA-50 space;
      the rest are placed by kNN as for t-SNE (``UMAP.transform`` costs ~9x a fitted point).

    Args:
        embeddings: ``(n, D)`` float array.
        method: "pca", "tsne" or "umap" (or a :class:`ProjectionMethod`).
        seed: random seed.
        max_points: fit size limit for t-SNE / UMAP.
        reduced: :func:`reduce` of these embeddings, when the caller already has it (it is the
            slow part of PCA at 100k points; ``run_all`` computes it once for every method).

    Returns:
        ``(n, 2)`` float64 coordinates (no unit; only neighbourhoods are meaningful); all 0
        when every point is the same.

    Example:
        >>> xy = project(np.random.default_rng(0).normal(size=(100, 8)), "pca")
        >>> xy.shape
        (100, 2)
    """
    try:
        method = ProjectionMethod(method)
    except ValueError:
        raise ValueError(
            f"method: expected one of {C.PROJECTION_METHODS}, got {method!r}"
        ) from None
    x = _check(embeddings)
    n = len(x)
    if n < 3:
        return np.zeros((n, 2)) if n < 2 else np.array([[0.0, 0.0], [1.0, 0.0]])
    if not np.any(np.ptp(x, axis=0) > 0):  # all points identical: t-SNE would divide by 0
        return np.zeros((n, 2))
    z = reduce(x, seed=seed) if reduced is None else _check(reduced)
    if len(z) != n:
        raise ValueError(f"reduced: expected {n} rows, got {len(z)}")
    if method is ProjectionMethod.PCA:
        out = z[:, :2] if z.shape[1] >= 2 else np.c_[z, np.zeros(n)]
        return np.asarray(out, dtype=np.float64)
    limit = max_points or (C.TSNE_MAX_POINTS if method is ProjectionMethod.TSNE
                           else C.UMAP_MAX_POINTS)
    rng = np.random.default_rng(seed)
    fit = np.sort(rng.choice(n, limit, replace=False)) if n > limit else np.arange(n)
    if method is ProjectionMethod.TSNE:
        return _tsne(z, fit, seed)
    return _umap(z, fit, seed)


def _place_rest(z: NDArray, fit: NDArray, xy_fit: NDArray) -> NDArray[np.float64]:
    """Fitted rows keep ``xy_fit``; the others go to the distance-weighted mean of the 2-D
    positions of their ``PROJECTION_KNN`` nearest fitted rows in ``z``."""
    out = np.empty((len(z), 2))
    out[fit] = xy_fit
    rest = np.setdiff1d(np.arange(len(z)), fit)
    if rest.size:
        k = min(C.PROJECTION_KNN, len(fit))
        dist, idx = NearestNeighbors(n_neighbors=k).fit(z[fit]).kneighbors(z[rest])
        w = 1.0 / np.maximum(dist, 1e-9)
        out[rest] = (w[:, :, None] * xy_fit[idx]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    return out


def _tsne(z: NDArray, fit: NDArray, seed: int) -> NDArray[np.float64]:
    """t-SNE on the fitted rows, kNN placement for the others."""
    from sklearn.manifold import TSNE

    m = len(fit)
    tsne = TSNE(2, perplexity=float(min(30.0, max((m - 1) / 3.0, 1.0))), init="pca",
                random_state=seed, n_jobs=-1)
    return _place_rest(z, fit, tsne.fit_transform(z[fit]).astype(np.float64))


def _umap(z: NDArray, fit: NDArray, seed: int) -> NDArray[np.float64]:
    """UMAP fit on the fitted rows, kNN placement for the others.

    The kNN graph comes from scikit-learn (exact, brute force) and is handed to UMAP as
    ``precomputed_knn``: above 4,096 rows UMAP would build it with pynndescent, whose numba
    compilation alone costs ~30 s in every fresh process. ``n_epochs`` is fixed at
    ``UMAP_EPOCHS`` (UMAP's own default for large inputs; it uses 500 up to 10,000 rows).
    """
    import umap  # lazily: numba compiles on first import

    k = int(min(15, len(fit) - 1))
    dist, idx = NearestNeighbors(n_neighbors=k).fit(z[fit]).kneighbors(z[fit])
    reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=0.1, random_state=seed, n_jobs=1,
                        n_epochs=C.UMAP_EPOCHS,
                        precomputed_knn=(idx, dist.astype(np.float32), None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a seed disables parallelism; no index for transform
        xy_fit = np.asarray(reducer.fit_transform(z[fit]), dtype=np.float64)
    return _place_rest(z, fit, xy_fit)


def cluster(
    embeddings: NDArray,
    *,
    n_clusters: int | None = C.N_CLUSTERS,
    seed: int = C.SEED,
    k_range: tuple[int, int] = C.CLUSTER_K_RANGE,
    reduced: NDArray | None = None,
) -> NDArray[np.int64]:
    """k-means clusters of the embeddings (standardised, PCA to <= 50 dims).

    When ``n_clusters`` is None, k is chosen in ``k_range`` (inclusive) as the one with the
    highest silhouette score (euclidean, PCA space) of a k-means fitted on a seeded subsample of
    ``CLUSTER_SILHOUETTE_MAX`` points; the final k-means is then fitted on all points.

    Args:
        embeddings: ``(n, D)`` float array.
        n_clusters: k, or None to choose it.
        seed: random seed.
        k_range: candidate k when choosing.
        reduced: :func:`reduce` of these embeddings, when the caller already has it.

    Returns:
        ``(n,)`` int64 cluster ids ``0 .. k - 1`` (all 0 when n < 2).

    Warns:
        UserWarning: ``n_clusters`` above the number of points n; k = n is used, and said.
    """
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters: expected a positive int or None, got {n_clusters}")
    z = reduce(embeddings, seed=seed) if reduced is None else _check(reduced)
    n = len(z)
    if n < 2:
        return np.zeros(n, np.int64)
    if n_clusters is None:
        n_clusters = _choose_k(z, k_range, seed)
    k = int(min(n_clusters, n))
    if k < n_clusters:
        warnings.warn(f"n_clusters={n_clusters} (--clusters) asks for more clusters than the "
                      f"{n} images: k-means used k={k}, one image per cluster; choose fewer",
                      stacklevel=2)
    km = KMeans(k, n_init=3, random_state=seed).fit(z)
    return km.labels_.astype(np.int64)


def _choose_k(z: NDArray, k_range: tuple[int, int], seed: int) -> int:
    """k with the best silhouette on a subsample."""
    rng = np.random.default_rng(seed)
    sub = z[rng.choice(len(z), C.CLUSTER_SILHOUETTE_MAX, replace=False)] \
        if len(z) > C.CLUSTER_SILHOUETTE_MAX else z
    lo, hi = k_range
    ks = [k for k in range(max(2, lo), min(hi, len(sub) - 1) + 1)]
    if not ks:
        return 1
    scores = []
    for k in ks:
        labels = KMeans(k, n_init=2, random_state=seed).fit_predict(sub)
        scores.append(silhouette_score(sub, labels) if len(set(labels)) > 1 else -1.0)
    return ks[int(np.argmax(scores))]


def cluster_stats(samples: pd.DataFrame, labels: NDArray) -> pd.DataFrame:
    """Per-cluster statistics.

    Args:
        samples: samples frame with ``split`` and ``loss`` (loss components and metadata
            columns are used when present).
        labels: ``(n_samples,)`` cluster per sample.

    Returns:
        Frame indexed by ``cluster``: ``size``, ``n_train``, ``n_val``, ``train_share``,
        ``median_train_loss``, ``median_val_loss``, ``median_val_<component>`` per loss
        component, ``mean_<metadata>`` per metadata / ``count_<class>`` column and
        ``dominant_classes`` (up to three classes by total count, comma-separated).
    """
    require_columns(samples, ("split", "loss"), "samples")
    lab = np.asarray(labels)
    if lab.shape != (len(samples),):
        raise ValueError(f"labels: expected shape ({len(samples)},), got {lab.shape}")
    f = samples.assign(cluster=lab.astype(np.int64))
    g = f.groupby("cluster")
    out = pd.DataFrame({"size": g.size()})
    out["n_train"] = g["split"].agg(lambda s: int((s == "train").sum()))
    out["n_val"] = g["split"].agg(lambda s: int((s == "val").sum()))
    out["train_share"] = out["n_train"] / out["size"]
    for split in ("train", "val"):
        med = f[f["split"] == split].groupby("cluster")["loss"].median()
        out[f"median_{split}_loss"] = med.reindex(out.index)
    val = f[f["split"] == "val"].groupby("cluster")
    for col in LOSS_COLUMNS[:-1]:
        if col in f.columns:
            out[f"median_val_{col}"] = val[col].median().reindex(out.index)
    meta = [c for c in f.columns if c in METADATA_COLUMNS or str(c).startswith("count_")]
    for col in meta:
        out[f"mean_{col}"] = g[col].mean()
    counts = [c for c in meta if str(c).startswith("count_")]
    if counts:
        totals = g[counts].sum()
        out["dominant_classes"] = [
            ", ".join(c.removeprefix("count_") for c in row.sort_values(ascending=False)
                      .index[:3] if row[c] > 0) for _, row in totals.iterrows()]
    else:
        out["dominant_classes"] = ""
    out.index.name = "cluster"
    return out
