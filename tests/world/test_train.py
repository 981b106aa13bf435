"""Training the demo checkpoint: the YOLO conversion, and one real epoch on a tiny world."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from audit.world.generate import generate_world
from audit.world.scene import CLASS_NAMES
from audit.world.train import coco_world_to_yolo, train_demo_checkpoint
from tests.world.conftest import load_coco


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-image world."""
    out = tmp_path_factory.mktemp("tiny") / "world"
    generate_world(out, n_images=24, seed=1, progress=False)
    return out


def test_yolo_layout_matches_the_coco_files(tiny_world: Path, tmp_path: Path) -> None:
    data_yaml, names = coco_world_to_yolo(tiny_world, tmp_path / "yolo")
    assert names == list(CLASS_NAMES)
    assert data_yaml.is_file()
    for split, name in (("train", "train.json"), ("val", "val.json"),
                        ("val_clean", "val_clean.json")):
        coco = load_coco(tiny_world / name)
        sizes = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
        kept = [a for a in coco["annotations"] if not a["iscrowd"]]
        labels = sorted((tmp_path / "yolo" / "labels" / split).glob("*.txt"))
        assert len(labels) == len(coco["images"])
        lines = [ln.split() for p in labels for ln in p.read_text().splitlines()]
        assert len(lines) == len(kept)
        values = np.array([[float(v) for v in ln] for ln in lines])
        assert set(values[:, 0].astype(int)) <= set(range(len(CLASS_NAMES)))
        assert values[:, 1:].min() >= 0 and values[:, 1:].max() <= 1
        first = kept[0]
        w, h = sizes[first["image_id"]]
        text = (tmp_path / "yolo" / "labels" / split / f"{first['image_id']:06d}.txt").read_text()
        x, y, bw, bh = first["bbox"]
        expected = [first["category_id"] - 1, (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h]
        rows = [[float(v) for v in ln.split()] for ln in text.splitlines()]
        assert any(np.allclose(r, expected, atol=1e-5) for r in rows)


def test_missing_world_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train\.json"):
        coco_world_to_yolo(tmp_path / "nowhere", tmp_path / "yolo")


@pytest.mark.parametrize(("kwargs", "message"), [({"epochs": 0}, "epochs"),
                                                 ({"imgsz": 8}, "imgsz")])
def test_bad_training_arguments_raise(tiny_world: Path, tmp_path: Path, kwargs: dict,
                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_demo_checkpoint(tiny_world, tmp_path / "m.pt", progress=False, **kwargs)
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.slow
def test_one_epoch_gives_a_loadable_checkpoint(tiny_world: Path, tmp_path: Path) -> None:
    from ultralytics import YOLO

    out = tmp_path / "models" / "demo.pt"
    metrics = train_demo_checkpoint(tiny_world, out, epochs=1, imgsz=160, batch=8,
                                    progress=False)
    assert set(metrics) >= {"map50", "map50_95", "epochs", "seconds", "per_class_map50"}
    assert metrics["epochs"] == 1 and metrics["seconds"] > 0
    assert 0.0 <= metrics["map50_95"] <= metrics["map50"] <= 1.0
    assert set(metrics["per_class_map50"]) <= set(CLASS_NAMES)
    assert [p.name for p in out.parent.iterdir()] == ["demo.pt"]  # no temp file left behind
    model = YOLO(str(out))
    assert [model.names[i] for i in range(len(model.names))] == list(CLASS_NAMES)
    val = load_coco(tiny_world / "val.json")["images"][0]
    results = model.predict(str(tiny_world / "images" / val["file_name"]), imgsz=160,
                            device="cpu", verbose=False)
    assert len(results) == 1 and results[0].orig_shape == (val["height"], val["width"])
    import torch

    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    paths = [v for v in ckpt["train_args"].values() if isinstance(v, str) and os.path.isabs(v)]
    assert paths == [] and "git" not in ckpt
