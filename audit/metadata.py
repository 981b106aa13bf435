"""Per-sample metadata from the ground truth: object counts, box areas, occlusion, crowd share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from audit import boxes as B
from audit.frames import check_boxes, iscrowd, require_columns, sample_codes, xyxy

METADATA_COLUMNS = (
    "n_objects",
    "median_box_area",
    "min_box_area",
    "occlusion_mean_iou",
    "occlusion_max_ios",
    "crowd_fraction",
)


def count_column(label: str) -> str:
    """Column name ``count_<class>`` for a class name, kept as it is.

    One column per class and back again (``removeprefix("count_")`` gives the class): a
    rewritten name would give ``traffic light`` and ``traffic-light`` one column between them.
    """
    return f"count_{label}"


def sample_metadata(
    boxes: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Metadata of every sample, computed from its ground-truth boxes.

    Vectorised over the whole dataset: box pairs of one image come from
    :func:`audit.boxes.pairs_within_groups`, reductions are ``bincount`` / ``ufunc.at``.

    Args:
        boxes: boxes frame (ARCHITECTURE.md); only ``source == "gt"`` rows are used; boxes are
            absolute pixel ``xyxy``.
        samples: samples frame indexed by ``sample_id`` with ``width`` and ``height`` (px).
        class_names: classes that get a ``count_<class>`` column (default: the gt labels, sorted).

    Returns:
        Frame indexed like ``samples`` with ``n_objects`` (gt boxes), ``median_box_area`` and
        ``min_box_area`` (fraction of the image area; NaN without boxes), ``occlusion_mean_iou``
        (mean over boxes of each box's largest IoU with another gt box; NaN without boxes),
        ``occlusion_max_ios`` (largest intersection-over-smaller of two gt boxes; 0 with fewer
        than two boxes, NaN without boxes), ``crowd_fraction`` (share with ``iscrowd``) and
        ``count_<class>`` per class. Higher values mean more crowded / occluded, not "worse".

    Example:
        >>> meta = sample_metadata(boxes, samples)  # doctest: +SKIP
        >>> meta.loc["s0", "count_book"]  # doctest: +SKIP
    """
    check_boxes(boxes)
    require_columns(samples, ("width", "height"), "samples")
    gt = boxes[boxes["source"].to_numpy() == "gt"]
    n = len(samples)
    codes = sample_codes(gt["sample_id"], samples.index, "boxes")
    wh = samples["width"].to_numpy(np.float64) * samples["height"].to_numpy(np.float64)
    if np.any(~(wh > 0)):
        bad = samples.index[np.argmax(~(wh > 0))]
        raise ValueError(f"samples: sample {bad!r} has a non-positive width or height")
    xy = xyxy(gt)
    area = B.box_area(xy) / wh[codes]
    n_objects = np.bincount(codes, minlength=n)
    has = n_objects > 0
    by_sample = pd.Series(area).groupby(codes)
    median_area = np.full(n, np.nan)
    min_area = np.full(n, np.nan)
    if len(gt):
        med = by_sample.median()
        median_area[med.index.to_numpy()] = med.to_numpy()
        mn = by_sample.min()
        min_area[mn.index.to_numpy()] = mn.to_numpy()
    mean_iou, max_ios = _occlusion(xy, codes, n)
    crowd = np.bincount(codes, weights=iscrowd(gt).astype(float), minlength=n)
    out = pd.DataFrame(
        {
            "n_objects": n_objects.astype(np.int64),
            "median_box_area": median_area,
            "min_box_area": min_area,
            "occlusion_mean_iou": np.where(has, mean_iou, np.nan),
            "occlusion_max_ios": np.where(has, max_ios, np.nan),
            "crowd_fraction": np.where(has, crowd / np.maximum(n_objects, 1), np.nan),
        },
        index=samples.index.copy(),
    )
    labels = gt["label"].astype(str).to_numpy()
    names = sorted(set(labels.tolist())) if class_names is None else list(
        dict.fromkeys(map(str, class_names)))
    class_code = pd.Index(names).get_indexer(labels)
    known = class_code >= 0
    counts = np.bincount(
        codes[known] * len(names) + class_code[known], minlength=n * len(names)
    ).reshape(n, len(names))
    count_frame = pd.DataFrame(
        counts.astype(np.int64), index=out.index, columns=[count_column(c) for c in names]
    )
    return pd.concat([out, count_frame], axis=1)


def _occlusion(
    xy: np.ndarray, codes: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: mean over boxes of max IoU with another box, and max IoS over box pairs."""
    ia, ib = B.pairs_within_groups(codes, codes)
    keep = ia < ib
    ia, ib = ia[keep], ib[keep]
    ov = B.pair_overlaps(xy[ia], xy[ib])
    box_max_iou = np.zeros(len(xy))
    np.maximum.at(box_max_iou, ia, ov.iou)
    np.maximum.at(box_max_iou, ib, ov.iou)
    n_box = np.bincount(codes, minlength=n)
    mean_iou = np.bincount(codes, weights=box_max_iou, minlength=n) / np.maximum(n_box, 1)
    max_ios = np.zeros(n)
    np.maximum.at(max_ios, codes[ia], ov.ios)
    return mean_iou, max_ios
