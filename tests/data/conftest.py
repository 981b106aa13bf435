"""Fixtures for the data-layer tests: a tiny untrained YOLO11 checkpoint and seeded images."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.world.tiny_checkpoint import TINY_CLASS_NAMES, draw_scene, make_tiny_checkpoint

CLASS_NAMES = dict(enumerate(TINY_CLASS_NAMES))  # {0: "ball", 1: "crate", 2: "book"}

__all__ = ["CLASS_NAMES", "draw_scene"]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``yolo11n.yaml`` detector, nc=3 (ball, crate, book), saved as a ``.pt``.

    Built offline with a fixed torch seed by ``make_tiny_checkpoint``
    (BatchNorm statistics calibrated on seeded scenes, class logits re-drawn, so confidences,
    embeddings and losses differ per image and per anchor).
    """
    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny_yolo11n.pt",
                                CLASS_NAMES)
