"""The shapes world: scikit-image's generator, the demo world's error protocol."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.world import shapes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "w"
    return out, shapes.generate_shapes_world(out, n_images=120, progress=False)


def test_splits_classes_and_boxes(world):
    out, summary = world
    assert summary.images == {"train": 90, "val": 30}
    for split in ("train", "val"):
        data = json.loads((out / f"{split}.json").read_text())
        assert [c["name"] for c in data["categories"]] == list(shapes.SHAPE_CLASSES)
        assert len(json.loads((out / f"{split}_clean.json").read_text())["annotations"]) \
            == summary.clean_boxes[split]
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x + w <= shapes.SHAPES_IMAGE + 1e-6
            assert y + h <= shapes.SHAPES_IMAGE + 1e-6
    train_ids = {i["id"] for i in json.loads((out / "train.json").read_text())["images"]}
    val_ids = {i["id"] for i in json.loads((out / "val.json").read_text())["images"]}
    assert not train_ids & val_ids


def test_every_error_type_is_injected_in_train(world):
    out, summary = world
    noise = pd.read_csv(out / "noise.csv")
    for etype in ("drop", "flip", "shift", "spawn", "merge"):
        assert summary.errors[etype]["train"] >= 3, etype
        assert (noise["error_type"] == etype).sum() == sum(summary.errors[etype].values())
    flips = noise[noise["error_type"] == "flip"]
    assert (flips["clean_label"] != flips["noisy_label"]).all()


def test_same_arguments_same_bytes(world, tmp_path):
    out, _ = world
    again = tmp_path / "again"
    shapes.generate_shapes_world(again, n_images=120, progress=False)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        assert (again / path.relative_to(out)).read_bytes() == path.read_bytes(), path


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_images": 2}, "n_images"), ({"noise_rate": 1.0}, "noise_rate")])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        shapes.generate_shapes_world(tmp_path / "w", progress=False, **kwargs)


def test_boxes_reaching_past_the_edge_are_clipped():
    # image 311 of the default world: scikit-image reports a triangle's extent from row -12
    _, boxes = shapes._draw(0, 310)
    xy = np.array([b.box for b in boxes])
    assert (xy >= 0).all() and (xy <= shapes.SHAPES_IMAGE).all()
    assert ((xy[:, 2] - xy[:, 0]) >= 2).all() and ((xy[:, 3] - xy[:, 1]) >= 2).all()
