"""Finding-power metrics: box-level AUROC / AP per error type, image-level AP and precision@k.

Pure (numpy, pandas, scikit-learn). Every score points one way: higher = more likely a label
error. A NaN score means the method said nothing about that box; it is ranked below every scored
box (ties among themselves), so a method that abstains is not rewarded for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, roc_auc_score

TOP_K = 100  # images inspected in precision@k

BOX_COLUMNS = ["split", "error_type", "method", "auroc", "ap", "n_pos", "n_neg", "coverage",
               "reason"]
IMAGE_COLUMNS = ["split", "method", "ap", "auroc", "p_at_100", "p_at_k", "k", "n_pos", "n_images",
                 "reason"]
FLAG_COLUMNS = ["split", "error_type", "n_pos", "n_flags", "n_true", "precision", "recall"]


def ranked(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Replace NaN scores by a value below every finite score, shape kept."""
    scores = np.asarray(scores, dtype=float)
    finite = scores[np.isfinite(scores)]
    floor = (finite.min() if finite.size else 0.0) - 1.0
    return np.where(np.isfinite(scores), scores, floor)


def precision_at(is_error: NDArray[np.bool_], scores: NDArray[np.float64], k: int) -> float:
    """Share of errors among the ``k`` highest scores (stable order on ties); NaN for k = 0."""
    if k <= 0:
        return float("nan")
    order = np.argsort(-ranked(scores), kind="stable")[:k]
    return float(np.asarray(is_error, dtype=bool)[order].mean())


def _binary_metrics(y: NDArray[np.bool_], s: NDArray[np.float64]) -> tuple[float, float, str]:
    """AUROC, AP and a reason when they are undefined (one class only)."""
    if y.all() or not y.any():
        return float("nan"), float("nan"), "no negatives" if y.any() else "no positives"
    s = ranked(s)
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s)), ""


def evaluate_boxes(truth: pd.DataFrame, scores: dict[str, dict[str, pd.Series] | str],
                   ) -> pd.DataFrame:
    """Box-level AUROC and AP for every (split, error type, method).

    Args:
        truth: as returned by :func:`benchmarks.truth.box_truth` (``error_type``, ``split``,
            ``box_id``, ``is_error``).
        scores: per method either a dict ``error_type -> Series`` of box scores indexed by
            ``box_id`` (higher = more likely wrong; absent ids count as NaN), or a string: the
            reason the method produced nothing (its metrics become NaN with that reason).

    Returns:
        Frame with columns ``BOX_COLUMNS``; ``coverage`` is the share of evaluated boxes the
        method scored.
    """
    rows = []
    for (split, etype), part in truth.groupby(["split", "error_type"], sort=True):
        y = part["is_error"].to_numpy(bool)
        base = {"split": split, "error_type": etype, "n_pos": int(y.sum()),
                "n_neg": int((~y).sum())}
        for method, per_type in scores.items():
            if isinstance(per_type, str) or etype not in per_type:
                reason = per_type if isinstance(per_type, str) else f"no {etype} score"
                rows.append({**base, "method": method, "auroc": np.nan, "ap": np.nan,
                             "coverage": np.nan, "reason": reason})
                continue
            s = per_type[etype].reindex(part["box_id"]).to_numpy(float)
            auroc, ap, reason = _binary_metrics(y, s)
            rows.append({**base, "method": method, "auroc": auroc, "ap": ap,
                         "coverage": float(np.isfinite(s).mean()), "reason": reason})
    return pd.DataFrame(rows, columns=BOX_COLUMNS)


def evaluate_images(truth: pd.DataFrame, scores: dict[str, pd.Series | str], *,
                    top_k: int = TOP_K) -> pd.DataFrame:
    """Image-level AP, AUROC, precision@top_k and precision@k (k = min(top_k, n positives)).

    Args:
        truth: as returned by :func:`benchmarks.truth.image_truth` (index ``sample_id``,
            ``split``, ``has_error``).
        scores: per method a Series of image scores indexed by ``sample_id`` (higher = more
            likely holds an error), or the string reason the method failed.
        top_k: the k of precision@k.

    Returns:
        Frame with columns ``IMAGE_COLUMNS``.
    """
    rows = []
    for split, part in truth.groupby("split", sort=True):
        y = part["has_error"].to_numpy(bool)
        k = int(min(top_k, y.sum()))
        base = {"split": split, "n_pos": int(y.sum()), "n_images": len(y), "k": k}
        for method, series in scores.items():
            if isinstance(series, str):
                rows.append({**base, "method": method, "ap": np.nan, "auroc": np.nan,
                             "p_at_100": np.nan, "p_at_k": np.nan, "reason": series})
                continue
            s = series.reindex(part.index).to_numpy(float)
            auroc, ap, reason = _binary_metrics(y, s)
            rows.append({**base, "method": method, "ap": ap, "auroc": auroc,
                         "p_at_100": precision_at(y, s, top_k) if len(y) >= top_k else np.nan,
                         "p_at_k": precision_at(y, s, k), "reason": reason
                         or ("" if len(y) >= top_k else f"fewer than {top_k} images")})
    return pd.DataFrame(rows, columns=IMAGE_COLUMNS)


def evaluate_flags(truth: pd.DataFrame, flags: dict[str, pd.Series]) -> pd.DataFrame:
    """Precision and recall of boolean flags (a score's default threshold) per split and type.

    Args:
        truth: as for :func:`evaluate_boxes`.
        flags: ``error_type -> Series`` of booleans indexed by ``box_id`` (absent ids: not
            flagged).

    Returns:
        Frame with columns ``FLAG_COLUMNS``: ``n_flags`` evaluated boxes flagged, ``n_true`` of
        them errors; precision NaN without flags, recall NaN without positives.

    Example:
        >>> t = pd.DataFrame({"split": "val", "error_type": "flip", "box_id": ["a", "b", "c"],
        ...                   "is_error": [True, True, False]})
        >>> f = evaluate_flags(t, {"flip": pd.Series({"a": True, "c": True})})
        >>> f[["n_flags", "n_true", "precision", "recall"]].to_numpy().tolist()
        [[2.0, 1.0, 0.5, 0.5]]
    """
    rows = []
    for (split, etype), part in truth.groupby(["split", "error_type"], sort=True):
        if etype not in flags:
            continue
        y = part["is_error"].to_numpy(bool)
        f = flags[etype].reindex(part["box_id"]).fillna(False).to_numpy(bool)
        n_flags, n_true = int(f.sum()), int((f & y).sum())
        rows.append({"split": split, "error_type": etype, "n_pos": int(y.sum()),
                     "n_flags": n_flags, "n_true": n_true,
                     "precision": n_true / n_flags if n_flags else np.nan,
                     "recall": n_true / y.sum() if y.any() else np.nan})
    return pd.DataFrame(rows, columns=FLAG_COLUMNS)
