"""The synthetic data the app benchmark feeds the pages (``python -m audit bench app``).

A samples table shaped like :func:`audit.data.views.samples_table`'s and the boxes behind
:func:`audit.data.views.sample_boxes`, built from :func:`benchmarks.synthetic.make_frames`: its
metadata, per-issue scores (low on clean boxes, high on one issue of a planted error), flags by
the scorer's own rule (:func:`audit.mistakenness.is_flagged`), clusters and three projections;
and seeded JPEG scenes for the page to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from audit import constants as C

ISSUES = ("wrong_class", "bad_box", "missing", "spurious", "group_box", "partial_labels")


@dataclass(frozen=True)
class SyntheticApp:
    """A samples table like ``views.samples_table``'s and the boxes behind ``sample_boxes``.

    Attributes:
        table: indexed by ``sample_id`` (see :func:`audit.data.views.samples_table`).
        boxes: the synthetic boxes frame (absolute ``xyxy``) with per-box ``<issue>_score``.
        starts: ``(n + 1,)`` row offsets of each sample's boxes in ``boxes``.
        classes: class names.
    """

    table: pd.DataFrame
    boxes: pd.DataFrame
    starts: NDArray[np.int64]
    classes: tuple[str, ...]

    @classmethod
    def build(cls, n: int, images: list[str], *, seed: int = C.SEED) -> SyntheticApp:
        """Seeded synthetic table of ``n`` samples whose files cycle through ``images``."""
        from audit.metadata import sample_metadata
        from benchmarks.synthetic import CLASSES, ERROR_KINDS, make_frames

        frames = make_frames(n, seed=seed)
        rng = np.random.default_rng(seed)
        boxes = frames.boxes
        wrong = frames.truth.reindex(boxes["box_id"]).isin(ERROR_KINDS).to_numpy()
        boxes = boxes.assign(**_box_scores(rng, boxes["source"].to_numpy() == "gt", wrong))
        boxes["suggested_label"] = np.where(
            boxes["wrong_class_score"].to_numpy() >= C.WRONG_CLASS_SCORE,
            np.asarray(CLASSES, object)[rng.integers(0, len(CLASSES), len(boxes))], None)
        codes = pd.Index(frames.samples.index).get_indexer(boxes["sample_id"])
        starts = np.r_[0, np.cumsum(np.bincount(codes, minlength=n))].astype(np.int64)
        meta = sample_metadata(frames.boxes, frames.samples, class_names=list(CLASSES))
        table = _table(rng, frames.samples, meta, boxes, images)
        return cls(table, boxes, starts, tuple(CLASSES))

    def sample_boxes(self, sample_id: str) -> pd.DataFrame:
        """``views.sample_boxes`` of one sample (BOX_COLUMNS + review_status, flagged first)."""
        from audit.data.views import BOX_COLUMNS, BOX_ISSUES

        i = self.table.index.get_loc(sample_id)
        rows = self.boxes.iloc[self.starts[i]:self.starts[i + 1]]
        scores = rows[[f"{k}_score" for k in BOX_ISSUES]].to_numpy(float)
        over = np.where(_box_flags(rows), scores, -np.inf)
        best = over.argmax(axis=1)
        flagged = np.isfinite(over.max(axis=1))
        frame = rows.assign(
            flagged_issue=np.where(flagged, np.asarray(BOX_ISSUES, object)[best], None),
            flag_score=np.where(flagged, over.max(axis=1), np.nan), review_status=None)
        return frame[[*BOX_COLUMNS, "review_status"]].sort_values(
            "flag_score", ascending=False, na_position="last", kind="stable")


def _box_flags(boxes: pd.DataFrame) -> NDArray[np.bool_]:
    """``(len(boxes), len(BOX_ISSUES))``: which issues flag each box, by the scorer's own rule
    (:func:`audit.mistakenness.is_flagged`: thresholds, and the missing flag's confidence floor)."""
    from audit.data.views import BOX_ISSUES
    from audit.mistakenness import is_flagged

    conf = boxes["confidence"].to_numpy(float)
    return np.stack([is_flagged(k, boxes[f"{k}_score"].to_numpy(float), conf)
                     for k in BOX_ISSUES], axis=1)


def _box_scores(rng: np.random.Generator, is_gt: NDArray, wrong: NDArray) -> dict[str, NDArray]:
    """Per-box issue scores: low for clean boxes, high on one issue of a planted error."""
    m = len(is_gt)
    out = {}
    high = rng.integers(0, 3, m)  # which gt issue a planted error shows up as
    for k, issue in enumerate(("wrong_class", "bad_box", "spurious")):
        score = np.where(wrong & (high == k), rng.beta(5, 2, m), rng.beta(1, 12, m))
        out[f"{issue}_score"] = np.where(is_gt, score, np.nan)
    out["missing_score"] = np.where(is_gt, np.nan, np.where(wrong, rng.beta(5, 2, m),
                                                             rng.beta(1, 20, m)))
    group = rng.random(m) < 0.02
    out["group_box_score"] = np.where(is_gt & group, rng.beta(2, 2, m), np.nan)
    return out


def _table(rng: np.random.Generator, samples: pd.DataFrame, meta: pd.DataFrame,
           boxes: pd.DataFrame, images: list[str]) -> pd.DataFrame:
    """The samples table: files, split, size, losses, metadata, scores, flags, projections."""
    from audit.data.views import BOX_ISSUES, ISSUE_THRESHOLDS

    n = len(samples)
    per = boxes.groupby("sample_id", sort=False)[[f"{k}_score" for k in ISSUES[:-1]]].max()
    box_hits = pd.DataFrame(_box_flags(boxes), columns=list(BOX_ISSUES), index=boxes.index) \
        .groupby(boxes["sample_id"].to_numpy(), sort=False).any()
    table = samples[["split", "width", "height", "loss", "loss_box", "loss_cls", "loss_dfl"]]
    table = table.assign(filepath=[images[i % len(images)] for i in range(n)])
    table = table.join(meta[["n_objects", "median_box_area", "occlusion_mean_iou"]])
    cluster = samples["truth_cluster"].to_numpy()
    table["cluster"] = cluster.astype(int)
    table = table.join(per)
    table["partial_labels_score"] = rng.beta(1, 15, n)
    scores = table[[f"{k}_score" for k in ISSUES]]
    table["mistakenness"] = scores.max(axis=1, skipna=True)
    # a sample is flagged for a box issue when one of its boxes is (the scorer's rule, so the
    # missing flag's confidence floor applies), for a sample issue when its score reaches the flag
    hits = box_hits.reindex(table.index, fill_value=False).reindex(columns=list(ISSUES),
                                                                     fill_value=False)
    for k in ISSUES:
        if k not in BOX_ISSUES:
            hits[k] = table[f"{k}_score"].to_numpy(float) >= ISSUE_THRESHOLDS[k]
    hits = hits.to_numpy(bool)
    table["flagged"] = [tuple(np.asarray(ISSUES)[row].tolist()) for row in hits]
    table = pd.concat([table, meta.filter(like="count_")], axis=1)
    for method in C.PROJECTION_METHODS:
        centres = rng.normal(0, 6, (int(cluster.max()) + 1, 2))
        xy = centres[cluster] + rng.normal(0, 1, (n, 2))
        table[f"{method}_x"], table[f"{method}_y"] = xy[:, 0], xy[:, 1]
    first = ["filepath", "split", "width", "height"]
    table = table[first + [c for c in table.columns if c not in first]]
    table.index.name = "sample_id"
    return table


def write_images(folder: Path, count: int) -> list[str]:
    """``count`` seeded 640x480 JPEG scenes (noise and rectangles); their paths."""
    from PIL import Image

    from audit.world.tiny_checkpoint import draw_scene
    from benchmarks.synthetic import H, W

    paths = []
    for i in range(count):
        image, _, _ = draw_scene(i, H, W, n_objects=7)
        path = folder / f"scene_{i:02d}.jpg"
        Image.fromarray(image).save(path, quality=90)
        paths.append(str(path))
    return paths
