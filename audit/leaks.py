"""Near-duplicate images and train / val leaks from the image embeddings (pure).

An image copied from train into val (maybe resized or re-compressed) lets the model be graded on
an image it was trained on: val scores are inflated without anyone noticing. In the embedding such
a copy sits far closer to its original than any two distinct images of the dataset sit to each
other. So the yardstick comes from the data, not from a constant tuned on one world:

1. every image's distance to its nearest other image (``d1``) is measured in the embedding
   (euclidean, e.g. in :func:`audit.clusters.reduce`'s standardised PCA space);
2. on the log scale these nearest-neighbour distances have a median ``m`` and a robust spread
   ``s`` (1.4826 x the median absolute deviation), both insensitive to a minority of duplicates;
3. a pair of images is a near-duplicate when their distance is at most
   ``exp(m - spread * s)``: far below what nearest neighbours are in this dataset
   (``spread`` = ``C.DUPLICATE_SPREAD`` robust deviations);
4. a near-duplicate pair across splits is a leak.

Each image's ``C.DUPLICATE_NEIGHBOURS`` nearest neighbours are searched (scikit-learn's exact
kNN), so an image copied twice is paired with both copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.neighbors import NearestNeighbors

from audit import constants as C
from audit.insight import Insight

PAIR_COLUMNS = ["sample_a", "sample_b", "split_a", "split_b", "distance", "leak"]
MAD_SCALE = 1.4826  # median absolute deviation -> standard deviation of a normal


@dataclass(frozen=True)
class DuplicateSummary:
    """What the near-duplicate search found.

    Attributes:
        threshold: largest distance at which two images count as near-duplicates (NaN when too
            few images to tell).
        median_nn_distance: median distance of an image to its nearest other image.
        n_pairs: near-duplicate pairs found; n_leaks: those whose images are in different
            splits.
        n_images: images searched.
    """

    threshold: float
    median_nn_distance: float
    n_pairs: int
    n_leaks: int
    n_images: int


def duplicate_threshold(nn_distance: ArrayLike, *, spread: float = C.DUPLICATE_SPREAD) -> float:
    """The near-duplicate distance limit read off the nearest-neighbour distances.

    Args:
        nn_distance: ``(n,)`` each image's distance to its nearest other image (>= 0).
        spread: how many robust standard deviations (log scale) below the median a pair must
            sit.

    Returns:
        ``exp(median(log d) - spread * 1.4826 * MAD(log d))`` over the positive finite
        distances; NaN when fewer than 3 of them exist.

    Example:
        >>> round(duplicate_threshold([1.0, 1.0, np.e, np.e ** 2], spread=1.0), 3)
        0.786
    """
    d = np.asarray(nn_distance, np.float64).reshape(-1)
    logs = np.log(d[np.isfinite(d) & (d > 0)])
    if len(logs) < 3:
        return float("nan")
    median = float(np.median(logs))
    mad = MAD_SCALE * float(np.median(np.abs(logs - median)))
    return float(np.exp(median - spread * mad))


def _check(vectors: ArrayLike, split: ArrayLike, ids: ArrayLike | None) -> tuple:
    """Validated float vectors, split names and ids as arrays."""
    z = np.asarray(vectors, np.float64)
    split = np.asarray(split).astype(str).reshape(-1)
    ids = np.arange(len(split)).astype(str) if ids is None else np.asarray(ids).astype(str)
    if z.ndim != 2 or len(z) != len(split) or len(ids) != len(split):
        raise ValueError(f"vectors (n, d), split (n,) and ids (n,) must align: got shapes "
                         f"{z.shape}, {split.shape}, {ids.shape}")
    return z, split, ids.reshape(-1)


def find_duplicates(
    vectors: ArrayLike, split: ArrayLike, ids: ArrayLike | None = None, *,
    spread: float = C.DUPLICATE_SPREAD, neighbours: int = C.DUPLICATE_NEIGHBOURS,
) -> tuple[pd.DataFrame, DuplicateSummary]:
    """Near-duplicate image pairs, leaks across splits first.

    Args:
        vectors: ``(n, d)`` image embeddings (e.g. :func:`audit.clusters.reduce` output); rows
            with a non-finite value are left out.
        split: ``(n,)`` split names ("train", "val", ...).
        ids: ``(n,)`` sample ids (default: row numbers as strings).
        spread: see :func:`duplicate_threshold`.
        neighbours: nearest neighbours searched per image.

    Returns:
        ``(pairs, summary)``: ``pairs`` has ``PAIR_COLUMNS``, one row per unordered pair at
        distance <= the threshold; a leak's ``sample_a`` is its non-train image (val), its
        ``sample_b`` the train image; leaks first, then by distance (closest first).

    Example:
        >>> pairs, s = find_duplicates([[0.0], [1.0], [3.0], [3.001], [6.0], [10.0]],
        ...                            ["train"] * 3 + ["val"] * 3)
        >>> pairs[["sample_a", "sample_b", "leak"]].values.tolist()
        [['3', '2', True]]
    """
    z, split, ids = _check(vectors, split, ids)
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    rows = np.flatnonzero(np.isfinite(z).all(axis=1))
    empty = pd.DataFrame(columns=PAIR_COLUMNS)
    if len(rows) < 3:
        return empty, DuplicateSummary(float("nan"), float("nan"), 0, 0, len(rows))
    k = min(neighbours + 1, len(rows))  # the image itself comes back among its neighbours
    dist, idx = NearestNeighbors(n_neighbors=k).fit(z[rows]).kneighbors(z[rows])
    other = idx != np.arange(len(rows))[:, None]
    nn = np.where(other, dist, np.inf).min(axis=1)
    threshold = duplicate_threshold(nn, spread=spread)
    pairs = _pairs(rows[:, None].repeat(k, 1)[other], rows[idx][other], dist[other], threshold)
    frame = _frame(pairs, split, ids)
    return frame, DuplicateSummary(threshold, float(np.median(nn)), len(frame),
                                   int(frame["leak"].sum()), len(rows))


def _pairs(a: NDArray, b: NDArray, dist: NDArray, threshold: float) -> NDArray:
    """Unordered ``(row_a, row_b, distance)`` triples at distance <= threshold, each once."""
    keep = dist <= threshold if np.isfinite(threshold) else dist <= 0
    lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    triples = np.column_stack([lo, hi, dist[keep]]) if keep.any() else np.empty((0, 3))
    _, first = np.unique(triples[:, :2], axis=0, return_index=True)
    return triples[np.sort(first)]


def _frame(pairs: NDArray, split: NDArray, ids: NDArray) -> pd.DataFrame:
    """The pairs frame: the non-train image of a leak first, leaks first, closest first."""
    a, b = pairs[:, 0].astype(int), pairs[:, 1].astype(int)
    swap = (split[a] == "train") & (split[b] != "train")
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    frame = pd.DataFrame({"sample_a": ids[a], "sample_b": ids[b], "split_a": split[a],
                          "split_b": split[b], "distance": pairs[:, 2].astype(float)},
                         columns=PAIR_COLUMNS[:-1])
    frame["leak"] = frame["split_a"] != frame["split_b"]
    return frame.sort_values(["leak", "distance"], ascending=[False, True], kind="stable") \
        .reset_index(drop=True)[PAIR_COLUMNS]



def _evidence(pairs: pd.DataFrame, summary: DuplicateSummary, shown: int) -> dict:
    """An insight's evidence: the closest pairs (both ids, splits, distance) and the yardstick."""
    top = pairs.head(shown)
    return {"plot": "pairs", "pairs": top[PAIR_COLUMNS[:-1]].to_dict("records"),
            "threshold": summary.threshold, "median_nn_distance": summary.median_nn_distance}


def _plural(n: int, one: str, many: str) -> str:
    """``"1 image"`` / ``"3 images"``."""
    return f"{n} {one if n == 1 else many}"


def _yardstick(summary: DuplicateSummary) -> str:
    """The distance limit said against the dataset's own nearest-neighbour distances."""
    median = summary.median_nn_distance
    ratio = f"{summary.threshold / median:.2g}x" if median > 0 else "a fraction of"
    return (f"closer in the embedding than {summary.threshold:.3g}, {ratio} the median distance "
            f"of an image to its nearest other image ({median:.3g})")


def _leak_insight(leaks: pd.DataFrame, summary: DuplicateSummary, n_val: int | None,
                  shown: int) -> Insight:
    """The ``leak`` insight of the pairs across splits."""
    n, n_train = leaks["sample_a"].nunique(), leaks["sample_b"].nunique()
    splits = "/".join(sorted(set(leaks["split_a"])))
    title = (f"{_plural(n, splits + ' image is a near-copy', splits + ' images are near-copies')}"
             f" of {'a train image' if n == 1 else 'train images'}")
    return Insight(
        kind="leak", title=title,
        sentence=f"{_plural(n, splits + ' image', splits + ' images')} and "
        f"{_plural(n_train, 'train image', 'train images')} form "
        f"{_plural(len(leaks), 'pair', 'pairs')} {_yardstick(summary)}: the same image in both "
        "splits, so the scores on them are inflated. Remove one image of each pair or move it "
        "to the other's split.",
        severity=min(1.0, 0.5 + 5.0 * (n / n_val if n_val else 0.0)),
        sample_ids=tuple(dict.fromkeys([*leaks["sample_a"], *leaks["sample_b"]])),
        evidence=_evidence(leaks, summary, shown),
        stats={"pairs": len(leaks), "threshold": summary.threshold})


def _within_insight(within: pd.DataFrame, summary: DuplicateSummary, shown: int) -> Insight:
    """The ``duplicate`` insight of the pairs within one split."""
    n = len(within)
    return Insight(
        kind="duplicate", title=f"{_plural(n, 'near-duplicate pair', 'near-duplicate pairs')} "
        "within a split",
        sentence=f"{_plural(n, 'pair', 'pairs')} of images in the same split "
        f"{'is' if n == 1 else 'are'} {_yardstick(summary)}: they weigh twice in training or "
        "in the scores; keep one of each unless the repeat is intended.",
        severity=0.3, sample_ids=tuple(dict.fromkeys([*within["sample_a"], *within["sample_b"]])),
        evidence=_evidence(within, summary, shown),
        stats={"pairs": n, "threshold": summary.threshold})


def duplicate_insights(pairs: pd.DataFrame, summary: DuplicateSummary, *,
                       n_val: int | None = None, shown: int = C.DUPLICATE_SHOWN) -> list[Insight]:
    """A ``leak`` insight for pairs across splits, a ``duplicate`` insight for pairs within one.

    Args:
        pairs, summary: :func:`find_duplicates` output.
        n_val: images outside train (the leaks' share of them sets the severity).
        shown: pairs kept in each insight's evidence (closest first).

    Returns:
        Zero, one or two :class:`audit.insight.Insight` (kinds "leak", "duplicate"); their
        ``sample_ids`` hold both images of every pair, the non-train image first.

    Example:
        >>> pairs, s = find_duplicates([[0.0], [1.0], [3.0], [3.001], [6.0], [10.0]],
        ...                            ["train"] * 3 + ["val"] * 3)
        >>> [i.title for i in duplicate_insights(pairs, s)]
        ['1 val image is a near-copy of a train image']
    """
    out = []
    if pairs["leak"].any():
        out.append(_leak_insight(pairs[pairs["leak"]], summary, n_val, shown))
    if (~pairs["leak"].astype(bool)).any():
        out.append(_within_insight(pairs[~pairs["leak"].astype(bool)], summary, shown))
    return out
