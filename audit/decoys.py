"""Decoy errors planted in copies of the user's own images, for the calibration (pure).

:mod:`audit.calibration` reads how the scorer's evidence on these decoys differs from its
evidence on the copies' untouched labels. A decoy follows the definition of its issue: a label
moved off its object (bad box), a label given another class (wrong class), a label removed (its
object's prediction is then a missing label) and a label drawn on background (spurious), the
last on the background probes whose features ingest stores (:func:`background_probes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from audit import boxes as B
from audit import constants as C
from audit.frames import xyxy

DECOY_SUFFIX = "~decoy"  # a copy's sample id is its original's with this suffix


def origin_id(sample_id: str) -> str:
    """The id of the image a decoy copy was made from (any other id unchanged)."""
    return sample_id.removesuffix(DECOY_SUFFIX)


@dataclass(frozen=True)
class DecoyWorld:
    """Copies of some images with planted errors: inputs for the scorer, and which rows are
    planted (``truth``: ``box_id`` -> issue)."""

    boxes: pd.DataFrame
    features: NDArray | None
    samples: pd.DataFrame
    truth: pd.Series


def _shift(rng: np.random.Generator, box: NDArray, width: float, height: float,
           iou_range: tuple[float, float]) -> NDArray | None:
    """A moved and resized copy of ``box`` inside the image with IoU in ``iou_range``."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for _ in range(100):
        sx, sy = np.exp(rng.uniform(-0.5, 0.5, size=2))
        dx, dy = rng.uniform(-0.4, 0.4, size=2) * (w, h)
        nw, nh = w * sx, h * sy
        new = np.array([max(0.0, cx + dx - nw / 2), max(0.0, cy + dy - nh / 2),
                        min(width, cx + dx + nw / 2), min(height, cy + dy + nh / 2)])
        if new[2] - new[0] < 2 or new[3] - new[1] < 2:
            continue
        iou = float(B.iou_matrix(box[None], new[None])[0, 0])
        if iou_range[0] <= iou <= iou_range[1]:
            return new
    return None


def _spawn(rng: np.random.Generator, like: NDArray, taken: NDArray, width: float,
           height: float) -> NDArray | None:
    """A box sized like ``like`` (x0.8-1.25) where it covers at most 5 % of itself with any of
    ``taken`` (labels and confident predictions)."""
    for _ in range(50):
        s = float(rng.uniform(0.8, 1.25))
        w, h = (like[2] - like[0]) * s, (like[3] - like[1]) * s
        if w >= width or h >= height or w < 2 or h < 2:
            return None
        x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
        new = np.array([x, y, x + w, y + h])
        if not len(taken):
            return new
        if float(B.containment(taken, new[None])[:, 0].max()) <= 0.05:
            return new
    return None


def _background_preds(xy: NDArray, is_gt: NDArray, conf: NDArray,
                      feats: NDArray | None) -> NDArray:
    """Rows of faint predictions (below ``GROUP_MEMBER_CONF``) that have a feature and overlap
    no label (IoU < ``NEAR_IOU``): the model glimpsed something there and it is background by
    the labels. A decoy spawned there gets a real background feature, as a label drawn on
    background gets at ingest. Most confident first."""
    if feats is None:
        return np.zeros(0, np.int64)
    cand = np.flatnonzero(~is_gt & (np.nan_to_num(conf) < C.GROUP_MEMBER_CONF)
                          & np.isfinite(feats).all(axis=1))
    if cand.size and is_gt.any():
        near = B.iou_matrix(xy[cand], xy[is_gt]).max(axis=1) >= C.NEAR_IOU
        cand = cand[~near]
    return cand[np.argsort(np.nan_to_num(conf[cand]), kind="stable")]


def background_probes(gt_xyxy: NDArray, width: float, height: float, *,
                      k: int = C.PROBES_PER_IMAGE, seed: int | str = C.SEED) -> NDArray:
    """Up to ``k`` label-sized boxes on background (absolute px ``xyxy``), drawn at ingest so
    the model's features there can be stored: a spurious label is a box where no object is, and
    the calibration plants its decoys on these. Each is sized like one of the image's labels
    (x0.8-1.25; a tenth of the shorter side without labels) and covers at most 5 % of itself
    with any label. Deterministic per ``seed`` (e.g. the image's path).

    Example:
        >>> background_probes(np.array([[0, 0, 50, 50.0]]), 400, 300, k=2, seed="a").shape
        (2, 4)
    """
    gt_xyxy = np.asarray(gt_xyxy, float).reshape(-1, 4)
    if isinstance(seed, str):
        seed = int.from_bytes(seed.encode()[-16:].ljust(16, b"\0"), "little") % (2**63)
    rng = np.random.default_rng([int(seed), 11])
    side = 0.1 * min(width, height)
    sizes = gt_xyxy if len(gt_xyxy) else np.array([[0.0, 0.0, side, side]])
    out = []
    for _ in range(k):
        box = _spawn(rng, sizes[int(rng.integers(0, len(sizes)))], gt_xyxy, float(width),
                     float(height))
        if box is not None:
            out.append(box)
    return np.array(out, dtype=np.float64).reshape(-1, 4)


def _probe_sites(probes: tuple[pd.DataFrame, NDArray | None] | None,
                 ) -> dict[str, list[tuple[NDArray, NDArray | None]]]:
    """Sample id -> its probes' (xyxy box, feature or None)."""
    if probes is None or probes[0] is None or not len(probes[0]):
        return {}
    frame, feats = probes
    out: dict[str, list] = {}
    xy = xyxy(frame)
    for i, sid in enumerate(frame["sample_id"].astype(str)):
        f = None if feats is None or not np.isfinite(feats[i]).all() else feats[i]
        out.setdefault(sid, []).append((xy[i], f))
    return out


def _image_size(rows: pd.DataFrame, sample: pd.Series) -> tuple[float, float]:
    """Width and height of an image: the samples frame's, else the extent of its boxes."""
    w = float(sample.get("width", np.nan)) if "width" in sample else np.nan
    h = float(sample.get("height", np.nan)) if "height" in sample else np.nan
    if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0):
        w, h = float(rows["x2"].max()), float(rows["y2"].max())
    return w, h


def plant_decoys(boxes: pd.DataFrame, box_features: NDArray | None, samples: pd.DataFrame, *,
                 per_type: int = C.DECOYS_PER_TYPE, max_per_image: int = C.DECOYS_MAX_PER_IMAGE,
                 shift_iou: tuple[float, float] = C.DECOY_SHIFT_IOU,
                 probes: tuple[pd.DataFrame, NDArray | None] | None = None,
                 seed: int = C.SEED) -> DecoyWorld:
    """Copies of up to ``per_type`` labelled images, each with up to ``max_per_image`` planted
    errors of each kind (spawn, shift, flip, drop), never two on one label and never on more
    than half of an image's labels (the rest are the untouched rows the decoys are read
    against).

    Copies get ids ``<sample_id>~decoy`` (boxes ``<box_id>~decoy``), one copy per image, so the
    kNN evidence (which skips boxes of the query's own image) never meets a twin. A spawned box
    lies on one of the image's background ``probes`` (drawn at ingest by
    :func:`background_probes`, with the model's feature there); for a dataset without probes, on
    a faint prediction's box on background (that prediction leaves the copy), else anywhere
    empty without a feature. A shifted or flipped label keeps its object's feature.

    Returns:
        A :class:`DecoyWorld`; empty frames when no image holds a label.
    """
    rng = np.random.default_rng([seed, 7])
    gt_mask = (boxes["source"].to_numpy() == "gt")
    if "iscrowd" in boxes:
        gt_mask &= ~boxes["iscrowd"].fillna(False).astype(bool).to_numpy()
    labelled = pd.unique(boxes.loc[gt_mask, "sample_id"].astype(str))
    classes, counts = np.unique(boxes.loc[gt_mask, "label"].astype(str), return_counts=True)
    freq = counts / max(counts.sum(), 1)
    n_img = len(labelled)
    if n_img == 0:
        return DecoyWorld(boxes.iloc[:0].copy(), None if box_features is None else
                          np.asarray(box_features)[:0], samples.iloc[:0].copy(),
                          pd.Series(dtype=object))
    k = int(min(max_per_image, max(1, math.ceil(per_type / n_img))))
    chosen = rng.permutation(labelled)[: int(min(n_img, math.ceil(per_type / k)))]
    feats = None if box_features is None else np.asarray(box_features, dtype=np.float32)
    by_sample = boxes.groupby(boxes["sample_id"].astype(str)).indices
    sample_rows = samples.copy()
    sample_rows.index = sample_rows.index.astype(str)
    out_rows, out_feats, truth = [], [], {}
    conf_all = boxes["confidence"].to_numpy(float)
    probe_sites = _probe_sites(probes)
    for sid in chosen:
        idx = by_sample[sid]
        rows = boxes.iloc[idx].copy()
        rows["sample_id"] = f"{sid}{DECOY_SUFFIX}"
        rows["box_id"] = rows["box_id"].astype(str) + DECOY_SUFFIX
        f = None if feats is None else feats[idx].copy()
        width, height = _image_size(rows, sample_rows.loc[sid])
        is_gt = gt_mask[idx]
        xy = xyxy(rows)
        gts = rng.permutation(np.flatnonzero(is_gt))
        taken = xy[is_gt | (np.nan_to_num(conf_all[idx]) >= C.GROUP_MEMBER_CONF)]
        drop, keep_rows = [], np.ones(len(rows), bool)
        start = int(rng.integers(0, 3))  # which kind an image with few labels gets
        for j, g in enumerate(gts[: min(3 * k, len(gts) // 2)]):  # half stay untouched
            kind = ("shift", "flip", "drop")[(start + j) % 3]
            if kind == "shift":
                new = _shift(rng, xy[g], width, height, shift_iou)
                if new is not None:
                    rows.iloc[g, rows.columns.get_indexer(["x1", "y1", "x2", "y2"])] = new
                    truth[rows["box_id"].iloc[g]] = "bad_box"
            elif kind == "flip" and len(classes) > 1:
                own = rows["label"].iloc[g]
                p = np.where(classes == own, 0.0, freq)
                rows.iloc[g, rows.columns.get_loc("label")] = rng.choice(classes, p=p / p.sum())
                truth[rows["box_id"].iloc[g]] = "wrong_class"
            elif kind == "drop":
                keep_rows[g] = False
                drop.append(g)
        for g in drop:  # the dropped label's object is now the best prediction over it
            preds = np.flatnonzero((~is_gt) & (rows["label"].to_numpy() == rows["label"].iloc[g]))
            if preds.size:
                iou = B.iou_matrix(xy[g][None], xy[preds])[0]
                ok = preds[iou >= C.MATCH_IOU]
                if ok.size:
                    best = ok[np.argmax(np.nan_to_num(rows["confidence"].to_numpy(float)[ok]))]
                    truth[rows["box_id"].iloc[best]] = "missing"
        spawned, spawn_feats = [], []
        sites = probe_sites.get(sid, [])
        background = (_background_preds(xy, is_gt, rows["confidence"].to_numpy(float), f)
                      if probes is None else np.zeros(0, np.int64))
        # with features in play, a spawn decoy needs one: only probes (or faint predictions)
        n_spawn = k if f is None or (not sites and probes is None) else min(k, len(sites) or
                                                                             len(background))
        for j in range(n_spawn):
            if j < len(sites):  # on a probe, with the model's feature there
                new, feat = sites[j]
            elif j < len(background):  # on a faint prediction's box, with its feature
                b = background[j]
                new, feat = xy[b], f[b]
                keep_rows[b] = False  # nothing of the model's is left on it
            else:  # anywhere on background, no feature
                new = _spawn(rng, xy[gts[j % len(gts)]], taken, width, height)
                feat = None
            if new is not None:
                spawned.append({"sample_id": f"{sid}{DECOY_SUFFIX}", "box_id": f"{sid}~spawn{j}",
                                "source": "gt", "x1": new[0], "y1": new[1], "x2": new[2],
                                "y2": new[3], "label": rng.choice(classes, p=freq),
                                "confidence": np.nan, "iscrowd": False})
                spawn_feats.append(feat)
                truth[f"{sid}~spawn{j}"] = "spurious"
        rows = rows[keep_rows]
        out_rows += [rows, pd.DataFrame(spawned, columns=list(rows.columns)
                                        if spawned else rows.columns)]
        if f is not None:
            nan = np.full(f.shape[1], np.nan, np.float32)
            out_feats += [f[keep_rows], np.array([nan if v is None else v for v in spawn_feats],
                                                 np.float32).reshape(-1, f.shape[1])]
    decoy_boxes = pd.concat(out_rows, ignore_index=True)
    decoy_boxes = decoy_boxes.astype({c: boxes[c].dtype for c in ("x1", "y1", "x2", "y2")})
    decoy_samples = sample_rows.loc[chosen].copy()
    decoy_samples.index = pd.Index([f"{s}{DECOY_SUFFIX}" for s in chosen], name=samples.index.name)
    return DecoyWorld(decoy_boxes, None if feats is None else np.concatenate(out_feats),
                      decoy_samples, pd.Series(truth, dtype=object))
