"""Seeded synthetic audit inputs (the frames of docs/ARCHITECTURE.md) with planted label errors.

Used by the speed benchmark (100k samples) and by the tests (a few hundred samples). Objects of
``K`` classes sit in 640x480 images; label errors of five kinds are injected; a simulated detector
predicts the true objects, but on the train split it has memorised most label errors (a flipped
label is predicted as the wrong class, a shifted box as shifted, a dropped object is barely
predicted, a spawned box is predicted). Per-box features are class prototypes plus noise, so they
still say what the object really is. Everything is vectorised numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

CLASSES = ("car", "person", "book", "dog", "cup", "bike")
W, H = 640, 480
ERROR_KINDS = ("drop", "flip", "shift", "spawn", "merge")


@dataclass(frozen=True)
class SyntheticFrames:
    """Synthetic audit inputs and what was planted.

    Attributes:
        samples: samples frame indexed by ``sample_id`` (split, width, height, losses,
            ``truth_cluster``).
        embeddings: ``(n_samples, emb_dim)`` float32 with cluster structure.
        boxes: boxes frame, absolute ``xyxy``; gt and pred rows.
        box_features: ``(n_boxes, feat_dim)`` float32 aligned with ``boxes``.
        truth: Series indexed by ``box_id``: ``clean`` or the planted error kind (``drop`` is put on
            the prediction of the dropped object; ``group`` marks genuine group-convention boxes).
    """

    samples: pd.DataFrame
    embeddings: NDArray[np.float32]
    boxes: pd.DataFrame
    box_features: NDArray[np.float32]
    truth: pd.Series


def _random_boxes(rng: np.random.Generator, count: int, scale: NDArray | float = 1.0) -> NDArray:
    """``(count, 4)`` random ``xyxy`` boxes inside the image, side ~ 12 % of the image."""
    side = np.clip(rng.lognormal(np.log(0.12), 0.35, count), 0.03, 0.45) * scale
    w = side * W * rng.uniform(0.7, 1.3, count)
    h = side * H * rng.uniform(0.7, 1.3, count)
    x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1)


def _objects(rng: np.random.Generator, n: int, per_sample: float, cluster: NDArray, planted: bool):
    """True objects: sample index, class, xyxy box."""
    sample = np.repeat(np.arange(n), rng.poisson(per_sample, n))
    cls = rng.integers(0, len(CLASSES), sample.size)
    scale = np.where(cluster[sample] == 1, 0.3, 1.0) if planted else 1.0  # small-object cluster
    return sample, cls, _random_boxes(rng, sample.size, scale)


def _merge_partner(sample: NDArray, cls: NDArray, want: NDArray) -> NDArray[np.int64]:
    """For objects in ``want``, the next object of the same sample and class (-1 if none)."""
    order = np.lexsort((cls, sample))
    partner = np.full(sample.size, -1, np.int64)
    s, c = sample[order], cls[order]
    same = np.r_[(s[1:] == s[:-1]) & (c[1:] == c[:-1]), False]
    partner[order[same]] = order[np.flatnonzero(same) + 1]
    partner[~want] = -1
    # a partner must not itself merge or be merged twice
    taken = np.zeros(sample.size, bool)
    for i in np.flatnonzero(partner >= 0):  # few (noise_rate / 5 of the objects)
        if taken[i] or taken[partner[i]]:
            partner[i] = -1
        else:
            taken[i] = taken[partner[i]] = True
    return partner


def _union(a: NDArray, b: NDArray) -> NDArray:
    """Union boxes of aligned ``xyxy`` arrays."""
    return np.concatenate([np.minimum(a[:, :2], b[:, :2]), np.maximum(a[:, 2:], b[:, 2:])], 1)


def make_frames(
    n_samples: int,
    *,
    seed: int = 0,
    noise_rate: float = 0.08,
    preds_per_sample: float = 15.0,
    objects_per_sample: float = 7.0,
    emb_dim: int = 448,
    feat_dim: int = 64,
    n_clusters: int = 8,
    memorise: float = 0.8,
    planted: bool = False,
) -> SyntheticFrames:
    """Build seeded synthetic frames.

    Args:
        n_samples: number of images.
        seed: random seed.
        noise_rate: share of objects given one of the five label errors.
        preds_per_sample: mean predictions per image (conf >= 0.05), background ones included.
        objects_per_sample: mean true objects per image.
        emb_dim: embedding width; feat_dim: per-box feature width.
        n_clusters: latent clusters of the image embeddings.
        memorise: probability that the model memorised a train label error.
        planted: plant insight structures: cluster 0 is train-heavy with a low train loss,
            cluster 1 holds small objects and a high loss, and ``book`` is labelled two ways
            (one box per group of books in a third of the images that show several).

    Returns:
        A :class:`SyntheticFrames`.
    """
    rng = np.random.default_rng(seed)
    n, k = n_samples, len(CLASSES)
    cluster = rng.integers(0, n_clusters, n)
    val_share = np.where(planted & (cluster == 0), 0.03, 0.25)
    is_val = rng.random(n) < val_share
    sample, cls, box = _objects(rng, n, objects_per_sample, cluster, planted)
    m = sample.size
    kind = rng.choice(
        np.array(("clean", *ERROR_KINDS)), m, p=[1 - noise_rate] + [noise_rate / 5] * 5
    )
    kind[kind == "spawn"] = "clean"  # spawned boxes are extra rows, below
    partner = _merge_partner(sample, cls, kind == "merge")
    kind[(kind == "merge") & (partner < 0)] = "clean"
    merged_away = np.zeros(m, bool)
    merged_away[partner[partner >= 0]] = True
    kind[merged_away] = "merged_away"
    group = np.zeros(m, bool)
    if planted:
        group = _book_groups(rng, sample, cls, kind)
    mem = (rng.random(m) < memorise) & ~is_val[sample]
    protos = rng.normal(0, 1, (k + 1, feat_dim))  # last row: background

    gt = _gt_rows(rng, sample, cls, box, kind, partner, group, protos)
    spawn = _spawn_rows(rng, n, noise_rate * objects_per_sample / 5, protos)
    pred = _pred_rows(rng, sample, cls, box, kind, mem, protos, gt[0])
    bg = _background_preds(rng, n, np.bincount(sample, minlength=n), preds_per_sample, protos)
    sp = spawn[0]
    learnt = (rng.random(len(sp)) < memorise) & ~is_val[sp["sample"].to_numpy()]
    spawn_pred = (sp[learnt].assign(source="pred", truth="clean",
                                    confidence=rng.uniform(0.5, 0.9, int(learnt.sum()))),
                  spawn[1][learnt])
    parts = [gt, spawn, pred, spawn_pred, bg]
    rows = pd.concat([p[0] for p in parts], ignore_index=True)
    feats = np.concatenate([p[1] for p in parts])
    order = np.argsort(rows["sample"].to_numpy(), kind="stable")
    rows = rows.iloc[order].reset_index(drop=True)
    return _assemble(rng, rows, feats[order], n, cluster, is_val, emb_dim, n_clusters, planted)


def _book_groups(rng, sample, cls, kind) -> NDArray[np.bool_]:
    """Mark clean books of images with >= 2 books where the labeller drew one group box."""
    book = (cls == CLASSES.index("book")) & (kind == "clean")
    n_books = np.bincount(sample[book], minlength=sample.max() + 1 if sample.size else 0)
    chosen = rng.random(n_books.size) < 0.35
    return book & (n_books[sample] >= 2) & chosen[sample]


def _gt_rows(rng, sample, cls, box, kind, partner, group, protos) -> tuple[pd.DataFrame, NDArray]:
    """Ground-truth rows of the true objects after the planted errors."""
    label = cls.copy()
    flip = kind == "flip"
    label[flip] = (cls[flip] + rng.integers(1, len(CLASSES), flip.sum())) % len(CLASSES)
    gbox = box.copy()
    shift = kind == "shift"
    wh = box[shift, 2:] - box[shift, :2]
    d = wh * rng.uniform(0.3, 0.5, (shift.sum(), 2)) * rng.choice([-1, 1], (shift.sum(), 2))
    gbox[shift] += np.concatenate([d, d], 1)
    merge = kind == "merge"
    gbox[merge] = _union(box[merge], box[partner[merge]])
    feat = protos[cls] + rng.normal(0, 0.5, (cls.size, protos.shape[1]))
    feat[shift] = 0.5 * feat[shift] + 0.5 * protos[-1]
    feat[merge] = 0.6 * feat[merge] + 0.4 * protos[-1]
    keep = ~np.isin(kind, ("drop", "merged_away")) & ~group
    truth = kind.astype(object)
    rows = _frame(sample[keep], "gt", gbox[keep], label[keep], np.nan, feat[keep], truth[keep])
    if group.any():  # one union box per image over its grouped books
        g = pd.DataFrame(box[group], columns=["x1", "y1", "x2", "y2"]).assign(s=sample[group])
        u = g.groupby("s").agg(x1=("x1", "min"), y1=("y1", "min"), x2=("x2", "max"),
                               y2=("y2", "max"))
        gfeat = protos[CLASSES.index("book")] * 0.6 + protos[-1] * 0.4
        gfeat = gfeat + rng.normal(0, 0.5, (len(u), protos.shape[1]))
        extra = _frame(u.index.to_numpy(), "gt", u.to_numpy(),
                       np.full(len(u), CLASSES.index("book")), np.nan, gfeat,
                       np.full(len(u), "group", object))
        rows = (pd.concat([rows[0], extra[0]], ignore_index=True),
                np.concatenate([rows[1], extra[1]]))
    return rows


def _spawn_rows(rng, n, rate, protos) -> tuple[pd.DataFrame, NDArray]:
    """Spawned gt boxes on background: random place and class."""
    count = rng.poisson(rate, n)
    s = np.repeat(np.arange(n), count)
    box = _random_boxes(rng, s.size)
    feat = protos[-1] + rng.normal(0, 0.5, (s.size, protos.shape[1]))
    cls = rng.integers(0, len(CLASSES), s.size)
    return _frame(s, "gt", box, cls, np.nan, feat, np.full(s.size, "spawn", object))


def _pred_rows(rng, sample, cls, box, kind, mem, protos, gt) -> tuple[pd.DataFrame, NDArray]:
    """Predictions of the true objects (what a detector that memorised train errors says)."""
    detected = rng.random(sample.size) < 0.97
    conf = rng.beta(8, 1.5, sample.size)
    label = cls.copy()
    pbox = box + rng.normal(0, 0.02, box.shape) * np.tile(box[:, 2:] - box[:, :2], 2)
    flip = (kind == "flip") & mem
    gt_flip = gt[gt["truth"] == "flip"]
    label[kind == "flip"] = gt_flip["label_code"].to_numpy() if len(gt_flip) else label[:0]
    label[~flip] = cls[~flip]
    gt_shift = gt[gt["truth"] == "shift"][["x1", "y1", "x2", "y2"]].to_numpy()
    pbox[kind == "shift"] = np.where(mem[kind == "shift"][:, None], gt_shift,
                                     pbox[kind == "shift"])
    conf[(kind == "drop") & mem] *= 0.15
    conf = np.clip(conf, 0.05, 0.999)
    feat = protos[cls] + rng.normal(0, 0.5, (cls.size, protos.shape[1]))
    truth = np.where(kind == "drop", "drop", "clean").astype(object)
    return _frame(sample[detected], "pred", pbox[detected], label[detected], conf[detected],
                  feat[detected], truth[detected])


def _background_preds(rng, n, n_obj, per_sample, protos) -> tuple[pd.DataFrame, NDArray]:
    """Low-confidence predictions on background, up to ``per_sample`` predictions per image."""
    count = rng.poisson(np.clip(per_sample - n_obj, 0, None))
    s = np.repeat(np.arange(n), count)
    box = _random_boxes(rng, s.size)
    feat = protos[-1] + rng.normal(0, 0.5, (s.size, protos.shape[1]))
    return _frame(s, "pred", box, rng.integers(0, len(CLASSES), s.size),
                  rng.uniform(0.05, 0.35, s.size), feat, np.full(s.size, "clean", object))


def _frame(sample, source, box, label, conf, feat, truth) -> tuple[pd.DataFrame, NDArray]:
    """Long rows and their aligned per-box features."""
    out = pd.DataFrame({"sample": sample, "source": source, "label_code": label,
                        "confidence": conf, "truth": truth})
    out[["x1", "y1", "x2", "y2"]] = np.clip(box, [0, 0, 0, 0], [W, H, W, H])
    return out, np.asarray(feat, dtype=np.float32).reshape(len(out), -1)


def _assemble(rng, rows, feats, n, cluster, is_val, emb_dim, n_clusters, planted):
    """Final frames: ids, labels, features, embeddings and losses."""
    sid = np.char.add("s", np.arange(n).astype(str))
    boxes = pd.DataFrame({
        "sample_id": sid[rows["sample"].to_numpy()],
        "box_id": np.char.add("b", np.arange(len(rows)).astype(str)),
        "source": rows["source"].to_numpy(),
        "x1": rows["x1"].to_numpy(), "y1": rows["y1"].to_numpy(),
        "x2": rows["x2"].to_numpy(), "y2": rows["y2"].to_numpy(),
        "label": np.asarray(CLASSES, dtype=object)[rows["label_code"].to_numpy(int)],
        "confidence": rows["confidence"].to_numpy(float),
        "iscrowd": False,
    })
    truth = pd.Series(rows["truth"].to_numpy(), index=boxes["box_id"].to_numpy(), name="truth")
    centres = rng.normal(0, 1, (n_clusters, emb_dim)) * 1.5
    emb = (centres[cluster] + rng.normal(0, 1, (n, emb_dim))).astype(np.float32)
    n_err = np.bincount(rows["sample"].to_numpy()[rows["truth"].isin(ERROR_KINDS).to_numpy()],
                        minlength=n)
    base = np.where(is_val, 1.0, 0.6) * (1 + 0.3 * n_err) * rng.lognormal(0, 0.25, n)
    if planted:
        base = base * np.where(cluster == 0, np.where(is_val, 1.0, 0.4), 1.0)
        base = base * np.where(cluster == 1, 2.2, 1.0)
    samples = pd.DataFrame({
        "filepath": np.char.add(np.char.add("images/", sid), ".jpg"),
        "split": np.where(is_val, "val", "train"),
        "width": W, "height": H,
        "loss_box": 0.4 * base, "loss_cls": 0.35 * base, "loss_dfl": 0.25 * base, "loss": base,
        "truth_cluster": cluster,
    }, index=pd.Index(sid, name="sample_id"))
    return SyntheticFrames(samples, emb, boxes, feats.astype(np.float32), truth)
