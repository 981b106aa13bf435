"""Scoring an ingested dataset: bulk frames -> every audit (``audit.pipeline``) -> bulk write-back.

The pure audits never see FiftyOne: this module reads the samples and boxes frames with
:mod:`audit.data.store`, hands them to :func:`audit.pipeline.run_all`, and stores what comes back
with :func:`audit.data.store_write.write_audit_result`, with the
:class:`audit.config.ScoringConfig` it ran with (``info["audit"]["scoring_config"]``). A config
that differs from the stored one in flag thresholds only re-flags the stored scores instead
(:func:`reflag_dataset`, seconds).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from audit.config import FROM_CONFIG, SCORE_FIELDS, FromConfig, ScoringConfig, with_given
from audit.data import store
from audit.data.store_write import write_audit_result

ProgressCallback = Callable[[float, str], None]  # (fraction done in [0, 1], message)


def score_dataset(name: str, *, config: ScoringConfig | None = None,
                  projections: Sequence[str] | FromConfig = FROM_CONFIG,
                  n_clusters: int | FromConfig | None = FROM_CONFIG, full: bool = False,
                  progress: bool = True,
                  progress_callback: ProgressCallback | None = None) -> Any:
    """Run every audit on dataset ``name`` and store the scores in it, with the config.

    When the dataset is already scored with a stored config and ``config`` differs from it in
    flag-only fields alone (``ScoringConfig.score_fields_equal``), the stored scores are
    re-flagged instead (:func:`reflag_dataset`, seconds), unless ``full``.

    Args:
        name: an ingested dataset (see :func:`audit.data.ingest.ingest`).
        config: every threshold and weight (default: the defaults, ``audit.constants``).
        projections: 2-D projection methods to compute (subset of ``C.PROJECTION_METHODS``);
            n_clusters: k for k-means, None chooses k by silhouette. Each, when given, replaces
            the config's value.
        full: always re-score, even for a flag-only change.
        progress: show tqdm bars in the audits.
        progress_callback: called with (fraction done, message) between stages.

    Returns:
        The :class:`audit.pipeline.AuditResult` (scores: higher = more likely wrong; its
        ``timings`` gain ``read_s`` and ``write_s``), or the
        :class:`audit.data.store_flags.ReflagResult` of a re-flag.

    Raises:
        ValueError: unknown dataset, a bad setting (unknown projection method, ...), an empty or
            unfinished dataset.

    Warns:
        UserWarning: one per sentence of ``result.competence.warnings`` (a weak model).

    Example:
        >>> result = score_dataset("yolo-audit-demo", projections=("pca",))  # doctest: +SKIP
    """
    cfg = with_given(config, projections=projections, n_clusters=n_clusters)
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
    stored = store.stored_scoring_config(ds) if _is_scored(ds) else None
    if not full and stored is not None and cfg != stored and cfg.score_fields_equal(stored):
        return _reflag(ds, cfg, report)
    from audit.pipeline import run_all

    report(0.0, "reading frames")
    t0 = time.perf_counter()
    samples, embeddings = store.samples_frame(ds)
    boxes, box_features = store.boxes_frame(ds)
    t1 = time.perf_counter()
    report(0.15, "scoring")
    result = run_all(samples, embeddings, boxes, box_features, config=cfg, progress=progress,
                     probes=store.probes_frame(ds))
    t2 = time.perf_counter()
    report(0.85, "writing scores")
    result.timings.update({"read_s": t1 - t0})
    with store.scoring_run(ds, "scoring"):  # committed as a whole, or marked incomplete
        write_audit_result(ds, result)
        result.timings["write_s"] = time.perf_counter() - t2
        store.update_audit_info(ds, timings=dict(result.timings),
                                **{store.CONFIG_KEY: cfg.to_dict()})
    report(1.0, "scored")
    for sentence in result.competence.warnings if result.competence else ():
        warnings.warn(sentence, stacklevel=2)  # a weak model, said plainly (the CLI prints it)
    return result


def reflag_dataset(name: str, config: ScoringConfig, *,
                   progress_callback: ProgressCallback | None = None) -> Any:
    """Recompute every flag of a scored dataset from its stored scores at ``config``'s
    thresholds, and store ``config``: seconds, no embedding, kNN or model.

    Rewrites the per-sample ``flagged`` lists, any stored per-detection ``is_<issue>_issue``,
    and the saved views ``flagged`` / ``flagged-<issue>`` (:mod:`audit.data.store_flags`); no
    ``*_score`` field changes. Views and exports then flag at the new thresholds.

    Args:
        name: a scored dataset.
        config: the new settings; they may differ from the stored ones (or the defaults, for a
            dataset scored before configs were stored) in flag-only fields alone.
        progress_callback: called with (fraction done, message).

    Returns:
        An :class:`audit.data.store_flags.ReflagResult` (samples flagged per issue).

    Raises:
        ValueError: unknown or unscored dataset, or a config that changes a score setting (which
            needs :func:`score_dataset`), naming those settings.

    Example:
        >>> reflag_dataset("yolo-audit-demo", ScoringConfig(wrong_class_flag=0.5))  # doctest: +SKIP
    """
    ds = store.load_dataset(name)
    store.check_scores_complete(ds)  # half-written scores are no base for a re-flag
    if not _is_scored(ds):
        raise ValueError(f"dataset {name!r} is not scored yet: score it first "
                         "(`python -m audit score`)")
    current = store.scoring_config(ds)
    if not config.score_fields_equal(current):
        changed = [f for f in config.differences(current) if f in SCORE_FIELDS]
        raise ValueError(f"dataset {name!r}: {', '.join(changed)} change(s) the scores, not only "
                         "the flags: re-score instead")
    return _reflag(ds, config, progress_callback or (lambda _f, _m: None))


def _is_scored(ds: Any) -> bool:
    """Whether ``ds`` holds a finished scoring (committed, a time stamp, every sample's flags)."""
    return store.score_state(ds) == "scored" and "flagged" in ds.get_field_schema() \
        and len(ds.exists("flagged")) == len(ds)


def _reflag(ds: Any, config: ScoringConfig, report: ProgressCallback) -> Any:
    """Re-flag ``ds`` at ``config`` and store the config (the flag-only path)."""
    from audit.data.store_flags import reflag

    report(0.0, "re-flagging from the stored scores")
    t0 = time.perf_counter()
    scored_at = store.audit_info(ds).get("scored_at")
    with store.scoring_run(ds, "re-flag"):  # committed as a whole, or marked incomplete
        result = reflag(ds, config)
        result.timings["reflag_s"] = time.perf_counter() - t0
        store.update_audit_info(ds, **{store.CONFIG_KEY: config.to_dict()},
                                flagged_at=store.now_iso(), scored_at=scored_at)
    report(1.0, "re-flagged")
    return result
