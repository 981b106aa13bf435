"""Scoring an ingested dataset: bulk frames -> every audit (``audit.pipeline``) -> bulk write-back.

The pure audits never see FiftyOne: this module reads the samples and boxes frames with
:mod:`audit.data.store`, hands them to :func:`audit.pipeline.run_all`, and stores what comes back
with :func:`audit.data.store.write_audit_result`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from audit import constants as C
from audit.data import store

ProgressCallback = Callable[[float, str], None]  # (fraction done in [0, 1], message)


def score_dataset(name: str, *, projections: Sequence[str] = C.PROJECTION_METHODS,
                  n_clusters: int | None = C.N_CLUSTERS, progress: bool = True,
                  progress_callback: ProgressCallback | None = None) -> Any:
    """Run every audit on dataset ``name`` and store the scores in it.

    Args:
        name: an ingested dataset (see :func:`audit.data.ingest.ingest`).
        projections: 2-D projection methods to compute (subset of ``C.PROJECTION_METHODS``).
        n_clusters: k for k-means; None chooses k by silhouette.
        progress: show tqdm bars in the audits.
        progress_callback: called with (fraction done, message) between stages.

    Returns:
        The :class:`audit.pipeline.AuditResult` (scores: higher = more likely wrong); its
        ``timings`` gain ``read_s`` and ``write_s``.

    Raises:
        ValueError: unknown dataset, unknown projection method, an empty or unfinished dataset.

    Example:
        >>> result = score_dataset("yolo-audit-demo", projections=("pca",))  # doctest: +SKIP
    """
    bad = [p for p in projections if p not in C.PROJECTION_METHODS]
    if bad:
        raise ValueError(f"unknown projection method(s) {bad}; expected {C.PROJECTION_METHODS}")
    if n_clusters is not None and int(n_clusters) < 2:
        raise ValueError(f"n_clusters must be >= 2 or None, got {n_clusters}")
    report = progress_callback or (lambda _f, _m: None)
    ds = store.load_dataset(name)
    info = store.audit_info(ds)
    if not info:
        raise ValueError(f"dataset {name!r} was not built by the auditor (no ingest settings)")
    if not len(ds):
        raise ValueError(f"dataset {name!r} is empty: ingest images first")
    if not info.get("complete"):
        raise ValueError(f"dataset {name!r} is not fully ingested: run the ingest again to "
                         "finish it before scoring")
    from audit.pipeline import run_all

    report(0.0, "reading frames")
    t0 = time.perf_counter()
    samples, embeddings = store.samples_frame(ds)
    boxes, box_features = store.boxes_frame(ds)
    t1 = time.perf_counter()
    report(0.15, "scoring")
    result = run_all(samples, embeddings, boxes, box_features, projections=tuple(projections),
                     n_clusters=n_clusters, progress=progress)
    t2 = time.perf_counter()
    report(0.85, "writing scores")
    result.timings.update({"read_s": t1 - t0})
    store.write_audit_result(ds, result)
    result.timings["write_s"] = time.perf_counter() - t2
    store.update_audit_info(ds, timings=dict(result.timings))
    report(1.0, "scored")
    return result
