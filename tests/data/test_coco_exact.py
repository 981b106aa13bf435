"""The COCO export writes an untouched box with the very numbers it was ingested with.

Ingest stores COCO's ``[x, y, w, h]`` as FiftyOne's relative box (``x / width``,
``((x + w) - x) / width``, as :mod:`audit.data.sample_docs` does); FiftyOne's exporter multiplies
back and most boxes came out off by a rounding error (``10.37`` as ``10.370000000000001``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from audit.boxes import coco_xywh_abs, xyxy_abs_to_xywh_rel

fo = pytest.importorskip("fiftyone")

WIDTH, HEIGHT = 333, 211


def _coco_boxes(seed: int, n: int) -> list[list[float]]:
    """``n`` COCO boxes with two decimals, as annotation tools write them."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 150, (n, 2)).round(2)
    wh = rng.uniform(5, 60, (n, 2)).round(2)
    return [[*map(float, a), *map(float, b)] for a, b in zip(xy, wh, strict=True)]


def _relative(box: list[float]) -> list[float]:
    """The relative box ingest stores for a COCO box."""
    x, y, w, h = box
    return xyxy_abs_to_xywh_rel([[x, y, x + w, y + h]], WIDTH, HEIGHT)[0].tolist()


@pytest.fixture
def ingested(tmp_path: Path) -> Iterator[tuple[object, dict[str, list[list[float]]]]]:
    """Three samples whose gt boxes were stored as ingest stores them; their COCO boxes."""
    ds = fo.Dataset(f"coco-exact-{uuid.uuid4().hex[:8]}")
    ds.info = {"audit": {"class_names": ["ball"]}}
    ds.save()
    truth = {}
    for i in range(3):
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        boxes = truth[f"{i}.png"] = _coco_boxes(i, 40)
        ds.add_sample(fo.Sample(
            filepath=str(path), split="train",
            metadata=fo.ImageMetadata(width=WIDTH, height=HEIGHT),
            ground_truth=fo.Detections(detections=[
                fo.Detection(label="ball", bounding_box=_relative(b), iscrowd=False)
                for b in boxes])))
    yield ds, truth
    ds.delete()


def test_the_conversion_gives_back_the_ingested_numbers() -> None:
    boxes = _coco_boxes(7, 2000)
    assert [coco_xywh_abs(_relative(b), WIDTH, HEIGHT) for b in boxes] == boxes


def test_untouched_boxes_are_exported_as_ingested_also_beside_a_review(ingested,
                                                                       tmp_path: Path) -> None:
    from audit.data.exports import export
    from audit.data.review_store import record_decision
    from audit.reviews import Decision

    ds, truth = ingested
    sample = ds.first()
    deleted = sample.ground_truth.detections[0].id
    record_decision(ds, Decision(dataset=ds.name, sample_id=sample.id, box_id=deleted,
                                 action="delete", base_revision=0), home=tmp_path / "home")
    truth["0.png"] = truth["0.png"][1:]
    coco = json.loads(export(ds, "coco", tmp_path / "out").read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    got: dict[str, list[list[float]]] = {}
    for ann in coco["annotations"]:
        got.setdefault(names[ann["image_id"]], []).append(ann["bbox"])
    assert got == truth
