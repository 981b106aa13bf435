"""Fixtures for the demo-world tests: one default-sized world generated once per session."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from audit.world.generate import WorldSummary, generate_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WorldSummary]:
    """The default demo world (300 images, seed 0, noise rate 0.10) and its summary."""
    out = tmp_path_factory.mktemp("world") / "demo"
    return out, generate_world(out, progress=False)


def load_coco(path: Path) -> dict:
    """A COCO file as a dict."""
    return json.loads(path.read_text(encoding="utf-8"))


def load_noise(path: Path) -> list[dict[str, str]]:
    """noise.csv rows as dicts of strings."""
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def xyxy(xywh: list[float] | str) -> np.ndarray:
    """COCO [x, y, w, h] (list or "x y w h" string) to an xyxy array of shape (4,)."""
    x, y, w, h = (float(v) for v in (xywh.split() if isinstance(xywh, str) else xywh))
    return np.array([x, y, x + w, y + h])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes, written here independently of the generator's own helper."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
