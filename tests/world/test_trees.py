"""The tree world: real human-annotated aerial images, tiled, split in space, errors injected."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from audit.world import trees
from audit.world.files import WorldSummary


@pytest.fixture(scope="module")
def tree_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WorldSummary]:
    out = tmp_path_factory.mktemp("trees") / "w"
    return out, trees.generate_tree_world(out, progress=False)


def test_tiles_and_boxes_per_split(tree_world):
    out, summary = tree_world
    assert summary.images == {"train": 37, "val": 10}
    for split in ("train", "val"):
        data = json.loads((out / f"{split}.json").read_text())
        clean = json.loads((out / f"{split}_clean.json").read_text())
        assert len(data["images"]) == summary.images[split]
        assert len(clean["annotations"]) == summary.clean_boxes[split]
        assert [c["name"] for c in data["categories"]] == ["tree"]
        for img in data["images"]:
            assert (out / "images" / img["file_name"]).is_file()
            assert img["width"] <= 450 and img["height"] <= 450
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            img = next(i for i in data["images"] if i["id"] == ann["image_id"])
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6
    assert summary.clean_boxes["val"] > 200 and summary.clean_boxes["train"] > 600


def test_split_is_disjoint_in_space(tree_world):
    out, _ = tree_world
    windows = {split: [(i["scene"], i["source_window"])
                       for i in json.loads((out / f"{split}.json").read_text())["images"]]
               for split in ("train", "val")}
    for src_t, (ax1, ay1, ax2, ay2) in windows["train"]:
        for src_v, (bx1, by1, bx2, by2) in windows["val"]:
            if src_t == src_v:
                overlap = max(0, min(ax2, bx2) - max(ax1, bx1)) * max(0, min(ay2, by2)
                                                                      - max(ay1, by1))
                assert overlap == 0, (src_t, (ax1, ay1), (bx1, by1))
    assert {s for s, _ in windows["val"]} >= set(trees.VAL_IMAGES)


def test_truth_rows_per_type_in_both_splits(tree_world):
    out, summary = tree_world
    noise = pd.read_csv(out / "noise.csv")
    counts = noise.groupby(["error_type", "split"]).size()
    for etype in trees.TREE_ERRORS:
        for split in ("train", "val"):
            assert counts.get((etype, split), 0) >= 4, (etype, split)
            assert counts[(etype, split)] == summary.errors[etype][split]
    assert "flip" not in set(noise["error_type"])  # one class: nothing to flip to
    assert set(noise["clean_label"].dropna()) <= {"tree"}


def test_same_source_same_bytes(tree_world, tmp_path):
    out, _ = tree_world
    again = tmp_path / "again"
    trees.generate_tree_world(again, progress=False)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        assert (again / path.relative_to(out)).read_bytes() == path.read_bytes(), path


@pytest.mark.parametrize(("box", "expected"), [
    ((10, 10, 20, 20), [(10, 10, 20, 20)]),  # inside
    ((95, 10, 110, 20), []),  # a third inside: the neighbour tile's
    ((90, 10, 110, 20), [(90, 10, 100, 20)]),  # half inside: kept, clipped
])
def test_a_box_belongs_to_the_tile_holding_most_of_it(box, expected):
    assert trees.tile_boxes([box], (0, 0, 100, 100)) == expected


def test_tiles_cover_the_image_without_overlap():
    tiles = trees.plan_tiles("big", 1249, 1035)
    area = sum((t.window[2] - t.window[0]) * (t.window[3] - t.window[1]) for t in tiles)
    assert area == 1249 * 1035 and len(tiles) == 9
    assert [t.split for t in tiles].count("val") == 3  # the rightmost column


def test_bad_annotation_is_named():
    text = b"<annotation><object><name>Tree</name><bndbox><xmin>5</xmin></bndbox></object>" \
           b"</annotation>"
    with pytest.raises(ValueError, match=r"x\.xml: object 0"):
        trees.read_voc(text, "x.xml")


def test_missing_source_says_how_to_fetch_it(tmp_path):
    with pytest.raises(ValueError, match="no such deepforest"):
        trees.locate_source(tmp_path / "nope.whl")
