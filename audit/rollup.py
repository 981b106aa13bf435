"""Per-sample roll-up of the box-level scores: one number per image for ranking review work.

Box issues come from :mod:`audit.mistakenness` (and ``group_box`` from
:mod:`audit.inconsistency`); the image-level ``partial_labels`` score comes in on the samples
frame. Which issue is scored where is the registry's (:mod:`audit.issues`). :func:`flag_scores`
recomputes the flags from stored scores (a re-flag without re-scoring).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit import constants as C
from audit import issues as I
from audit.frames import noisy_or
from audit.mistakenness import is_flagged


def score_samples(box_scores: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Per-sample roll-up of box scores.

    Args:
        box_scores: frame indexed by ``box_id`` with ``sample_id`` and any of the
            ``<issue>_score`` / ``is_<issue>_issue`` columns (box-level issues, including
            ``group_box`` from :mod:`audit.inconsistency`).
        samples: samples frame indexed by ``sample_id`` (its index is the output's index).
            Extra ``partial_labels_score`` / ``is_partial_labels_issue`` columns in it are used.

    Returns:
        Frame indexed like ``samples``: ``<issue>_score`` (max over the sample's boxes; NaN when
        no box of the right source), ``mistakenness_score`` (higher = more likely to hold a label
        error; NaN when nothing applies) and ``flagged_issues`` (sorted list of issue names
        flagged on any of its boxes). ``mistakenness_score`` is the larger of the noisy-or of the
        four box issues (an image with a likely flip and a likely spurious box is likelier to
        hold an error than one with either alone) and the inconsistency scores (a group box or
        a partly labelled image is a convention to settle, not one more independent error).
    """
    if "sample_id" not in box_scores.columns:
        raise ValueError("box_scores: missing columns ['sample_id']")
    issues = [i for i in I.DETECTION_ISSUES if f"{i}_score" in box_scores.columns]
    index = samples.index
    key = box_scores["sample_id"].astype(str)
    out = pd.DataFrame(index=index)
    flags = pd.Series([[] for _ in range(len(index))], index=index.astype(str), dtype=object)
    for issue in issues:
        col = pd.to_numeric(box_scores[f"{issue}_score"], errors="coerce")
        out[f"{issue}_score"] = col.groupby(key).max().reindex(index.astype(str)).to_numpy()
        flag_col = f"is_{issue}_issue"
        if flag_col in box_scores.columns:
            hit = set(key[box_scores[flag_col].fillna(False).astype(bool).to_numpy()])
            for sid in hit.intersection(flags.index):
                flags[sid].append(issue)
    for issue in (i for i in I.SAMPLE_ISSUES if f"{i}_score" in samples.columns):
        out[f"{issue}_score"] = samples[f"{issue}_score"].to_numpy(float)
        if f"is_{issue}_issue" in samples.columns:
            hit = samples.index.astype(str)[samples[f"is_{issue}_issue"].fillna(False)
                                            .astype(bool).to_numpy()]
            for sid in hit:
                flags[sid].append(issue)
    box_cols = [f"{i}_score" for i in I.MISTAKENNESS_ISSUES if f"{i}_score" in out.columns]
    parts = [out[c] for c in out.columns if c.endswith("_score") and c not in box_cols]
    if box_cols:
        box = out[box_cols]
        any_box = noisy_or(*(box[c].to_numpy(float) for c in box_cols))
        parts.append(pd.Series(any_box, index=out.index).where(box.notna().any(axis=1)))
    out["mistakenness_score"] = pd.concat(parts, axis=1).max(axis=1) if parts else np.nan
    out["flagged_issues"] = [sorted(v) for v in flags.to_numpy()]
    return out


def flag_scores(frame: pd.DataFrame, *, thresholds: dict[str, float] | None = None,
                missing_flag_conf: float = C.MISSING_FLAG_CONF) -> pd.DataFrame:
    """``frame`` with ``is_<issue>_issue`` recomputed from every ``<issue>_score`` column.

    The flag rule is :func:`audit.mistakenness.is_flagged` (a NaN score never flags; ``missing``
    also needs the row's ``confidence`` to reach ``missing_flag_conf``), as in the scorers.

    Args:
        frame: box rows (``<issue>_score`` and, for ``missing``, ``confidence``) or sample rows
            (``partial_labels_score``).
        thresholds: flag threshold per issue (default ``C.FLAG_SCORES``; missing keys too).
        missing_flag_conf: confidence floor of the missing flag.

    Returns:
        A copy of ``frame`` with one boolean ``is_<issue>_issue`` column per score column.

    Example:
        >>> f = pd.DataFrame({"missing_score": [0.8, 0.8], "confidence": [0.6, 0.1]})
        >>> flag_scores(f)["is_missing_issue"].tolist()
        [True, False]
    """
    thr = C.FLAG_SCORES | (thresholds or {})
    out = frame.copy()
    conf = frame["confidence"].to_numpy(float) if "confidence" in frame else None
    for issue in I.NAMES:
        if f"{issue}_score" in frame:
            score = pd.to_numeric(frame[f"{issue}_score"], errors="coerce").to_numpy(float)
            out[f"is_{issue}_issue"] = is_flagged(issue, score, conf, threshold=thr[issue],
                                                  missing_flag_conf=missing_flag_conf)
    return out
