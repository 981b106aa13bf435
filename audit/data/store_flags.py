"""Flags recomputed from the scores already stored in a dataset, in bulk (a re-flag).

Reads every ``<issue>_score`` (detection attributes and sample fields) with ``values()``, applies
a config's flag thresholds with the scorers' own rule (:func:`audit.rollup.flag_scores`, then
:func:`audit.rollup.score_samples` for the per-sample ``flagged`` list, as a full scoring does),
and writes back with ``set_values``: the ``flagged`` field, any stored per-detection
``is_<issue>_issue`` attribute, and the saved views ``flagged`` / ``flagged-<issue>``. No
embedding, kNN or model is touched: seconds on a scored dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import fiftyone as fo
import numpy as np
import pandas as pd

from audit import issues as I
from audit.config import ScoringConfig
from audit.data.store import LABEL_FIELDS
from audit.data.store_write import _save_flag_views
from audit.rollup import flag_scores, score_samples


@dataclass(frozen=True)
class ReflagResult:
    """What a re-flag changed.

    Attributes:
        config: the config whose thresholds were applied.
        n_samples: samples in the dataset; n_flagged: samples flagged for at least one issue.
        per_issue: samples flagged per issue.
        timings: seconds per stage (``reflag_s``).
    """

    config: ScoringConfig
    n_samples: int
    n_flagged: int
    per_issue: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)


def _flat(nested: list, *, as_float: bool = True) -> list:
    """One list of the per-detection values of every sample (None rows: no detections)."""
    values = [v for row in nested for v in (row or [])]
    return [np.nan if v is None else v for v in values] if as_float else values


def _stored(ds: fo.Dataset, path: str) -> bool:
    """Whether any detection carries attribute ``path`` (dynamic attributes written with
    ``set_values`` are not declared in the schema, so the schema cannot say)."""
    return ds.count(path) > 0


def _box_flags(ds: fo.Dataset, ids: list[str], config: ScoringConfig) -> list[pd.DataFrame]:
    """Per label field: a frame of the stored detection scores and their new flags; writes the
    per-detection ``is_<issue>_issue`` attributes the dataset already stores."""
    frames = []
    for source, name in LABEL_FIELDS.items():
        issues = [i for i in I.REGISTRY if i.scope == source
                  and _stored(ds, f"{name}.detections.{i.score_column}")]
        if not issues:
            continue
        paths = [f"{name}.detections.{i.score_column}" for i in issues]
        values = ds.values([f"{name}.detections.confidence", *paths])
        lengths = [len(row or []) for row in values[0]]
        frame = pd.DataFrame({"sample_id": np.repeat(np.asarray(ids, dtype=object), lengths),
                              "confidence": np.asarray(_flat(values[0]), dtype=float)})
        for issue, nested in zip(issues, values[1:], strict=True):
            frame[issue.score_column] = np.asarray(_flat(nested), dtype=float)
        frame = flag_scores(frame, thresholds=config.flag_thresholds(),
                            missing_flag_conf=config.missing_flag_conf)
        for issue in issues:
            path = f"{name}.detections.{issue.flag_column}"
            if _stored(ds, path):
                flags = iter(frame[issue.flag_column].tolist())
                ds.set_values(path, [None if row is None else [next(flags) for _ in row]
                                     for row in values[0]])
        frames.append(frame)
    return frames


def reflag(ds: fo.Dataset, config: ScoringConfig) -> ReflagResult:
    """Recompute and store every flag of ``ds`` from its stored scores at ``config``'s thresholds.

    Args:
        ds: a scored dataset (``<issue>_score`` fields and detection attributes).
        config: the thresholds (``flag_thresholds()``, ``missing_flag_conf``); its other fields
            are not read.

    Returns:
        A :class:`ReflagResult`. Scores are not changed; the caller stores the config.

    Example:
        >>> reflag(ds, ScoringConfig(wrong_class_flag=0.5)).per_issue  # doctest: +SKIP
    """
    ids = [str(i) for i in ds.values("id")]
    schema = ds.get_field_schema()
    frames = _box_flags(ds, ids, config)
    boxes = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {"sample_id": pd.Series(dtype=object)})
    samples = pd.DataFrame(index=pd.Index(ids, name="sample_id"))
    for issue in I.SAMPLE_ISSUES:
        if f"{issue}_score" in schema:
            samples[f"{issue}_score"] = pd.to_numeric(pd.Series(
                ds.values(f"{issue}_score"), index=samples.index, dtype=object), errors="coerce")
    samples = flag_scores(samples, thresholds=config.flag_thresholds(),
                          missing_flag_conf=config.missing_flag_conf)
    flagged = [list(v) for v in score_samples(boxes, samples)["flagged_issues"]]
    ds.set_values("flagged", dict(zip(ids, flagged, strict=True)), key_field="id")
    per_issue = {i: sum(i in f for f in flagged) for i in I.NAMES}
    present = [i for i, n in per_issue.items() if n]
    for issue in set(I.NAMES) - set(present):  # as after a fresh score: no view for no flag
        if ds.has_saved_view(f"flagged-{issue}"):
            ds.delete_saved_view(f"flagged-{issue}")
    _save_flag_views(ds, present)
    return ReflagResult(config=config, n_samples=len(ids), n_flagged=sum(map(bool, flagged)),
                        per_issue=per_issue)
