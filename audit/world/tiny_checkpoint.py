"""A tiny untrained YOLO11n detection checkpoint, built offline in seconds (tests, benchmarks).

Fresh ``yolo11n.yaml`` weights shrink activations layer after layer (the neck's maps are ~1e-9 and
every anchor outputs the prior), so the BatchNorm statistics are calibrated on a few seeded scenes
(no weight is trained) and the last class-logit convolution of each head level is re-drawn
(weights N(0, 0.05), bias -3): confidences then spread out and predictions, embeddings and losses
differ per image and per anchor. The same recipe as the ``tiny_checkpoint`` fixture of
``tests/data/conftest.py``; it stands in for the demo checkpoint when that one is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

TINY_CLASS_NAMES = ("ball", "crate", "book")  # the data-layer tests' classes
CALIBRATION_SCENES = 8  # seeded scenes the BatchNorm statistics are calibrated on
CALIBRATION_SIZE = 320  # side (px) of those scenes, the checkpoint's nominal imgsz


def draw_scene(seed: int, height: int = 240, width: int = 400, n_objects: int = 3,
               n_classes: int = 3) -> tuple[NDArray[np.uint8], NDArray[np.float32],
                                            NDArray[np.int64]]:
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
        classes.append(int(rng.integers(0, n_classes)))
    return image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def make_tiny_checkpoint(path: str | Path,
                         class_names: Sequence[str] | Mapping[int, str] = TINY_CLASS_NAMES, *,
                         seed: int = 0) -> Path:
    """Write an untrained, calibrated ``yolo11n`` detector with these classes to ``path``.

    Args:
        path: target ``.pt`` file (its folder is created; written to a temporary file, then
            renamed).
        class_names: class names in class-id order, or a ``{class_id: name}`` mapping.
        seed: torch seed of the fresh weights.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no class names, or a path that does not end in ``.pt``.

    Example:
        >>> make_tiny_checkpoint("/tmp/tiny.pt", ("ball", "crate"))  # doctest: +SKIP
    """
    import torch
    from ultralytics.nn.tasks import DetectionModel

    path = Path(path)
    names = dict(class_names) if isinstance(class_names, Mapping) else dict(enumerate(class_names))
    if not names:
        raise ValueError("class_names: expected at least one class name, got none")
    if path.suffix.lower() != ".pt":
        raise ValueError(f"{path}: expected a .pt file name")
    torch.manual_seed(seed)
    model = DetectionModel("yolo11n.yaml", nc=len(names), verbose=False)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    scenes = np.stack([draw_scene(s, CALIBRATION_SIZE, CALIBRATION_SIZE)[0]
                       for s in range(CALIBRATION_SCENES)])
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(scenes).permute(0, 3, 1, 2).float() / 255.0)
        for level in model.model[-1].cv3:
            level[-1].weight.normal_(0.0, 0.05)
            level[-1].bias.fill_(-3.0)
    model.eval()
    model.names = names
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model, "train_args": {"task": "detect", "imgsz": CALIBRATION_SIZE}}, tmp)
    tmp.replace(path)
    return path
