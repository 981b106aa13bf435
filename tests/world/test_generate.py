"""The demo world: determinism, loadability, and each planted phenomenon measured on the files."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from audit.world.generate import generate_world
from audit.world.scene import CLASS_NAMES
from tests.world.conftest import iou, load_coco, load_noise, xyxy

SPLITS = ("train", "val")


def _tree_hash(root: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _boxes_by_image(coco: dict) -> dict[int, list[dict]]:
    """Annotations grouped by image id (every image present, possibly empty)."""
    out: dict[int, list[dict]] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        out[ann["image_id"]].append(ann)
    return out


def _max_iou(anns: list[dict]) -> float:
    """Largest IoU between two boxes of one image (0 with fewer than two)."""
    boxes = [xyxy(a["bbox"]) for a in anns]
    return max((iou(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]), default=0.0)


def test_same_arguments_same_bytes(tmp_path: Path) -> None:
    a = generate_world(tmp_path / "a", n_images=40, seed=3, progress=False)
    b = generate_world(tmp_path / "b", n_images=40, seed=3, progress=False)
    c = generate_world(tmp_path / "c", n_images=40, seed=4, progress=False)
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert _tree_hash(tmp_path / "a") != _tree_hash(tmp_path / "c")
    assert str(a).splitlines()[1:] == str(b).splitlines()[1:]
    assert "images easy" in str(a) and "errors merge" in str(c)


def test_regenerating_replaces_the_previous_world(tmp_path: Path) -> None:
    generate_world(tmp_path / "w", n_images=40, progress=False)
    generate_world(tmp_path / "w", n_images=20, progress=False)
    jpgs = list((tmp_path / "w" / "images").rglob("*.jpg"))
    assert len(jpgs) == 20
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_images": 0}, "n_images"),
    ({"n_images": 3}, "n_images"),
    ({"noise_rate": 1.5}, "noise_rate"),
    ({"noise_rate": -0.1}, "noise_rate"),
])
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_world(tmp_path / "w", progress=False, **kwargs)


def test_refuses_to_overwrite_a_folder_that_is_no_world(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="no demo world"):
        generate_world(tmp_path, n_images=8, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_loads_with_pycocotools(world) -> None:
    from pycocotools.coco import COCO

    root, summary = world
    for split in SPLITS:
        for name, expected in ((f"{split}.json", summary.noisy_boxes[split]),
                               (f"{split}_clean.json", summary.clean_boxes[split])):
            coco = COCO(str(root / name))
            assert len(coco.getAnnIds()) == expected
            assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
            for img in coco.loadImgs(coco.getImgIds()):
                assert (root / "images" / img["file_name"]).is_file()
                assert 320 <= img["width"] <= 512 and 320 <= img["height"] <= 512


def test_loads_with_fiftyone(world) -> None:
    import fiftyone as fo

    root, _ = world
    coco = load_coco(root / "val.json")
    ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset,
                             data_path=str(root / "images"), labels_path=str(root / "val.json"),
                             label_types="detections", label_field="ground_truth")
    try:
        assert len(ds) == len(coco["images"])
        assert ds.count("ground_truth.detections") == len(coco["annotations"])
        assert set(ds.distinct("ground_truth.detections.label")) <= set(CLASS_NAMES)
        crowd = ds.values("ground_truth.detections.iscrowd", unwind=True)
        assert sum(int(c) for c in crowd) == sum(a["iscrowd"] for a in coco["annotations"])
    finally:
        ds.delete()


def test_easy_scenes_are_overrepresented_in_train(world) -> None:
    root, _ = world
    kinds = {s: Counter(i["scene"] for i in load_coco(root / f"{s}.json")["images"])
             for s in SPLITS}
    overall = sum(kinds["train"].values()) / sum(kinds["val"].values())
    easy = kinds["train"]["easy"] / kinds["val"]["easy"]
    assert 2.5 <= overall <= 3.5
    assert easy >= 4 * overall  # about 14:1 against 3:1


def test_easy_val_images_are_heavily_occluded(world) -> None:
    root, _ = world
    occlusion = {}
    for split in SPLITS:
        coco = load_coco(root / f"{split}_clean.json")
        anns = _boxes_by_image(coco)
        easy = [i["id"] for i in coco["images"] if i["scene"] == "easy"]
        occlusion[split] = float(np.mean([_max_iou(anns[i]) for i in easy]))
    assert occlusion["train"] < 0.05
    assert occlusion["val"] >= 0.2


def test_small_scenes_have_much_smaller_boxes(world) -> None:
    root, _ = world
    coco = load_coco(root / "train_clean.json")
    anns = _boxes_by_image(coco)
    medians: dict[str, list[float]] = defaultdict(list)
    for img in coco["images"]:
        areas = [a["area"] / (img["width"] * img["height"]) for a in anns[img["id"]]]
        medians["small" if img["scene"] == "small" else "other"].append(float(np.median(areas)))
    assert np.median(medians["small"]) < 0.2 * np.median(medians["other"])
    assert max(medians["small"]) < np.percentile(medians["other"], 10)


def test_shelf_books_use_mixed_conventions(world) -> None:
    root, _ = world
    crowd_flags = []
    for split in SPLITS:
        noisy, clean = load_coco(root / f"{split}.json"), load_coco(root / f"{split}_clean.json")
        noisy_anns, clean_anns = _boxes_by_image(noisy), _boxes_by_image(clean)
        shelves = [i for i in noisy["images"] if i["scene"] == "shelf"]
        assert {i["book_convention"] for i in shelves} == {"individual", "group", "partial"}
        assert all("book_convention" not in i for i in noisy["images"] if i["scene"] != "shelf")
        for img in shelves:
            books = [a for a in clean_anns[img["id"]] if a["category_id"] == 5]
            labelled = [a for a in noisy_anns[img["id"]] if a["category_id"] == 5]
            clean_ids = {a["id"] for a in books}
            wide = [a for a in labelled if a["id"] not in clean_ids]  # group or merged boxes
            if img["book_convention"] == "group":
                assert wide and len(labelled) < len(books)
                crowd_flags += [a["iscrowd"] for a in wide]
            elif img["book_convention"] == "partial":
                assert 0 < len({a["id"] for a in labelled} & clean_ids) < len(books)
    assert 0 < sum(crowd_flags) < 0.5 * len(crowd_flags)  # iscrowd=1 on a few group boxes


def test_each_error_type_at_about_the_requested_rate(world) -> None:
    root, summary = world
    rows = load_noise(root / "noise.csv")
    for split in SPLITS:
        counts = Counter(r["error_type"] for r in rows if r["split"] == split)
        n_boxes = summary.clean_boxes[split]
        assert sum(counts.values()) == pytest.approx(0.10 * n_boxes, abs=1)
        for error_type in ("drop", "flip", "shift", "spawn", "merge"):
            assert counts[error_type] == pytest.approx(0.02 * n_boxes, rel=0.1, abs=1)


def test_error_rows_agree_with_the_files(world) -> None:
    root, _ = world
    noisy = {s: {a["id"]: a for a in load_coco(root / f"{s}.json")["annotations"]} for s in SPLITS}
    clean = {s: {a["id"]: a for a in load_coco(root / f"{s}_clean.json")["annotations"]}
             for s in SPLITS}
    for row in load_noise(root / "noise.csv"):
        n_ids = [int(v) for v in row["annotation_ids"].split(";") if v]
        c_ids = [int(v) for v in row["clean_annotation_ids"].split(";") if v]
        split, kind = row["split"], row["error_type"]
        ns, cs = [noisy[split][i] for i in n_ids], [clean[split][i] for i in c_ids]
        assert all(a["image_id"] == int(row["image_id"]) for a in ns + cs)
        if kind == "drop":
            assert not ns and len(cs) == 1 and c_ids[0] not in noisy[split]
        elif kind == "flip":
            assert ns[0]["bbox"] == cs[0]["bbox"] and ns[0]["category_id"] != cs[0]["category_id"]
            assert row["noisy_label"] != row["clean_label"]
        elif kind == "shift":
            assert 0.4 <= iou(xyxy(ns[0]["bbox"]), xyxy(cs[0]["bbox"])) <= 0.7
            assert ns[0]["category_id"] == cs[0]["category_id"]
        elif kind == "spawn":
            assert not cs and len(ns) == 1
        else:
            assert len(cs) >= 2 and len({a["category_id"] for a in cs}) == 1
            union = np.array([min(xyxy(a["bbox"])[0] for a in cs),
                              min(xyxy(a["bbox"])[1] for a in cs),
                              max(xyxy(a["bbox"])[2] for a in cs),
                              max(xyxy(a["bbox"])[3] for a in cs)])
            assert np.allclose(xyxy(ns[0]["bbox"]), union, atol=0.011)
            assert all(i not in noisy[split] for i in c_ids)


def test_shift_iou_and_spawn_emptiness_from_the_csv(world) -> None:
    root, _ = world
    rows = load_noise(root / "noise.csv")
    shifts = [iou(xyxy(r["noisy_bbox"]), xyxy(r["clean_bbox"])) for r in rows
              if r["error_type"] == "shift"]
    assert shifts and min(shifts) >= 0.4 and max(shifts) <= 0.7
    clean = {s: load_coco(root / f"{s}_clean.json") for s in SPLITS}
    anns = {s: _boxes_by_image(c) for s, c in clean.items()}
    for r in (r for r in rows if r["error_type"] == "spawn"):
        box = xyxy(r["noisy_bbox"])
        others = [xyxy(a["bbox"]) for a in anns[r["split"]][int(r["image_id"])]]
        assert all(iou(box, o) < 0.05 for o in others)


def test_merges_never_land_on_group_shelves(world) -> None:
    root, _ = world
    conventions = {i["id"]: i.get("book_convention") for s in SPLITS
                   for i in load_coco(root / f"{s}.json")["images"]}
    merges = [r for r in load_noise(root / "noise.csv") if r["error_type"] == "merge"]
    assert merges
    assert all(conventions[int(r["image_id"])] != "group" for r in merges)


def test_zero_noise_rate_leaves_labels_clean_outside_shelves(tmp_path: Path) -> None:
    generate_world(tmp_path / "w", n_images=40, noise_rate=0.0, progress=False)
    assert len(load_noise(tmp_path / "w" / "noise.csv")) == 0
    for split in SPLITS:
        noisy = load_coco(tmp_path / "w" / f"{split}.json")
        clean = load_coco(tmp_path / "w" / f"{split}_clean.json")
        shelf = {i["id"] for i in noisy["images"] if i["scene"] == "shelf"}
        keep = [a for a in noisy["annotations"] if a["image_id"] not in shelf]
        assert keep == [a for a in clean["annotations"] if a["image_id"] not in shelf]
