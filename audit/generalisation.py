"""Per-image generalisation gap: an image's loss against the train images most like it.

A model that overfits a kind of image fits its train images of that kind well and its val images
of that kind badly. Averaged over a cluster, a handful of such val images drown among the
cluster's other val images; per image they stand out. For each image, the reference is the median
loss of its ``k`` nearest *train* images in the embedding (the image itself left out), so

    neighbour_loss_ratio = loss / median(loss of the k nearest train images)

is about 1 for an image the model handles like the train images that look like it, and well above
1 for a val image it fails on although it fits its look-alikes in train: the local generalisation
gap. Train images get the ratio too (their spread is the yardstick a val image is read against).
Neighbours are searched in the standardised PCA space of :func:`audit.clusters.reduce` with
scikit-learn's brute-force euclidean kNN, against at most ``max_reference`` train images (a seeded
subsample beyond that, to bound the time on 100k samples).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.neighbors import NearestNeighbors

from audit import constants as C


def neighbour_loss_ratio(
    reduced: NDArray,
    loss: ArrayLike,
    split: ArrayLike,
    *,
    k: int = C.GAP_NEIGHBOURS,
    max_reference: int = C.GAP_MAX_REFERENCE,
    seed: int = C.SEED,
) -> NDArray[np.float64]:
    """Each image's loss over the median loss of its ``k`` nearest train images.

    Args:
        reduced: ``(n, d)`` embeddings, e.g. :func:`audit.clusters.reduce` of the image
            embeddings; rows aligned with ``loss`` and ``split``.
        loss: ``(n,)`` per-image loss (NaN or <= 0: no ratio, and not a reference).
        split: ``(n,)`` split names; images in "train" with a usable loss are the references.
        k: neighbours per image (fewer when fewer references exist).
        max_reference: at most this many train images are searched (seeded subsample).
        seed: subsample seed.

    Returns:
        ``(n,)`` ratios (> 0), NaN for an image without a usable loss or when fewer than two
        train images have one.

    Example:
        >>> neighbour_loss_ratio(np.eye(3), [1.0, 1.0, 3.0], ["train", "train", "val"], k=2)
        array([1., 1., 3.])
    """
    z = np.asarray(reduced, np.float64)
    loss = np.asarray(loss, np.float64).reshape(-1)
    split = np.asarray(split).astype(str).reshape(-1)
    if z.ndim != 2 or len(z) != len(loss) or len(split) != len(loss):
        raise ValueError(f"reduced, loss and split must align: got shapes {z.shape}, "
                         f"{loss.shape}, {split.shape}")
    if k < 1 or max_reference < 2:
        raise ValueError(f"k must be >= 1 and max_reference >= 2, got {k}, {max_reference}")
    out = np.full(len(loss), np.nan)
    usable = np.isfinite(loss) & (loss > 0) & np.isfinite(z).all(axis=1)
    ref = np.flatnonzero(usable & (split == "train"))
    if len(ref) > max_reference:
        ref = np.sort(np.random.default_rng(seed).choice(ref, max_reference, replace=False))
    if len(ref) < 2:
        return out
    query = np.flatnonzero(usable)
    n_ref = min(k + 1, len(ref))  # one spare: a train image finds itself first
    _, idx = NearestNeighbors(n_neighbors=n_ref).fit(z[ref]).kneighbors(z[query])
    neighbours = ref[idx]  # (Q, n_ref) sample rows
    is_self = neighbours == query[:, None]
    # drop the image itself where found, else the farthest spare, keeping min(k, n_ref - 1)
    keep = ~is_self
    keep[~is_self.any(axis=1), -1] = False
    rows = neighbours[keep].reshape(len(query), n_ref - 1)
    reference = np.median(np.log(loss[rows]), axis=1)
    out[query] = np.exp(np.log(loss[query]) - reference)
    return out


def gap_by_cluster(samples: pd.DataFrame, column: str = "neighbour_loss_ratio") -> pd.DataFrame:
    """Median neighbour loss ratio per cluster and split: where val images fare worst against
    their look-alikes in train.

    Args:
        samples: frame with ``cluster``, ``split`` and ``column``.
        column: the ratio column.

    Returns:
        Frame with ``cluster`` (str), ``split``, ``median_ratio``, ``q25``, ``q75`` and
        ``images`` (with a finite ratio), clusters ordered by their val median, highest first;
        empty when the columns are missing or no ratio is finite.

    Example:
        >>> frame = pd.DataFrame({"cluster": [0, 0, 1], "split": ["train", "val", "val"],
        ...                       "neighbour_loss_ratio": [1.0, 2.0, 1.0]})
        >>> gap_by_cluster(frame)[["cluster", "split", "median_ratio"]].values.tolist()
        [['0', 'train', 1.0], ['0', 'val', 2.0], ['1', 'val', 1.0]]
    """
    columns = ["cluster", "split", "median_ratio", "q25", "q75", "images"]
    if not {"cluster", "split", column} <= set(samples.columns):
        return pd.DataFrame(columns=columns)
    ratio = pd.to_numeric(samples[column], errors="coerce")
    frame = pd.DataFrame({"cluster": samples["cluster"].astype(str),
                          "split": samples["split"].astype(str), "ratio": ratio})
    frame = frame[np.isfinite(frame["ratio"])]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    out = frame.groupby(["cluster", "split"])["ratio"].agg(
        median_ratio="median", q25=lambda x: x.quantile(0.25), q75=lambda x: x.quantile(0.75),
        images="size").reset_index()
    val = out[out["split"] == "val"].set_index("cluster")["median_ratio"]
    order = {c: i for i, c in enumerate(val.sort_values(ascending=False, kind="stable").index)}
    out["_order"] = out["cluster"].map(order).fillna(len(order))
    return out.sort_values(["_order", "cluster", "split"], kind="stable").drop(columns="_order") \
        .reset_index(drop=True)[columns]
