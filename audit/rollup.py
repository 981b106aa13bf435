"""Per-sample roll-up of the box-level scores: one number per image for ranking review work.

Box issues come from :mod:`audit.mistakenness` (and ``group_box`` from
:mod:`audit.inconsistency`); the image-level ``partial_labels`` score comes in on the samples
frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.frames import noisy_or
from audit.mistakenness import BOX_ISSUES


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
    issues = [i for i in (*BOX_ISSUES, "group_box") if f"{i}_score" in box_scores.columns]
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
    if "partial_labels_score" in samples.columns:
        out["partial_labels_score"] = samples["partial_labels_score"].to_numpy(float)
        if "is_partial_labels_issue" in samples.columns:
            hit = samples.index.astype(str)[samples["is_partial_labels_issue"].fillna(False)
                                            .astype(bool).to_numpy()]
            for sid in hit:
                flags[sid].append("partial_labels")
    box_cols = [f"{i}_score" for i in BOX_ISSUES if f"{i}_score" in out.columns]
    parts = [out[c] for c in out.columns if c.endswith("_score") and c not in box_cols]
    if box_cols:
        box = out[box_cols]
        any_box = noisy_or(*(box[c].to_numpy(float) for c in box_cols))
        parts.append(pd.Series(any_box, index=out.index).where(box.notna().any(axis=1)))
    out["mistakenness_score"] = pd.concat(parts, axis=1).max(axis=1) if parts else np.nan
    out["flagged_issues"] = [sorted(v) for v in flags.to_numpy()]
    return out
