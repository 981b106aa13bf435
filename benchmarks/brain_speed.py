"""Part two of the speed benchmark: our mistakenness against FiftyOne Brain's, on one dataset.

The dataset is ``$AUDIT_BENCH_DATASET``, else the demo dataset, else the finding-power
benchmark's demo-world dataset when the demo checkpoint exists (otherwise the part is skipped,
with the reason). Ours is the bulk frame reads plus ``score_boxes`` + ``score_samples``; Brain's
is ``compute_mistakenness`` on a temporary clone of the two label fields, never the dataset
itself. Best of ``COMPARE_REPEATS[size]`` runs each.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import pandas as pd

from audit import constants as C

COMPARE_REPEATS = {"small": 1, "full": 2}  # runs of each method; the fastest counts
DATASET_ENV = "AUDIT_BENCH_DATASET"  # env var naming the real dataset


def _real_dataset(size: str, *, progress: bool) -> tuple[Any, str]:
    """The dataset of part two and its description, or ``(None, why it is skipped)``."""
    import fiftyone as fo

    name = os.environ.get(DATASET_ENV, "").strip()
    if name:
        if not fo.dataset_exists(name):
            raise ValueError(f"bench speed: {DATASET_ENV}={name!r} names no FiftyOne dataset")
        return fo.load_dataset(name), name
    if fo.dataset_exists(C.DEMO_DATASET_NAME):
        return fo.load_dataset(C.DEMO_DATASET_NAME), C.DEMO_DATASET_NAME
    if not C.DEMO_CHECKPOINT.is_file():
        return None, (f"skipped: no dataset in ${DATASET_ENV}, no {C.DEMO_DATASET_NAME!r} "
                      f"dataset, and no demo checkpoint at {C.DEMO_CHECKPOINT} to build one "
                      "(train it with `python -m audit train-demo`)")
    from benchmarks.findings import _dataset  # the finding benchmark's cached world
    from benchmarks.worlds import bench_world

    ds = _dataset(bench_world("demo", size, progress=progress), progress=progress)
    return ds, ds.name


def compare_with_brain(size: str, *, progress: bool) -> tuple[pd.DataFrame, str, str]:
    """Seconds of ours (read + score) and of Brain's mistakenness; (table, skipped, dataset)."""
    ds, what = _real_dataset(size, progress=progress)
    if ds is None:
        return pd.DataFrame(columns=["method", "seconds", "note"]), what, ""
    ds.values("id")  # start the database and warm its cache outside both timings
    best: dict[str, float] = {}
    for _ in range(COMPARE_REPEATS[size]):
        for method, seconds in (*_ours(ds).items(), ("brain", _brain(ds))):
            best[method] = min(best.get(method, math.inf), seconds)
    n_boxes = ds.count("ground_truth.detections") + ds.count("predictions.detections")
    notes = {"ours_read": "samples_frame + boxes_frame",
             "ours_score": "score_boxes + score_samples",
             "ours": "read + score", "brain": "fiftyone.brain.compute_mistakenness"}
    best["ours"] = best["ours_read"] + best["ours_score"]
    table = pd.DataFrame([{"method": m, "seconds": best[m], "note": notes[m]} for m in notes])
    return table, "", f"{what} ({len(ds):,} samples, {n_boxes:,} boxes)"


def _ours(ds: Any) -> dict[str, float]:
    """Seconds of our bulk frame reads and of our box + sample mistakenness."""
    from audit.data import store
    from audit.mistakenness import score_boxes
    from audit.rollup import score_samples

    t = time.perf_counter()
    samples, _ = store.samples_frame(ds)
    boxes, box_features = store.boxes_frame(ds)
    read = time.perf_counter() - t
    t = time.perf_counter()
    scores, _ = score_boxes(boxes, box_features, samples)
    score_samples(scores, samples)
    return {"ours_read": read, "ours_score": time.perf_counter() - t}


def _brain(ds: Any) -> float:
    """Seconds of Brain's ``compute_mistakenness`` on a temporary clone of the label fields."""
    import logging

    import fiftyone.brain as fob

    clone = ds.select_fields(["ground_truth", "predictions"]).clone()
    log = logging.getLogger("fiftyone")
    level = log.level
    log.setLevel(logging.WARNING)  # Brain logs each of its steps at INFO
    try:
        t = time.perf_counter()
        fob.compute_mistakenness(clone, "predictions", label_field="ground_truth",
                                 progress=False)
        return time.perf_counter() - t
    finally:
        log.setLevel(level)
        clone.delete()
