"""Round trips: what the auditor exports, it ingests again, with the same boxes.

The world is laid out as users' worlds often are, and as broke the round trips before: images
in one folder per split (``images/train/0.png``), some of them symlinks to files kept elsewhere.
COCO export -> ingest with the same ``--images`` (each split exported on its own, with
``--split``), and YOLO export -> ``--data-yaml`` ingest, give every image its boxes back within
1e-6 of the image size (YOLO txt holds six decimals; crowd boxes are left out of it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fiftyone as fo
import numpy as np
import pytest

from audit.data.exports import export
from audit.data.ingest import ingest
from tests.data.coco_world import dump, load, write_coco_world

IMGSZ = 320
SPLITS = {"train": [0, 1, 2, 3], "val": [4, 5]}  # seed 3 holds a crowd box
LINKED = (1, 4)  # seeds whose image is a symlink to a file outside the images folder
TOLERANCE = 1e-6  # of the image size


def _split_world(root: Path) -> Path:
    """The coco world with ``images/<split>/<seed>.png`` file names, two of them symlinks."""
    write_coco_world(root, SPLITS)
    elsewhere = root / "kept-elsewhere"
    elsewhere.mkdir()
    for split, seeds in SPLITS.items():
        (root / "images" / split).mkdir()
        for seed in seeds:
            flat, moved = root / "images" / f"{seed}.png", root / "images" / split / f"{seed}.png"
            if seed in LINKED:
                os.replace(flat, elsewhere / f"{seed}.png")
                moved.symlink_to(elsewhere / f"{seed}.png")
            else:
                os.replace(flat, moved)
        data = load(root / f"{split}.json")
        for image in data["images"]:
            image["file_name"] = f"{split}/{image['file_name']}"
        dump(root / f"{split}.json", data)
    return root


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory,
             tiny_checkpoint: Path) -> Iterator[tuple[fo.Dataset, Path, Path]]:
    """The split world ingested once: (dataset, world folder, checkpoint)."""
    world = _split_world(tmp_path_factory.mktemp("round-trip") / "w")
    ds = ingest(f"round-trip-{uuid.uuid4().hex[:8]}", images=world / "images",
                train_json=world / "train.json", val_json=world / "val.json",
                model=tiny_checkpoint, imgsz=IMGSZ, progress=False)
    yield ds, world, tiny_checkpoint
    ds.delete()


def _boxes(ds: fo.Dataset, *, crowd: bool = True) -> dict[tuple[str, str], np.ndarray]:
    """(filepath, split) -> sorted rows of (class index, relative x1 y1 x2 y2) of its gt boxes."""
    out = {}
    for sample in ds.select_fields(["split", "ground_truth"]):
        rows = sorted([["ball", "crate", "book"].index(d.label), d.bounding_box[0],
                       d.bounding_box[1], d.bounding_box[0] + d.bounding_box[2],
                       d.bounding_box[1] + d.bounding_box[3]]
                      for d in sample.ground_truth.detections if crowd or not d.iscrowd)
        out[(os.path.realpath(sample.filepath), sample.split)] = np.array(rows).reshape(-1, 5)
    return out


def _assert_same_boxes(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for key, rows in expected.items():
        assert got[key].shape == rows.shape, key
        np.testing.assert_array_equal(got[key][:, 0], rows[:, 0])
        np.testing.assert_allclose(got[key][:, 1:], rows[:, 1:], rtol=0, atol=TOLERANCE)


def test_coco_export_of_each_split_ingests_again_with_the_same_images_root(original,
                                                                           tmp_path: Path
                                                                           ) -> None:
    ds, world, checkpoint = original
    out = {s: export(ds, "coco", tmp_path / "exports", split=s) for s in SPLITS}
    names = {s: sorted(i["file_name"] for i in load(out[s])["images"]) for s in SPLITS}
    assert names == {s: sorted(f"{s}/{seed}.png" for seed in seeds)
                     for s, seeds in SPLITS.items()}
    again = ingest(f"{ds.name}-coco", images=world / "images", train_json=out["train"],
                   val_json=out["val"], model=checkpoint, imgsz=IMGSZ, progress=False)
    try:
        _assert_same_boxes(_boxes(again), _boxes(ds))
        assert again.count("ground_truth.detections") == ds.count("ground_truth.detections")
    finally:
        again.delete()


def test_yolo_export_ingests_again_through_its_data_yaml(original, tmp_path: Path) -> None:
    ds, _, checkpoint = original
    folder = export(ds, "yolo", tmp_path / "exports")
    again = ingest(f"{ds.name}-yolo", data_yaml=folder / "dataset.yaml", model=checkpoint,
                   imgsz=IMGSZ, progress=False)
    try:
        expected = _boxes(ds, crowd=False)
        assert sum(len(v) for v in expected.values()) == ds.count("ground_truth.detections") - 1
        _assert_same_boxes(_boxes(again), expected)
    finally:
        again.delete()


def test_data_yaml_reader_finds_the_labels_of_symlinked_images(tmp_path: Path) -> None:
    """ultralytics looks for ``labels/...`` next to the image path as listed, not next to the
    file a symlink points to; the sample's filepath is that file."""
    from PIL import Image

    from audit.data.inputs_yolo import read_data_yaml

    kept = tmp_path / "photos" / "a.png"
    kept.parent.mkdir()
    Image.new("RGB", (200, 100)).save(kept)
    root = tmp_path / "export"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "images" / "train" / "a.png").symlink_to(kept)
    (root / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (root / "dataset.yaml").write_text("names: [ball, crate, book]\ntrain: ./images/train/\n")
    [split] = read_data_yaml(root / "dataset.yaml")
    [record] = split.images
    assert record.filepath == kept.resolve() and record.labels == ("crate",)
    np.testing.assert_allclose(record.boxes, [[80.0, 30.0, 120.0, 70.0]])


def test_yolo_export_of_images_sharing_a_file_name_keeps_each_its_labels(tmp_path: Path) -> None:
    """Images are linked by file name; two of one split named alike get distinct names, and each
    keeps its own boxes when the export is read back."""
    from PIL import Image

    from audit.data.inputs_yolo import read_data_yaml

    ds = fo.Dataset(f"clash-{uuid.uuid4().hex[:8]}")
    try:
        for i, folder in enumerate(("a", "b")):
            path = tmp_path / "photos" / folder / "0.png"
            path.parent.mkdir(parents=True)
            Image.new("RGB", (100, 50)).save(path)
            box = fo.Detection(label="ball", bounding_box=[0.1 * (i + 1), 0.2, 0.3, 0.4])
            ds.add_sample(fo.Sample(filepath=str(path), split="train",
                                    ground_truth=fo.Detections(detections=[box])))
        ds.info = {"audit": {"class_names": ["ball", "crate", "book"]}}
        ds.save()
        folder = export(ds, "yolo", tmp_path / "out")
        [split] = read_data_yaml(folder / "dataset.yaml")
        got = {r.filepath.parent.name: r.boxes[:, 0].tolist() for r in split.images}
        np.testing.assert_allclose(got["a"], [10.0])
        np.testing.assert_allclose(got["b"], [20.0])
    finally:
        ds.delete()
