"""A resume of an ingest with the same labels adds nothing and refuses nothing.

The refusals of edited labels (another class, a box removed or moved) are rows of the bad-input
catalogue (``tests/data/test_catalogue.py``); here, the same labels listed in another order, or
a resume that only adds a split, go through.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fiftyone as fo

from audit.data.ingest import ingest
from tests.data.coco_world import dump, load, write_coco_world

IMGSZ = 320


def test_resume_with_the_same_labels_in_another_order_adds_nothing(tmp_path: Path,
                                                                   tiny_checkpoint: Path) -> None:
    world = write_coco_world(tmp_path / "w")
    name = f"resume-{uuid.uuid4().hex[:8]}"
    kw = {"images": world / "images", "model": tiny_checkpoint, "imgsz": IMGSZ,
          "progress": False}
    ds = ingest(name, train_json=world / "train.json", **kw)
    try:
        ids = ds.values("id")
        data = load(world / "train.json")
        data["annotations"].reverse()
        data["images"].reverse()
        dump(world / "train.json", data)
        ds = ingest(name, train_json=world / "train.json", val_json=world / "val.json", **kw)
        assert len(ds) == 6 and set(ids) < set(ds.values("id"))
        assert ds.count_values("split") == {"train": 4, "val": 2}
    finally:
        fo.load_dataset(name).delete()
