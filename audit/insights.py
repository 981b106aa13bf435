"""Cluster insights: imbalance, overfitting and low performance, as sentences with numbers (pure).

Each function takes the samples frame (ARCHITECTURE.md; ``split``, ``loss`` and metadata columns)
and, where it is about clusters, one cluster label per sample. Tests are two-sided binomial
(imbalance) and one-sided Mann-Whitney U (losses), Holm-corrected over the clusters tested.
Degenerate data (one split, one cluster, no finite loss) gives no insight and a warning.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from audit import constants as C
from audit.frames import require_columns
from audit.insight import Insight, holm

__all__ = ["Insight", "imbalance_insights", "link_neighbour_clusters", "low_performance_insights",
           "overfit_insights"]

def _frame(samples: pd.DataFrame, labels: ArrayLike | None) -> pd.DataFrame:
    """Validated copy of split/loss (+ cluster) columns."""
    require_columns(samples, ("split", "loss"), "samples")
    out = pd.DataFrame({"split": samples["split"].astype(str).to_numpy(),
                        "loss": pd.to_numeric(samples["loss"], errors="coerce").to_numpy(float)},
                       index=samples.index)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (len(samples),):
            raise ValueError(f"labels: expected shape ({len(samples)},), got {lab.shape}")
        out["cluster"] = lab.astype(np.int64)
    return out


def _usable(frame: pd.DataFrame, *, need_splits: bool, need_clusters: bool, what: str) -> bool:
    """Warn and return False on degenerate data."""
    reason = None
    if need_clusters and frame["cluster"].nunique() < 2:
        reason = "fewer than two clusters"
    elif need_splits and not {"train", "val"} <= set(frame["split"]):
        reason = "only one split"
    elif not np.isfinite(frame["loss"]).any() and what != "imbalance":
        reason = "no finite loss"
    if reason:
        warnings.warn(f"{what}: {reason}; no insight", stacklevel=3)
    return reason is None


def _ids(frame: pd.DataFrame, mask: ArrayLike) -> tuple[str, ...]:
    """Sample ids under ``mask``, highest loss first."""
    sub = frame[np.asarray(mask)]
    return tuple(sub.sort_values("loss", ascending=False).index.astype(str))


def imbalance_insights(
    samples: pd.DataFrame, labels: ArrayLike, *, alpha: float = C.ALPHA,
    min_cluster_size: int = C.MIN_CLUSTER_SIZE,
) -> list[Insight]:
    """Clusters whose train:val mix differs from the dataset's (binomial test, Holm).

    Args:
        samples: samples frame with ``split`` and ``loss``.
        labels: ``(n_samples,)`` cluster per sample.
        alpha: family-wise level; min_cluster_size: smaller clusters are not tested.

    Returns:
        Insights of kind ``imbalance``;
        severity = |logit(cluster share) - logit(dataset share)| / 4.
    """
    f = _frame(samples, labels)
    if not _usable(f, need_splits=True, need_clusters=True, what="imbalance"):
        return []
    p0 = float((f["split"] == "train").mean())
    g = f.groupby("cluster")["split"].agg(n="size", n_train=lambda s: int((s == "train").sum()))
    g = g[g["n"] >= min_cluster_size]
    if g.empty:
        return []
    p = [stats.binomtest(int(r.n_train), int(r.n), p0).pvalue for r in g.itertuples()]
    g = g.assign(p=p, p_holm=holm(p), share=g["n_train"] / g["n"])
    out = []
    for c, r in g[g["p_holm"] < alpha].iterrows():
        n_val = int(r.n - r.n_train)
        heavy = r.share > p0
        logit = lambda x: math.log(min(max(x, 0.01), 0.99) / (1 - min(max(x, 0.01), 0.99)))  # noqa: E731
        sev = min(1.0, abs(logit(r.share) - logit(p0)) / 4)
        gap = _val_gap(samples, f["cluster"] == c)
        if heavy and n_val == 0:
            tail = ("No val image measures how the model does on it: move or add val images "
                    "like these.")
        elif heavy:
            images = "val image under-measures" if n_val == 1 else "val images under-measure"
            tail = (f"Its {n_val} {images} how the model does on it: move or add val images "
                    f"like these.{gap['text']}")
        else:
            tail = "The model trains on few images like these: add training images of this kind."
        sentence = (f"Cluster {c} is {'train' if heavy else 'val'}-heavy: {round(100 * r.share)} % "
                    f"of its {int(r.n)} images are in train vs {round(100 * p0)} % overall "
                    f"(binomial test, Holm-corrected p = {r.p_holm:.2g}). {tail}")
        out.append(Insight(
            kind="imbalance", title=f"Cluster {c}: {'train' if heavy else 'val'}-heavy",
            sentence=sentence, cluster=int(c), severity=sev,
            sample_ids=_ids(f, f["cluster"] == c),
            evidence={"plot": "train_val_counts", "cluster": int(c), "n_train": int(r.n_train),
                      "n_val": n_val, "expected_train_share": p0, "x": "split", "y": "images",
                      "color": "kind",
                      "data": [{"split": s, "kind": k, "images": v} for s, k, v in (
                          ("train", "observed", int(r.n_train)), ("val", "observed", n_val),
                          ("train", "expected", p0 * r.n), ("val", "expected", (1 - p0) * r.n))]},
            stats={"p": r.p, "p_holm": r.p_holm, "train_share": r.share, "dataset_share": p0,
                   "val_neighbour_loss_ratio": gap["cluster"],
                   "dataset_val_neighbour_loss_ratio": gap["dataset"]},
        ))
    return out


def _val_gap(samples: pd.DataFrame, in_cluster: pd.Series) -> dict:
    """Median ``neighbour_loss_ratio`` of a cluster's val images and of all val, and a sentence
    (empty without the column or val ratios)."""
    out = {"cluster": np.nan, "dataset": np.nan, "text": ""}
    if "neighbour_loss_ratio" not in samples:
        return out
    ratio = pd.to_numeric(samples["neighbour_loss_ratio"], errors="coerce").to_numpy(float)
    val = (samples["split"].astype(str) == "val").to_numpy() & np.isfinite(ratio)
    mine = val & np.asarray(in_cluster, bool)
    if not mine.any():
        return out
    out["cluster"], out["dataset"] = float(np.median(ratio[mine])), float(np.median(ratio[val]))
    lose = "That val image loses" if mine.sum() == 1 else "Those val images lose a median"
    out["text"] = (f" {lose} {out['cluster']:.1f}x the loss of the {C.GAP_NEIGHBOURS} train "
                   f"images nearest to {'it' if mine.sum() == 1 else 'each'} in the embedding "
                   f"({out['dataset']:.1f}x over all val)")
    if out["cluster"] >= C.OVERFIT_RATIO * out["dataset"]:
        out["text"] += (": the model fits images of this kind in train far better than it "
                        "generalises to them, a sign of overfitting")
    out["text"] += "."
    return out


def _quart(x: pd.Series) -> dict:
    """q25 / median / q75 of finite values."""
    x = x[np.isfinite(x)]
    q = np.quantile(x, [0.25, 0.5, 0.75]) if len(x) else [np.nan] * 3
    return {"q25": q[0], "median": q[1], "q75": q[2], "n": len(x)}


def _val_vs_rest(f: pd.DataFrame, values: pd.Series, min_val: int = 3) -> pd.DataFrame:
    """Per cluster: the median of ``values`` over its val images and over the other val images,
    and a one-sided Mann-Whitney p of its val values > the others' (NaN values left out; clusters
    where either side has fewer than ``min_val`` are skipped). No multiple-testing correction."""
    val = f.assign(value=values)
    val = val[(val["split"] == "val") & np.isfinite(val["value"])]
    rows = []
    for c in sorted(f["cluster"].unique()):
        v_in = val.loc[val["cluster"] == c, "value"]
        v_out = val.loc[val["cluster"] != c, "value"]
        if len(v_in) < min_val or len(v_out) < min_val:
            continue
        p = stats.mannwhitneyu(v_in, v_out, alternative="greater").pvalue
        rows.append({"cluster": int(c), "n": int((f["cluster"] == c).sum()), "n_val": len(v_in),
                     "val_median": v_in.median(), "rest_val_median": v_out.median(), "p": p})
    return pd.DataFrame(rows, columns=["cluster", "n", "n_val", "val_median", "rest_val_median",
                                       "p"])


def _val_ratios(samples: pd.DataFrame, f: pd.DataFrame) -> tuple[pd.Series, str]:
    """Each image's loss over its reference train loss, and what the reference is.

    The reference is the ``neighbour_loss_ratio`` column (the median loss of the image's nearest
    train images in the embedding) where the samples carry it, else the median train loss of the
    image's cluster. NaN where no ratio can be formed.
    """
    if "neighbour_loss_ratio" in samples:
        ratio = pd.to_numeric(samples["neighbour_loss_ratio"], errors="coerce").to_numpy(float)
        return pd.Series(ratio, index=f.index), "neighbours"
    ok = np.isfinite(f["loss"]) & (f["loss"] > 0)
    train = f[ok & (f["split"] == "train")].groupby("cluster")["loss"].median()
    reference = f["cluster"].map(train).to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok & (reference > 0), f["loss"].to_numpy(float) / reference, np.nan)
    return pd.Series(ratio, index=f.index), "cluster"


def overfit_insights(
    samples: pd.DataFrame, labels: ArrayLike, *, ratio: float = C.OVERFIT_RATIO,
    alpha: float = C.ALPHA, min_cluster_size: int = C.MIN_CLUSTER_SIZE, min_val: int = 3,
) -> list[Insight]:
    """Clusters whose val images lose far more than the train images like them.

    Overfitting is a generalisation gap: the model fits train images of a kind much better than
    val images of that kind. Each val image's loss is read against its own train reference: the
    ``neighbour_loss_ratio`` column where the samples carry it (loss over the median loss of the
    image's nearest train images in the embedding, :mod:`audit.generalisation`), else the median
    train loss of its cluster. Reading each image against its look-alikes keeps a cluster that
    mixes kinds of different loss levels (few large objects next to many medium ones) from
    hiding its gap. A cluster is overfitted when

    - its val images' median ratio is at least ``ratio`` times the median over all val images
      (the dataset's own gap is the yardstick),
    - their ratios lie above the other val images' (one-sided Mann-Whitney U, Holm-corrected over
      the clusters tested, each with at least ``min_val`` val images), and
    - its median train loss is at most the dataset's (low train loss: hard everywhere is low
      performance, not overfitting).

    Three val images whose ratios stand above all of 60 others give p ~ 3e-5. Severity =
    1 - 1 / relative ratio. ``sample_ids``: the cluster's val images, highest ratio first, then
    its train images, highest loss first.
    """
    f = _frame(samples, labels)
    if not _usable(f, need_splits=True, need_clusters=True, what="overfit"):
        return []
    t0 = f.loc[f["split"] == "train", "loss"].median()
    v0 = f.loc[f["split"] == "val", "loss"].median()
    gap, reference = _val_ratios(samples, f)
    val_gap = gap[(f["split"] == "val") & np.isfinite(gap) & (gap > 0)]
    if val_gap.empty:
        return []
    r0 = float(val_gap.median())
    tests = _val_vs_rest(f, gap.where(gap > 0), min_val)
    tests = tests[tests["n"] >= min_cluster_size]
    tests = tests.assign(p_holm=holm(tests["p"]) if len(tests) else [])
    is_val = (f["split"] == "val").to_numpy()
    against = (f"the {C.GAP_NEIGHBOURS} train images nearest to each in the embedding"
               if reference == "neighbours" else "the cluster's median train loss")
    out = []
    for r in tests.itertuples():
        mask = (f["cluster"] == r.cluster).to_numpy()
        train_median = f.loc[mask & ~is_val, "loss"].median()
        val_median = f.loc[mask & is_val, "loss"].median()
        rel = r.val_median / r0 if r0 > 0 else np.nan
        if not (rel >= ratio and train_median <= t0 and r.p_holm < alpha):
            continue
        sentence = (f"Cluster {r.cluster} looks overfitted: its {r.n_val} val images lose a median "
                    f"{r.val_median:.1f}x the loss of {against}, against {r0:.1f}x over all val "
                    f"(Mann-Whitney against the other val images, Holm p = {r.p_holm:.2g}); its "
                    f"median train loss is {train_median:.2f} (dataset {t0:.2f}), its val loss "
                    f"{val_median:.2f} (dataset {v0:.2f}). Add more varied training images of this "
                    "kind (or drop near-duplicates) and augment them harder.")
        order = pd.DataFrame({"val": is_val[mask],
                              "gap": gap[mask].where(is_val[mask]).fillna(-np.inf),
                              "loss": f.loc[mask, "loss"].fillna(-np.inf)},
                             index=f.index[mask])
        order = order.sort_values(["val", "gap", "loss"], ascending=False, kind="stable")
        out.append(Insight(
            kind="overfit", title=f"Cluster {r.cluster}: overfitted", sentence=sentence,
            cluster=r.cluster, severity=float(np.clip(1 - 1 / rel, 0, 1)),
            sample_ids=tuple(order.index.astype(str)),
            evidence={"plot": "loss_by_split", "cluster": r.cluster, "x": "split",
                      "y": "median_loss", "color": "where",
                      "train": _quart(f.loc[mask & ~is_val, "loss"]),
                      "val": _quart(f.loc[mask & is_val, "loss"]),
                      "data": [{"split": "train", "where": f"cluster {r.cluster}",
                                "median_loss": train_median},
                               {"split": "val", "where": f"cluster {r.cluster}",
                                "median_loss": val_median},
                               {"split": "train", "where": "dataset", "median_loss": t0},
                               {"split": "val", "where": "dataset", "median_loss": v0}]},
            stats={"relative_ratio": rel, "val_ratio": r.val_median, "dataset_val_ratio": r0,
                   "reference": reference, "p": r.p, "p_holm": r.p_holm, "n_val": r.n_val},
        ))
    return out


LOW_PERF_LOSSES = {"loss": "loss", "loss_box": "box loss", "loss_cls": "class loss"}
# the losses a low-performance cluster is tested on (as the curves: DFL grows with box size in
# stride units, a property of large boxes rather than a weakness)


def low_performance_insights(
    samples: pd.DataFrame, labels: ArrayLike, *, class_recall: pd.DataFrame | None = None,
    ratio: float = C.LOW_PERF_RATIO, alpha: float = C.ALPHA,
    min_cluster_size: int = C.MIN_CLUSTER_SIZE,
) -> list[Insight]:
    """Clusters whose val loss is well above the rest of val.

    Tested on the total loss and on its box and class components where the samples carry them
    (a cluster of small objects can lose far more on boxes while its total stays ordinary): one
    one-sided Mann-Whitney U per (cluster, loss), Holm-corrected over all of them. A cluster is
    flagged when, for some loss, its median val loss / the rest's median >= ``ratio`` and the
    test rejects; the loss with the largest ratio makes the card. ``class_recall`` (index
    cluster, one column per class, val recall) adds the worst class to the sentence. Severity =
    1 - 1 / loss ratio.
    """
    f = _frame(samples, labels)
    if not _usable(f, need_splits=False, need_clusters=True, what="low_performance"):
        return []
    parts = []
    for col in (c for c in LOW_PERF_LOSSES if c == "loss" or c in samples.columns):
        values = f["loss"] if col == "loss" else pd.Series(
            pd.to_numeric(samples[col], errors="coerce").to_numpy(float), index=f.index)
        t = _val_vs_rest(f, values).assign(loss=col)
        parts.append(t[t["n"] >= min_cluster_size])
    tests = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if tests.empty:
        return []
    tests["p_holm"] = holm(tests["p"])
    tests["rel"] = tests["val_median"] / tests["rest_val_median"].where(
        tests["rest_val_median"] > 0)
    hits = tests[(tests["rel"] >= ratio) & (tests["p_holm"] < alpha)]
    best = hits.loc[hits.groupby("cluster")["rel"].idxmax()] if len(hits) else hits
    out = []
    for r in best.sort_values("cluster").itertuples():
        rel, what = float(r.rel), LOW_PERF_LOSSES[r.loss]
        sentence = (f"Cluster {r.cluster} is a weak spot: median val {what} {r.val_median:.2f} vs "
                    f"{r.rest_val_median:.2f} for the rest of val ({rel:.1f}x, Mann-Whitney, Holm "
                    f"p = {r.p_holm:.2g}).")
        recall = None
        if class_recall is not None and r.cluster in class_recall.index:
            recall = class_recall.loc[r.cluster].dropna()
            if len(recall):
                sentence += (f" Worst class there: {recall.idxmin()} "
                             f"(val recall {recall.min():.2f}).")
        sentence += " Collect or relabel more images like these."
        out.append(Insight(
            kind="low_performance", title=f"Cluster {r.cluster}: low performance",
            sentence=sentence, cluster=r.cluster, severity=float(np.clip(1 - 1 / rel, 0, 1)),
            sample_ids=_ids(f, f["cluster"] == r.cluster),
            evidence={"plot": "val_loss_by_cluster", "cluster": r.cluster, "x": "cluster",
                      "y": "median_val_loss", "loss": r.loss,
                      "data": [{"cluster": f"c{t.cluster}", "median_val_loss": t.val_median}
                               for t in tests[tests["loss"] == r.loss].itertuples()],
                      "recall": {} if recall is None else recall.to_dict()},
            stats={"loss_ratio": rel, "p": r.p, "p_holm": r.p_holm, "n_val": r.n_val,
                   "loss": r.loss},
        ))
    return out


def link_neighbour_clusters(found: list[Insight], reduced: ArrayLike,
                            labels: ArrayLike) -> list[Insight]:
    """Tie a train-heavy card and an overfit card on two clusters of one kind of image.

    k-means may split one kind of image in two: the half with no val image is train-heavy, the
    half with a few val images is overfitted (the model fits that kind's many train images and
    fails on its val ones). When the two clusters are each other's nearest (by centroid in
    ``reduced``), each card's sentence names the other and its ``stats["related_cluster"]`` holds
    its cluster. Other insights pass unchanged.

    Args:
        found: insights, any kinds.
        reduced: ``(n, d)`` embeddings the clusters were fitted on; rows aligned with ``labels``.
        labels: ``(n,)`` cluster per sample.

    Returns:
        ``found`` in the same order, the linked cards replaced.
    """
    heavy = {i.cluster: i for i in found if i.kind == "imbalance" and i.cluster is not None
             and i.stats.get("train_share", 0) > i.stats.get("dataset_share", 1)}
    over = {i.cluster: i for i in found if i.kind == "overfit" and i.cluster is not None}
    if not heavy or not over:
        return found
    nearest = _nearest_clusters(np.asarray(reduced, float), np.asarray(labels))
    swap: dict[int, Insight] = {}
    for c, card in over.items():
        j = nearest.get(c)
        if j is None or j == c or j not in heavy or nearest.get(j) != c:
            continue
        h = heavy[j]
        share = round(100 * h.stats["train_share"])
        swap[id(card)] = dataclasses.replace(
            card, sentence=f"{card.sentence} Cluster {j}, its nearest cluster in the embedding, "
            f"is train-heavy ({share} % train): the two hold one kind of image that the model "
            "saw mostly in training, and these val images are where that shows.",
            stats={**card.stats, "related_cluster": j})
        swap[id(h)] = dataclasses.replace(
            h, sentence=f"{h.sentence} Cluster {c}, its nearest cluster in the embedding, looks "
            f"overfitted (its val images lose {card.stats['val_ratio']:.1f}x their train "
            "look-alikes' loss): images of this kind are where the model fails to generalise.",
            stats={**h.stats, "related_cluster": c})
    return [swap.get(id(i), i) for i in found]


def _nearest_clusters(reduced: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """Each cluster's nearest other cluster by centroid distance (one cluster: none)."""
    keys, codes = np.unique(labels, return_inverse=True)
    if len(keys) < 2 or reduced.ndim != 2 or len(reduced) != len(labels):
        return {}
    centres = np.zeros((len(keys), reduced.shape[1]))
    np.add.at(centres, codes, reduced)
    centres /= np.bincount(codes, minlength=len(keys))[:, None]
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    return {int(k): int(keys[np.argmin(row)]) for k, row in zip(keys, dist, strict=True)}
