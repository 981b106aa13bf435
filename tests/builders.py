"""Seeded builders of small boxes / samples frames (docs/ARCHITECTURE.md) for the pure-module tests.

Boxes are absolute pixel ``xyxy``; every builder returns fresh frames, so tests may not share state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from audit.frames import BOX_COLUMNS

W, H = 640, 480  # image size of every built sample


def gt(sample_id: str, xyxy: Sequence[float], label: str = "car", **extra) -> dict:
    """One ground-truth row (confidence NaN)."""
    return _row(sample_id, "gt", xyxy, label, np.nan, **extra)


def pred(
    sample_id: str, xyxy: Sequence[float], label: str = "car", conf: float = 0.9, **extra
) -> dict:
    """One prediction row."""
    return _row(sample_id, "pred", xyxy, label, conf, **extra)


def _row(sample_id, source, xyxy, label, conf, *, iscrowd: bool = False,
         box_id: str | None = None) -> dict:
    """A row dict in the boxes-frame columns (``box_id`` None: numbered by :func:`boxes_frame`)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    row = {"sample_id": sample_id, "source": source, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
           "label": label, "confidence": float(conf), "iscrowd": bool(iscrowd)}
    if box_id is not None:
        row["box_id"] = box_id
    return row


def boxes_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """Boxes frame from row dicts; ``box_id`` = ``b<i>`` unless a row names one."""
    rows = list(rows)
    if not rows:
        return empty_boxes()
    frame = pd.DataFrame(rows, columns=[*BOX_COLUMNS, "iscrowd"])
    frame["box_id"] = [r.get("box_id", f"b{i}") for i, r in enumerate(rows)]
    frame["confidence"] = frame["confidence"].astype(float)
    frame["iscrowd"] = frame["iscrowd"].astype(bool)
    return frame


def empty_boxes() -> pd.DataFrame:
    """A boxes frame with the right columns and dtypes but no rows."""
    float_cols = ("x1", "y1", "x2", "y2", "confidence")
    cols = {c: pd.Series(dtype=float if c in float_cols else object) for c in BOX_COLUMNS}
    return pd.DataFrame({**cols, "iscrowd": pd.Series(dtype=bool)})


def samples_frame(
    ids: Sequence[str],
    *,
    split: Sequence[str] | str = "train",
    loss: Sequence[float] | float = 1.0,
    width: int = W,
    height: int = H,
    **columns,
) -> pd.DataFrame:
    """Samples frame indexed by ``sample_id`` with split, size and losses (+ extra columns)."""
    n = len(ids)
    loss_arr = np.broadcast_to(np.asarray(loss, dtype=float), (n,)).copy()
    frame = pd.DataFrame(
        {
            "filepath": [f"images/{s}.jpg" for s in ids],
            "split": np.broadcast_to(np.asarray(split, dtype=object), (n,)).copy(),
            "width": width, "height": height,
            "loss_box": 0.4 * loss_arr, "loss_cls": 0.35 * loss_arr, "loss_dfl": 0.25 * loss_arr,
            "loss": loss_arr,
            **columns,
        },
        index=pd.Index(list(ids), name="sample_id", dtype=object),
    )
    return frame


def random_scene(
    seed: int, n_samples: int = 4, per_sample: int = 5, classes: Sequence[str] = ("car", "dog")
) -> pd.DataFrame:
    """Seeded random gt boxes plus noisy confident predictions of them, several per sample."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for s in range(n_samples):
        sid = f"s{s}"
        for _ in range(per_sample):
            w, h = rng.uniform(20, 150, 2)
            x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
            box = np.array([x1, y1, x1 + w, y1 + h])
            label = str(rng.choice(classes))
            rows.append(gt(sid, box, label))
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.08, 4) * np.tile([w, h], 2)
                other = str(rng.choice(classes)) if rng.random() < 0.2 else label
                rows.append(pred(sid, box + jitter, other, float(rng.uniform(0.1, 0.99))))
        for _ in range(2):  # background predictions
            x1, y1 = rng.uniform(0, W - 60), rng.uniform(0, H - 60)
            rows.append(pred(sid, (x1, y1, x1 + 50, y1 + 50), str(rng.choice(classes)),
                             float(rng.uniform(0.05, 0.4))))
    return boxes_frame(rows)


def blobs(n_per: int, centres: int, dim: int, *, seed: int = 0, spread: float = 20.0):
    """``(n_per * centres, dim)`` float32 points around well separated centres, and their labels."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(0, spread, (centres, dim))
    labels = np.repeat(np.arange(centres), n_per)
    x = centre[labels] + rng.normal(0, 1, (labels.size, dim))
    return x.astype(np.float32), labels
