"""A hand-made COCO world for the store / ingest / scoring tests: seeded scenes, two splits.

Category ids are deliberately not contiguous (10, 20, 30) and not in the model's order, so every
test that ingests it also checks that classes are matched by name.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from tests.data.conftest import CLASS_NAMES, draw_scene

CATEGORIES = [{"id": 30, "name": CLASS_NAMES[2]}, {"id": 10, "name": CLASS_NAMES[0]},
              {"id": 20, "name": CLASS_NAMES[1]}]  # ids by name: ball 10, crate 20, book 30
CATEGORY_ID = {c["name"]: c["id"] for c in CATEGORIES}


def write_coco_world(root: Path, splits: dict[str, list[int]] | None = None) -> Path:
    """Write ``images/<seed>.png`` and ``<split>.json`` per split under ``root``.

    Args:
        root: target folder (created).
        splits: split -> scene seeds (default: train 0..3, val 4..5). Scenes alternate between
            400x240 and 200x300 px; seed 3 gets an iscrowd box.

    Returns:
        ``root``.
    """
    splits = splits or {"train": [0, 1, 2, 3], "val": [4, 5]}
    (root / "images").mkdir(parents=True, exist_ok=True)
    for split, seeds in splits.items():
        images, annotations = [], []
        for seed in seeds:
            height, width = (240, 400) if seed % 2 == 0 else (300, 200)
            image, boxes, classes = draw_scene(seed, height, width)
            Image.fromarray(image).save(root / "images" / f"{seed}.png")
            images.append({"id": 100 + seed, "file_name": f"{seed}.png", "width": width,
                           "height": height})
            for j, (box, cls) in enumerate(zip(boxes, classes, strict=True)):
                x1, y1, x2, y2 = (float(v) for v in box)
                annotations.append({
                    "id": 1000 * (seed + 1) + j, "image_id": 100 + seed,
                    "category_id": CATEGORY_ID[CLASS_NAMES[int(cls)]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(seed == 3 and j == 0)})
        coco = {"images": images, "annotations": annotations, "categories": CATEGORIES}
        (root / f"{split}.json").write_text(json.dumps(coco), encoding="utf-8")
    return root


def load(path: Path) -> dict:
    """A JSON file as a dict."""
    return json.loads(path.read_text(encoding="utf-8"))


def dump(path: Path, data: object) -> Path:
    """Write ``data`` as JSON to ``path``; returns ``path``."""
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
