"""Near-duplicate images and train / val leaks from the image embeddings (pure).

An image copied from train into val (maybe resized or re-compressed) lets the model be graded on
an image it was trained on: val scores are inflated without anyone noticing. Such a copy sits far
closer to its original than to any other image, however crowded its neighbourhood, so the
yardstick is each image's own neighbourhood and the threshold comes from the data, not from a
constant tuned on one world:

1. the vectors are the shallowest layer's block of the stored image embedding
   (:func:`shallow_block`): it keeps the layout of the pixels, where the deeper blocks keep what
   the objects are, which distinct images of one kind share (on the demo world a resized,
   re-compressed copy sat 1.7x the median nearest-neighbour distance from its source in the
   last layer's block, under 0.35x in the first's);
2. for every image, the distance to each of its nearest images is divided by the distance to its
   ``k``-th nearest (``k`` = ``C.DUPLICATE_NEIGHBOURS``: an image with up to ``k - 1`` copies
   still has a distinct image there);
3. on the log scale the nearest neighbour's ratios of all images have a median ``m`` and a
   robust spread ``s`` (1.4826 x the median distance above ``m`` of the values above it: a side
   the duplicates do not reach, so even many of them cannot widen it); a pair whose log ratio is
   below ``m - spread * s`` (``C.DUPLICATE_SPREAD``) is a near-duplicate, as is a pair at
   distance 0;
4. a near-duplicate pair across splits is a leak.
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
BLOCK_ROWS = 2_000  # rows the block layout of the embeddings is read from


@dataclass(frozen=True)
class DuplicateSummary:
    """What the near-duplicate search found.

    Attributes:
        threshold: largest ratio of a pair's distance to the image's yardstick distance (its
            ``k``-th nearest image's) at which the pair counts (NaN when too few images).
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


def shallow_block(embeddings: ArrayLike, *, max_layers: int = 8, tol: float = 1e-3) -> NDArray:
    """The first layer's block of image embeddings made of equal-norm layer blocks.

    :mod:`audit.data.model` concatenates one pooled block per hooked layer, each L2-normalised
    to ``1/sqrt(L)``; the blocks' boundaries are where every row's cumulative squared norm is
    ``k/L`` of its total. The largest ``L`` (2 to ``max_layers``) whose first boundary holds for
    every row within ``tol`` is taken (a layout of 4 blocks also fits 2).

    Args:
        embeddings: ``(n, D)`` image embeddings.

    Returns:
        ``(n, d)`` the first block, or the embeddings as they are when no block layout is found
        (fewer than two finite rows, or not built that way).

    Example:
        >>> shallow_block([[0.6, 0.0, 0.8, 0.0], [0.0, 0.6, 0.0, 0.8]]).tolist()
        [[0.6, 0.0, 0.8, 0.0], [0.0, 0.6, 0.0, 0.8]]
        >>> shallow_block(np.array([[1, 0, 1, 1], [0, 1, 1, 1]]) / np.sqrt([2, 2, 4, 4])).shape
        (2, 2)
    """
    x = np.asarray(embeddings)
    finite = x[np.isfinite(x).all(axis=1)] if x.ndim == 2 else x[:0]
    finite = finite[:BLOCK_ROWS].astype(np.float64)  # one layout for all rows: a few suffice
    if len(finite) < 2 or x.shape[1] < 2:
        return x
    cum = np.cumsum(finite ** 2, axis=1)
    total = cum[:, -1:]
    for n_layers in range(max_layers, 1, -1):  # 2 blocks also fit 4: the most that fit
        target = total / n_layers
        bound = int(np.argmax(cum >= target - tol, axis=1).max())
        if bound < x.shape[1] - 1 and np.all(np.abs(cum[:, bound:bound + 1] - target) <= tol):
            return x[:, :bound + 1]
    return x


def robust_fence(values: ArrayLike, *, spread: float = C.DUPLICATE_SPREAD) -> float:
    """``median - spread * s`` of the finite ``values``, ``s`` the upper half's robust spread.

    ``s`` is 1.4826 x the median distance above the median of the values above it: duplicates
    sit in the lower tail, so they cannot widen the spread they are read against (NaN with
    fewer than 3 finite values).

    Example:
        >>> round(robust_fence([-9.0, 0.0, 1.0, 2.0, 3.0], spread=1.0), 3)
        -0.483
    """
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if len(v) < 3:
        return float("nan")
    median = float(np.median(v))
    upper = v[v >= median] - median
    return median - spread * MAD_SCALE * float(np.median(upper))


def _check(vectors: ArrayLike, split: ArrayLike, ids: ArrayLike | None) -> tuple:
    """Validated float vectors, split names and ids as arrays."""
    z = np.asarray(vectors, np.float64)
    split = np.asarray(split).astype(str).reshape(-1)
    ids = np.arange(len(split)).astype(str) if ids is None else np.asarray(ids).astype(str)
    if z.ndim != 2 or len(z) != len(split) or len(ids) != len(split):
        raise ValueError(f"vectors (n, d), split (n,) and ids (n,) must align: got shapes "
                         f"{z.shape}, {split.shape}, {ids.shape}")
    return z, split, ids.reshape(-1)


def _knn(z: NDArray, k: int) -> tuple[NDArray, NDArray]:
    """Distances and rows of each row's ``k`` nearest other rows (itself left out)."""
    dist, idx = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(z).kneighbors(z)
    keep = idx != np.arange(len(z))[:, None]
    keep[~(~keep).any(axis=1), -1] = False  # an exact copy came first: drop the farthest
    return dist[keep].reshape(len(z), k), idx[keep].reshape(len(z), k)


def _neighbours(z: NDArray, k: int, groups: NDArray | None) -> tuple[NDArray, NDArray]:
    """:func:`_knn` over all rows, or within each group (NaN rows in a group of <= k rows)."""
    if groups is None:
        return _knn(z, k)
    dist, idx = np.full((len(z), k), np.nan), np.zeros((len(z), k), np.int64)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if len(members) > k:
            d, i = _knn(z[members], k)
            dist[members], idx[members] = d, members[i]
    return dist, idx


def find_duplicates(
    vectors: ArrayLike, split: ArrayLike, ids: ArrayLike | None = None, *,
    spread: float = C.DUPLICATE_SPREAD, neighbours: int = C.DUPLICATE_NEIGHBOURS,
    groups: ArrayLike | None = None,
) -> tuple[pd.DataFrame, DuplicateSummary]:
    """Near-duplicate image pairs, leaks across splits first.

    Args:
        vectors: ``(n, d)`` image vectors (e.g. :func:`shallow_block` of the embeddings); rows
            with a non-finite value are left out.
        split: ``(n,)`` split names ("train", "val", ...).
        ids: ``(n,)`` sample ids (default: row numbers as strings).
        spread: robust standard deviations (log scale) below the median ratio a pair must sit.
        neighbours: the ``k`` whose nearest image is each image's yardstick (>= 2).
        groups: ``(n,)`` group per image (e.g. its cluster): neighbours are searched within
            each group only (exact search costs O(n^2): on 100k images, about 10 times less
            with 10 groups); None searches all images.

    Returns:
        ``(pairs, summary)``: ``pairs`` has ``PAIR_COLUMNS``, one row per unordered pair; a
        leak's ``sample_a`` is its non-train image (val), its ``sample_b`` the train image;
        leaks first, then by distance (closest first). ``summary.threshold`` is the largest
        ratio of a pair's distance to the yardstick distance that counts.

    Example:
        >>> pairs, s = find_duplicates([[0.0], [1.0], [3.0], [3.001], [6.0], [10.0], [15.0]],
        ...                            ["train"] * 3 + ["val"] * 4)
        >>> pairs[["sample_a", "sample_b", "leak"]].values.tolist()
        [['3', '2', True]]
    """
    z, split, ids = _check(vectors, split, ids)
    if neighbours < 2:
        raise ValueError(f"neighbours must be >= 2, got {neighbours}")
    rows = np.flatnonzero(np.isfinite(z).all(axis=1))
    if len(rows) <= neighbours:
        return pd.DataFrame(columns=PAIR_COLUMNS), DuplicateSummary(
            float("nan"), float("nan"), 0, 0, len(rows))
    dist, idx = _neighbours(z[rows], neighbours,
                            None if groups is None else np.asarray(groups).reshape(-1)[rows])
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN rows: a group too small
        log_ratio = np.log(dist[:, :-1] / dist[:, -1:])
    fence = robust_fence(log_ratio[:, 0], spread=spread)
    hit = (dist[:, :-1] == 0) | (log_ratio <= fence)
    a = np.repeat(rows, neighbours - 1).reshape(len(rows), -1)[hit]
    pairs = _pairs(a, rows[idx[:, :-1]][hit], dist[:, :-1][hit])
    frame = _frame(pairs, split, ids)
    nearest = dist[np.isfinite(dist[:, 0]), 0]
    median = float(np.median(nearest)) if len(nearest) else float("nan")
    return frame, DuplicateSummary(float(np.exp(fence)), median,
                                   len(frame), int(frame["leak"].sum()), len(rows))


def _pairs(a: NDArray, b: NDArray, dist: NDArray) -> NDArray:
    """Unordered ``(row_a, row_b, distance)`` triples, each pair once."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    triples = np.column_stack([lo, hi, dist]) if len(a) else np.empty((0, 3))
    _, first = np.unique(triples[:, :2], axis=0, return_index=True)
    return triples[np.sort(first)]


def _frame(pairs: NDArray, split: NDArray, ids: NDArray) -> pd.DataFrame:
    """The pairs frame: a leak's non-train image first, leaks first, closest first."""
    a, b = pairs[:, 0].astype(int), pairs[:, 1].astype(int)
    swap = ((split[a] == "train") & (split[b] != "train")) | (
        (split[a] == split[b]) & (ids[a] > ids[b]))  # within a split: the smaller id first
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


def _ordinal(k: int) -> str:
    """``3`` -> ``"3rd"``."""
    return f"{k}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(k if k % 100 not in (11, 12, 13) else 0, 'th')}"


def _yardstick(summary: DuplicateSummary) -> str:
    """The limit said against the images' own neighbourhoods."""
    return (f"closer to each other in the embedding than {summary.threshold:.2g}x the distance "
            f"to their {_ordinal(C.DUPLICATE_NEIGHBOURS)} nearest image, which this dataset's "
            "images come that close to only by chance")


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
