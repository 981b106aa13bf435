"""audit.data.inputs: COCO JSON and data.yaml reading, and every validation error it must raise.

Each bad input is a small mutation of a valid hand-made world; the error must name the file and
the record, and list several problems at once.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from audit.data.images import image_size
from audit.data.inputs import (
    MAX_PROBLEMS,
    check_class_names,
    read_coco_split,
)
from audit.data.inputs_yolo import read_data_yaml
from tests.data.coco_world import dump, load, write_coco_world
from tests.data.conftest import CLASS_NAMES, draw_scene


@pytest.fixture()
def world(tmp_path: Path) -> Path:
    """A valid 6-image COCO world (train 4, val 2)."""
    return write_coco_world(tmp_path / "w")


def test_reads_valid_split_boxes_as_xyxy(world: Path) -> None:
    coco = load(world / "train.json")
    split = read_coco_split(world / "train.json", world / "images", "train")
    assert split.split == "train" and len(split.images) == 4
    assert split.class_names == ("ball", "crate", "book")  # category-id order: 10, 20, 30
    assert split.n_boxes == len(coco["annotations"])
    by_id = {a["id"]: a for a in coco["annotations"]}
    for rec in split.images:
        assert rec.filepath.is_absolute() and rec.filepath.is_file()
        with Image.open(rec.filepath) as im:
            assert (rec.width, rec.height) == im.size
        for box, label, coco_id, crowd in zip(rec.boxes, rec.labels, rec.coco_ids, rec.iscrowd,
                                              strict=True):
            x, y, w, h = by_id[int(coco_id)]["bbox"]
            np.testing.assert_allclose(box, [x, y, x + w, y + h])
            names = {c["id"]: c["name"] for c in coco["categories"]}
            assert label == names[by_id[int(coco_id)]["category_id"]]
            assert bool(crowd) == bool(by_id[int(coco_id)]["iscrowd"])


def test_box_within_tolerance_is_clipped(world: Path) -> None:
    coco = load(world / "train.json")
    ann = coco["annotations"][0]
    img = next(i for i in coco["images"] if i["id"] == ann["image_id"])
    ann["bbox"] = [-0.6, 2.0, img["width"] + 1.1, 10.0]  # overhangs both sides by < 1 px
    split = read_coco_split(dump(world / "train.json", coco), world / "images", "train")
    rec = next(r for r in split.images if ann["id"] in r.coco_ids.tolist())
    box = rec.boxes[rec.coco_ids.tolist().index(ann["id"])]
    np.testing.assert_allclose(box, [0.0, 2.0, img["width"], 12.0])


def test_width_and_height_given_as_numbers_in_strings_are_read_as_numbers(world: Path) -> None:
    coco = load(world / "train.json")
    sizes = {}
    for img in coco["images"]:
        sizes[img["id"]] = (img["width"], img["height"])
        img["width"], img["height"] = str(img["width"]), f" {img['height']}"
        if img["id"] == 101:
            img["width"] = float(img["width"])  # 200.0: an integral float is as good
    dump(world / "train.json", coco)
    split = read_coco_split(world / "train.json", world / "images", "train")
    assert {r.record: (r.width, r.height) for r in split.images} == {
        f"train.json: image id {iid} ({iid - 100}.png)": wh for iid, wh in sizes.items()}


def test_a_size_that_differs_says_two_different_numbers(world: Path) -> None:
    coco = load(world / "train.json")
    coco["images"][0].update(width="420", height="240")  # 0.png is 400x240
    dump(world / "train.json", coco)
    with pytest.raises(ValueError, match=re.escape(
            "train.json: image id 100 (0.png): JSON says 420x240, the file is 400x240")):
        read_coco_split(world / "train.json", world / "images", "train")


def _ann(coco: dict, **changes: object) -> dict:
    """Apply ``changes`` to the first annotation."""
    coco["annotations"][0].update(changes)
    return coco


def _dup_ann(coco: dict) -> dict:
    coco["annotations"].append(dict(coco["annotations"][1], id=coco["annotations"][0]["id"]))
    return coco


def _dup_image(coco: dict) -> dict:
    coco["images"].append(dict(coco["images"][1], id=coco["images"][0]["id"]))
    return coco


def _drop(key: str) -> Callable[[dict], dict]:
    return lambda coco: {k: v for k, v in coco.items() if k != key}


# (mutation of train.json, substrings the message must contain); first annotation is id 1000
# on image id 100 (0.png, 400x240).
BAD_JSON = [
    pytest.param(lambda c: _ann(c, bbox=[10, 5, -3, 8]),
                 ["train.json", "annotation id 1000 (image id 100)", "[10, 5, -3, 8]",
                  "negative width"], id="negative-width"),
    pytest.param(lambda c: _ann(c, bbox=[10, 5, 3, -8]), ["annotation id 1000", "negative height"],
                 id="negative-height"),
    pytest.param(lambda c: _ann(c, bbox=[10, 5, 0, 8]), ["annotation id 1000", "zero size"],
                 id="zero-width"),
    pytest.param(lambda c: _ann(c, bbox=[10, 5, float("nan"), 8]),
                 ["annotation id 1000", "not finite"], id="nan"),
    pytest.param(lambda c: _ann(c, bbox=[390, 5, 20, 8]),
                 ["annotation id 1000", "outside the 400x240 image"], id="outside-right"),
    pytest.param(lambda c: _ann(c, bbox=[-5, 5, 20, 8]), ["annotation id 1000", "outside"],
                 id="outside-left"),
    pytest.param(lambda c: _ann(c, bbox=[1, 2, 3]), ["annotation id 1000", "not a list of 4"],
                 id="bbox-3-values"),
    pytest.param(lambda c: _ann(c, image_id=999), ["annotation id 1000", "unknown image id 999"],
                 id="unknown-image"),
    pytest.param(lambda c: _ann(c, category_id=11), ["annotation id 1000",
                                                     "unknown category id 11"], id="unknown-cat"),
    pytest.param(_dup_ann, ["train.json", "annotation id 1000", "duplicate annotation id"],
                 id="duplicate-annotation"),
    pytest.param(_dup_image, ["train.json", "image id 100", "duplicate image id"],
                 id="duplicate-image"),
    pytest.param(lambda c: {**c, "images": [dict(c["images"][0], width=401), *c["images"][1:]]},
                 ["image id 100 (0.png)", "JSON says 401x240", "400x240"], id="size-mismatch"),
    pytest.param(lambda c: {**c, "images": [dict(c["images"][0], file_name="nope.png"),
                                            *c["images"][1:]]},
                 ["image id 100 (nope.png)", "not found"], id="missing-image-file"),
    pytest.param(lambda c: {**c, "categories": [*c["categories"], {"id": 40, "name": "ball"}]},
                 ["category id 40", "duplicate name 'ball'"], id="duplicate-category-name"),
    pytest.param(_drop("annotations"), ["train.json", "not COCO", "'annotations'"],
                 id="missing-annotations"),
    pytest.param(_drop("categories"), ["train.json", "'categories'"], id="missing-categories"),
    pytest.param(_drop("images"), ["train.json", "'images'"], id="missing-images"),
    pytest.param(lambda c: [c], ["train.json", "top level is list"], id="not-an-object"),
]


@pytest.mark.parametrize(("mutate", "expected"), BAD_JSON)
def test_bad_json_names_file_and_record(world: Path, mutate, expected: list[str]) -> None:
    dump(world / "train.json", mutate(load(world / "train.json")))
    with pytest.raises(ValueError) as err:
        read_coco_split(world / "train.json", world / "images", "train")
    for part in expected:
        assert part in str(err.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("", "empty file"),
    ("   \n", "empty file"),
    ('{"images": [', "not valid JSON (line 1"),
])
def test_unparseable_json(world: Path, text: str, expected: str) -> None:
    (world / "train.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape("train.json")) as err:
        read_coco_split(world / "train.json", world / "images", "train")
    assert expected in str(err.value)


def _png_zero_width() -> bytes:
    """A PNG whose header declares a 0x10 image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 10, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda p: p.write_bytes(p.read_bytes()[:-30]), "truncated image"),
    (lambda p: p.write_bytes(b""), "empty image file"),
    (lambda p: p.write_bytes(b"this is not an image"), "unreadable image"),
    (lambda p: p.write_bytes(_png_zero_width()), "image"),
], ids=["truncated-png", "empty-file", "garbage", "zero-size"])
def test_bad_image_file_names_file(world: Path, damage, expected: str) -> None:
    damage(world / "images" / "1.png")
    with pytest.raises(ValueError) as err:
        read_coco_split(world / "train.json", world / "images", "train")
    msg = str(err.value)
    assert "train.json: image id 101 (1.png)" in msg and expected in msg


def test_truncated_jpeg_without_end_marker(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.fromarray(draw_scene(0)[0]).save(path, quality=90)
    assert image_size(path) == (400, 240)
    path.write_bytes(path.read_bytes()[:-2])  # header intact, end-of-image marker gone
    with pytest.raises(ValueError, match="truncated JPEG"):
        image_size(path)


def test_problems_are_collected_and_capped(world: Path) -> None:
    coco = load(world / "train.json")
    for ann in coco["annotations"]:
        ann["bbox"] = [1, 1, -1, 1]
    coco["annotations"] += [dict(coco["annotations"][0], id=9000 + i, image_id=555)
                            for i in range(30)]
    dump(world / "train.json", coco)
    with pytest.raises(ValueError) as err:
        read_coco_split(world / "train.json", world / "images", "train")
    msg = str(err.value)
    total = len(coco["annotations"])
    assert msg.startswith(f"{total} problem(s) in train.json")
    assert msg.count("\n  train.json: annotation id") == MAX_PROBLEMS
    assert f"and {total - MAX_PROBLEMS} more" in msg


def test_bad_split_and_missing_folder(world: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        read_coco_split(world / "train.json", world / "images", "test")
    with pytest.raises(ValueError, match="images folder"):
        read_coco_split(world / "train.json", world / "nope", "train")
    with pytest.raises(ValueError, match=re.escape("missing.json: no such file")):
        read_coco_split(world / "missing.json", world / "images", "train")


@pytest.mark.parametrize(("dataset", "model", "expected"), [
    ([], ["a"], {}),
    (["book", "ball"], ["ball", "crate", "book"], {"book": 2, "ball": 0}),
    (["ball", "ball"], ["ball"], {"ball": 0}),
])
def test_check_class_names_maps_by_name(dataset, model, expected) -> None:
    assert check_class_names(dataset, model) == expected


def test_check_class_names_lists_unknown() -> None:
    with pytest.raises(ValueError) as err:
        check_class_names(["ball", "lamp", "cup"], ["ball", "book"], source="val.json")
    msg = str(err.value)
    assert msg.startswith("val.json:") and "'lamp', 'cup'" in msg and "ball, book" in msg


def _yolo_layout(root: Path) -> Path:
    """An ultralytics layout: images/{train,val}, labels/{train,val}, data.yaml (names dict)."""
    for split, seeds in (("train", [0, 1]), ("val", [2])):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for seed in seeds:
            image, boxes, classes = draw_scene(seed)
            Image.fromarray(image).save(root / "images" / split / f"{seed}.jpg")
            h, w = image.shape[:2]
            lines = [f"{c} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} "
                     f"{(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}"
                     for b, c in zip(boxes, classes, strict=True)]
            (root / "labels" / split / f"{seed}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in CLASS_NAMES.items())
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\n"
                                    f"names:\n{names}\n")
    return root / "data.yaml"


def test_data_yaml_reads_boxes(tmp_path: Path) -> None:
    splits = read_data_yaml(_yolo_layout(tmp_path))
    assert [s.split for s in splits] == ["train", "val"]
    assert splits[0].class_names == tuple(CLASS_NAMES.values())
    rec = splits[0].images[0]
    _, boxes, classes = draw_scene(0)
    np.testing.assert_allclose(rec.boxes, boxes, atol=0.01)  # 6 decimals of normalised coords
    assert list(rec.labels) == [CLASS_NAMES[int(c)] for c in classes]
    assert rec.coco_ids.tolist() == [1, 2, 3]  # line numbers


@pytest.mark.parametrize(("line", "expected"), [
    ("7 0.5 0.5 0.1 0.1", "class 7 not in 0..2"),
    ("0 0.5 0.5 -0.1 0.1", "negative width"),
    ("0 0.99 0.5 0.2 0.1", "outside"),
    ("0 0.5 0.5 0.1", "expected 'cls cx cy w h'"),
    ("0 a b c d", "is not numbers"),
])
def test_data_yaml_bad_label_line(tmp_path: Path, line: str, expected: str) -> None:
    data_yaml = _yolo_layout(tmp_path)
    label = tmp_path / "labels" / "train" / "1.txt"
    label.write_text(label.read_text() + line + "\n")
    with pytest.raises(ValueError) as err:
        read_data_yaml(data_yaml)
    assert "1.txt line 4" in str(err.value) and expected in str(err.value)


def test_data_yaml_missing_names_and_entries(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("train: images\n")
    with pytest.raises(ValueError, match=re.escape("d.yaml: 'names'")):
        read_data_yaml(tmp_path / "d.yaml")
    (tmp_path / "d.yaml").write_text("names: [a]\ntrain: nowhere\n")
    with pytest.raises(ValueError, match=re.escape("d.yaml: split entry 'nowhere'")):
        read_data_yaml(tmp_path / "d.yaml")
    (tmp_path / "d.yaml").write_text("names: [a\n")
    with pytest.raises(ValueError, match=re.escape("d.yaml: not valid YAML")):
        read_data_yaml(tmp_path / "d.yaml")
