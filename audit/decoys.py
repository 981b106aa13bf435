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


@dataclass
class _Copy:
    """One image's copy while decoys are planted in it."""

    sid: str
    rows: pd.DataFrame
    feats: NDArray | None
    is_gt: NDArray
    xy: NDArray
    width: float
    height: float
    keep: NDArray
    truth: dict

    def box_id(self, i: int) -> str:
        return str(self.rows["box_id"].iloc[i])


def _neighbour_pairs(xy: NDArray, labels: NDArray, rows: NDArray) -> list[tuple[int, int]]:
    """Pairs of ``rows`` of one class that are neighbours (centres within 1.5 times their mean
    side), nearest first."""
    if len(rows) < 2:
        return []
    centre = (xy[rows, :2] + xy[rows, 2:]) / 2
    side = np.sqrt(B.box_area(xy[rows]))
    dist = np.linalg.norm(centre[:, None] - centre[None], axis=2)
    lab = labels[rows]
    ok = (dist <= 0.75 * (side[:, None] + side[None])) & (lab[:, None] == lab[None])
    i, j = np.nonzero(np.triu(ok, 1))
    order = np.argsort(dist[i, j], kind="stable")
    return [(int(rows[i[o]]), int(rows[j[o]])) for o in order]


def _plant_merges(c: _Copy, k: int, labels: NDArray, free: NDArray) -> set[int]:
    """Up to ``k`` merge decoys: two neighbouring labels of one class replaced by the box around
    both (the first keeps its row and feature, the second leaves the copy) where that box
    encloses no third label. Returns the rows used."""
    used: set[int] = set()
    for a, b in _neighbour_pairs(c.xy, labels, free):
        if len(used) >= 2 * k:
            break
        if a in used or b in used:
            continue
        union = np.r_[np.minimum(c.xy[a, :2], c.xy[b, :2]), np.maximum(c.xy[a, 2:], c.xy[b, 2:])]
        rest = np.setdiff1d(np.flatnonzero(c.is_gt), [a, b])
        if rest.size and (B.containment(c.xy[rest], union[None])[:, 0] >= C.GROUP_CONTAIN).any():
            continue
        c.rows.iloc[a, c.rows.columns.get_indexer(["x1", "y1", "x2", "y2"])] = union
        c.keep[b] = False
        c.truth[c.box_id(a)] = "group_box"
        used |= {a, b}
    return used


def _plant_on_labels(c: _Copy, rng: np.random.Generator, k: int, classes: NDArray,
                     freq: NDArray, shift_iou: tuple[float, float]) -> None:
    """Merge decoys on neighbouring labels, then shift, flip and drop decoys in turn, on up to
    half of the copy's labels in all."""
    gts = rng.permutation(np.flatnonzero(c.is_gt))
    labels = c.rows["label"].astype(str).to_numpy()
    budget = len(gts) // 2  # half stay untouched
    used = _plant_merges(c, min(k, budget // 2), labels, gts)
    drop = []
    start = int(rng.integers(0, 3))  # which kind an image with few labels gets
    rest = [g for g in gts if g not in used][: max(0, min(3 * k, budget - len(used)))]
    for j, g in enumerate(rest):
        kind = ("shift", "flip", "drop")[(start + j) % 3]
        if kind == "shift":
            new = _shift(rng, c.xy[g], c.width, c.height, shift_iou)
            if new is not None:
                c.rows.iloc[g, c.rows.columns.get_indexer(["x1", "y1", "x2", "y2"])] = new
                c.truth[c.box_id(g)] = "bad_box"
        elif kind == "flip" and len(classes) > 1:
            p = np.where(classes == labels[g], 0.0, freq)
            c.rows.iloc[g, c.rows.columns.get_loc("label")] = rng.choice(classes, p=p / p.sum())
            c.truth[c.box_id(g)] = "wrong_class"
        elif kind == "drop":
            c.keep[g] = False
            drop.append(g)
    for g in drop:  # the dropped label's object is now the best prediction over it
        preds = np.flatnonzero((~c.is_gt) & (labels == labels[g]))
        if preds.size:
            iou = B.iou_matrix(c.xy[g][None], c.xy[preds])[0]
            ok = preds[iou >= C.MATCH_IOU]
            if ok.size:
                best = ok[np.argmax(np.nan_to_num(c.rows["confidence"].to_numpy(float)[ok]))]
                c.truth[c.box_id(best)] = "missing"


def _plant_spawns(c: _Copy, rng: np.random.Generator, k: int, classes: NDArray, freq: NDArray,
                  sites: list, has_probes: bool, taken: NDArray) -> tuple[pd.DataFrame, list]:
    """Up to ``k`` labels on background: on the image's probes, else on faint predictions'
    boxes, else anywhere empty without a feature. Returns the new rows and their features."""
    background = (_background_preds(c.xy, c.is_gt, c.rows["confidence"].to_numpy(float),
                                    c.feats) if not has_probes else np.zeros(0, np.int64))
    gts = np.flatnonzero(c.is_gt)
    # with features in play, a spawn decoy needs one: only probes (or faint predictions)
    n_spawn = k if c.feats is None or (not sites and not has_probes) else min(
        k, len(sites) or len(background))
    spawned, feats = [], []
    for j in range(n_spawn):
        if j < len(sites):  # on a probe, with the model's feature there
            new, feat = sites[j]
        elif j < len(background):  # on a faint prediction's box, with its feature
            b = background[j]
            new, feat = c.xy[b], c.feats[b]
            c.keep[b] = False  # nothing of the model's is left on it
        else:  # anywhere on background, no feature
            new = _spawn(rng, c.xy[gts[j % len(gts)]], taken, c.width, c.height)
            feat = None
        if new is not None:
            bid = f"{c.sid}~spawn{j}"
            spawned.append({"sample_id": f"{c.sid}{DECOY_SUFFIX}", "box_id": bid,
                            "source": "gt", "x1": new[0], "y1": new[1], "x2": new[2],
                            "y2": new[3], "label": rng.choice(classes, p=freq),
                            "confidence": np.nan, "iscrowd": False})
            feats.append(feat)
            c.truth[bid] = "spurious"
    return pd.DataFrame(spawned, columns=list(c.rows.columns)), feats


def plant_decoys(boxes: pd.DataFrame, box_features: NDArray | None, samples: pd.DataFrame, *,
                 per_type: int = C.DECOYS_PER_TYPE, max_per_image: int = C.DECOYS_MAX_PER_IMAGE,
                 shift_iou: tuple[float, float] = C.DECOY_SHIFT_IOU,
                 probes: tuple[pd.DataFrame, NDArray | None] | None = None,
                 seed: int = C.SEED) -> DecoyWorld:
    """Copies of up to ``per_type`` labelled images, each with up to ``max_per_image`` planted
    errors of each kind (spawn, shift, flip, drop, merge), never two on one label and never on
    more than half of an image's labels (the rest are the untouched rows the decoys are read
    against).

    Copies get ids ``<sample_id>~decoy`` (boxes ``<box_id>~decoy``), one copy per image, so the
    kNN evidence (which skips boxes of the query's own image) never meets a twin. A spawned box
    lies on one of the image's background ``probes`` (drawn at ingest by
    :func:`background_probes`, with the model's feature there); for a dataset without probes, on
    a faint prediction's box on background (that prediction leaves the copy), else anywhere
    empty without a feature. A shifted or flipped label keeps its object's feature; a merged
    label (two neighbouring labels of one class replaced by the box around both) keeps the
    first one's.

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
    feats = None if box_features is None else np.asarray(box_features, dtype=np.float32)
    if not len(labelled):
        return DecoyWorld(boxes.iloc[:0].copy(), None if feats is None else feats[:0],
                          samples.iloc[:0].copy(), pd.Series(dtype=object))
    k = int(min(max_per_image, max(1, math.ceil(per_type / len(labelled)))))
    chosen = rng.permutation(labelled)[: int(min(len(labelled), math.ceil(per_type / k)))]
    by_sample = boxes.groupby(boxes["sample_id"].astype(str)).indices
    sample_rows = samples.copy()
    sample_rows.index = sample_rows.index.astype(str)
    conf_all = boxes["confidence"].to_numpy(float)
    probe_sites = _probe_sites(probes)
    out_rows, out_feats, truth = [], [], {}
    for sid in chosen:
        idx = by_sample[sid]
        rows = boxes.iloc[idx].copy()
        rows["sample_id"] = f"{sid}{DECOY_SUFFIX}"
        rows["box_id"] = rows["box_id"].astype(str) + DECOY_SUFFIX
        c = _Copy(sid, rows, None if feats is None else feats[idx].copy(), gt_mask[idx],
                  xyxy(rows), *_image_size(rows, sample_rows.loc[sid]),
                  np.ones(len(rows), bool), truth)
        taken = c.xy[c.is_gt | (np.nan_to_num(conf_all[idx]) >= C.GROUP_MEMBER_CONF)]
        _plant_on_labels(c, rng, k, classes, freq, shift_iou)
        spawned, spawn_feats = _plant_spawns(c, rng, k, classes, freq, probe_sites.get(sid, []),
                                             probes is not None, taken)
        out_rows += [c.rows[c.keep], spawned]
        if c.feats is not None:
            nan = np.full(c.feats.shape[1], np.nan, np.float32)
            out_feats += [c.feats[c.keep], np.array([nan if v is None else v for v in spawn_feats],
                                                    np.float32).reshape(-1, c.feats.shape[1])]
    decoy_boxes = pd.concat(out_rows, ignore_index=True)
    decoy_boxes = decoy_boxes.astype({c: boxes[c].dtype for c in ("x1", "y1", "x2", "y2")})
    decoy_samples = sample_rows.loc[chosen].copy()
    decoy_samples.index = pd.Index([f"{s}{DECOY_SUFFIX}" for s in chosen], name=samples.index.name)
    return DecoyWorld(decoy_boxes, None if feats is None else np.concatenate(out_feats),
                      decoy_samples, pd.Series(truth, dtype=object))
