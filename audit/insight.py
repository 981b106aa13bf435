"""The record every audit's finding is returned as, and the Holm correction their tests share.

An :class:`Insight` is a structured finding (kind, sentence, cluster or class, severity, the
samples it concerns, the data of its plot, its test statistics) that pages render and
``dataset.info`` stores as JSON. Pure (numpy).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from audit import constants as C
from audit import issues as I

KINDS = ("imbalance", "overfit", "low_performance", "metadata", "inconsistency", "curve",
         "leak", "duplicate")


def _jsonable(value: Any) -> Any:
    """Numpy scalars/arrays and tuples to plain JSON types; NaN to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Insight:
    """One finding, ready for a page and for ``dataset.info``.

    Attributes:
        kind: one of ``KINDS``.
        title: short heading.
        sentence: the finding with its numbers and what to do about it.
        cluster: the cluster it is about, or None.
        label: the class it is about, or None.
        severity: in [0, 1], higher = more important.
        sample_ids: samples it concerns (capped at ``C.INSIGHT_MAX_SAMPLES``).
        evidence: JSON-serialisable data for its plot, with a ``plot`` key.
        stats: JSON-serialisable test statistics.
        issue: the issue (``audit.issues`` name) behind the finding, whose score orders its
            samples in triage (e.g. ``group_box`` for mixed box conventions); None = none.
    """

    kind: str
    title: str
    sentence: str
    cluster: int | None = None
    label: str | None = None
    severity: float = 0.0
    sample_ids: tuple[str, ...] = ()
    evidence: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    issue: str | None = None

    def __post_init__(self) -> None:
        """Validate kind, severity and issue; make ids a tuple and dicts JSON-safe."""
        if self.kind not in KINDS:
            raise ValueError(f"Insight.kind: expected one of {KINDS}, got {self.kind!r}")
        if self.issue is not None and self.issue not in I.NAMES:
            raise ValueError(f"Insight.issue: expected one of {I.NAMES} or None, "
                             f"got {self.issue!r}")
        if not 0.0 <= float(self.severity) <= 1.0:
            raise ValueError(f"Insight.severity: expected a value in [0, 1], got {self.severity}")
        ids = tuple(str(s) for s in self.sample_ids)[: C.INSIGHT_MAX_SAMPLES]
        object.__setattr__(self, "sample_ids", ids)
        object.__setattr__(self, "severity", float(self.severity))
        object.__setattr__(self, "cluster", None if self.cluster is None else int(self.cluster))
        object.__setattr__(self, "evidence", _jsonable(self.evidence))
        object.__setattr__(self, "stats", _jsonable(self.stats))

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> Insight:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "sample_ids": tuple(data.get("sample_ids", ()))})


def holm(p: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error over the tests in ``p``).

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    out = np.empty_like(p)
    out[order] = adj
    return out
