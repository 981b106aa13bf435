"""Validation and small helpers for the samples and boxes frames of docs/ARCHITECTURE.md (pure)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from audit import issues as I

BOX_COLUMNS = ("sample_id", "box_id", "source", "x1", "y1", "x2", "y2", "label", "confidence")
SOURCES = ("gt", "pred")
LOSS_COLUMNS = ("loss_box", "loss_cls", "loss_dfl", "loss")
ISSUES = I.NAMES  # every issue name (the registry, audit/issues.py)


def require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    """Raise ValueError naming the missing columns of ``frame`` (called ``name``)."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}; has {list(frame.columns)}")


def check_boxes(boxes: pd.DataFrame, name: str = "boxes") -> None:
    """Validate a boxes frame: columns, ``source`` values, finite coordinates."""
    require_columns(boxes, BOX_COLUMNS, name)
    bad_source = ~boxes["source"].isin(SOURCES)
    if bad_source.any():
        row = boxes.index[np.argmax(bad_source.to_numpy())]
        raise ValueError(
            f"{name}: row {row!r} has source {boxes.at[row, 'source']!r}; expected 'gt' or 'pred'"
        )
    xyxy = boxes[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(xyxy).all(axis=1)
    if bad.any():
        row = boxes["box_id"].iloc[int(np.argmax(bad))]
        raise ValueError(f"{name}: box {row!r} has non-finite coordinates")


def check_features(features: NDArray | None, n_rows: int, name: str = "box_features") -> None:
    """Validate that ``features`` is None or a 2-D array with ``n_rows`` rows."""
    if features is None:
        return
    arr = np.asarray(features)
    if arr.ndim != 2 or arr.shape[0] != n_rows:
        raise ValueError(f"{name}: expected shape ({n_rows}, F), got {arr.shape}")


def xyxy(boxes: pd.DataFrame) -> NDArray[np.float64]:
    """The ``(N, 4)`` absolute ``xyxy`` array of a boxes frame."""
    return boxes[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float64).reshape(-1, 4)


def iscrowd(boxes: pd.DataFrame) -> NDArray[np.bool_]:
    """The ``iscrowd`` column as bool (False where absent or missing)."""
    if "iscrowd" not in boxes.columns:
        return np.zeros(len(boxes), dtype=bool)
    return boxes["iscrowd"].fillna(False).to_numpy(dtype=bool)


def sample_codes(sample_ids: pd.Series, index: pd.Index, name: str) -> NDArray[np.int64]:
    """Positions of ``sample_ids`` in ``index``; ValueError naming an unknown id."""
    codes = index.get_indexer(pd.Index(sample_ids))
    if (codes < 0).any():
        bad = pd.Index(sample_ids)[codes < 0][0]
        raise ValueError(f"{name}: sample_id {bad!r} is not in the samples frame")
    return codes.astype(np.int64)


def robust_z(values: NDArray[np.float64], groups: NDArray[np.int64] | None = None) -> NDArray:
    """Robust z-score ``(x - median) / (1.4826 * MAD)`` within each group; NaN stays NaN.

    Args:
        values: ``(N,)`` values.
        groups: ``(N,)`` group codes (e.g. split), or None for one group.

    Returns:
        ``(N,)`` float64; 0 where a group's MAD is 0.
    """
    x = np.asarray(values, dtype=np.float64)
    g = np.zeros(x.size, np.int64) if groups is None else np.asarray(groups)
    frame = pd.DataFrame({"x": x, "g": g})
    med = frame.groupby("g")["x"].transform("median").to_numpy()
    mad = (frame["x"] - med).abs().groupby(frame["g"]).transform("median").to_numpy() * 1.4826
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mad > 0, (x - med) / np.where(mad > 0, mad, 1.0), 0.0) * np.where(
            np.isnan(x), np.nan, 1.0
        )


def noisy_or(*evidence: NDArray[np.float64]) -> NDArray[np.float64]:
    """``1 - prod(1 - e_i)``: probability that at least one independent piece of evidence holds.

    NaN evidence is treated as absent (0); each input is clipped to [0, 1].
    """
    out = np.ones_like(np.asarray(evidence[0], dtype=np.float64))
    for e in evidence:
        out = out * (1.0 - np.clip(np.nan_to_num(np.asarray(e, dtype=np.float64)), 0.0, 1.0))
    return 1.0 - out


def linear_ramp(x: NDArray[np.float64], lo: float, hi: float) -> NDArray[np.float64]:
    """0 below ``lo``, 1 above ``hi``, linear between; NaN stays NaN."""
    return np.clip((np.asarray(x, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
