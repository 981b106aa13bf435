"""Fixtures for the data-layer tests: a tiny untrained YOLO11 checkpoint and seeded images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CLASS_NAMES = {0: "ball", 1: "crate", 2: "book"}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``yolo11n.yaml`` detector, nc=3 (ball, crate, book), saved as a ``.pt``.

    Built offline with a fixed torch seed. Fresh weights shrink activations layer after layer (the
    neck's maps are ~1e-9 and every anchor outputs the prior), so the BatchNorm statistics are
    calibrated on a few seeded scenes (no weight is trained) and the last class-logit convolution
    of each head level is re-drawn (weights N(0, 0.05), bias -3): confidences then spread out and
    predictions, embeddings and losses differ per image and per anchor.
    """
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=len(CLASS_NAMES), verbose=False)
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    scenes = np.stack([draw_scene(seed, 320, 320)[0] for seed in range(8)])
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(scenes).permute(0, 3, 1, 2).float() / 255.0)
        for level in model.model[-1].cv3:
            level[-1].weight.normal_(0.0, 0.05)
            level[-1].bias.fill_(-3.0)
    model.eval()
    model.names = dict(CLASS_NAMES)
    path = tmp_path_factory.mktemp("checkpoints") / "tiny_yolo11n.pt"
    torch.save({"model": model, "train_args": {"task": "detect", "imgsz": 320}}, path)
    return path


def draw_scene(seed: int, height: int = 240, width: int = 400,
               n_objects: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded RGB uint8 scene of flat coloured rectangles on a noisy background.

    Returns:
        (image ``HxWx3`` uint8, boxes ``(n, 4)`` xyxy px float32, class ids ``(n,)`` int64).
    """
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 140, (height, width, 3), dtype=np.uint8)
    boxes, classes = [], []
    for _ in range(n_objects):
        w, h = rng.integers(width // 10, width // 3), rng.integers(height // 10, height // 3)
        x1, y1 = rng.integers(0, width - w), rng.integers(0, height - h)
        image[y1 : y1 + h, x1 : x1 + w] = rng.integers(0, 255, 3, dtype=np.uint8)
        boxes.append([x1, y1, x1 + w, y1 + h])
        classes.append(int(rng.integers(0, len(CLASS_NAMES))))
    return image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)
