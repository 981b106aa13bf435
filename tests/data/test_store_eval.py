"""Detection metrics (audit.data.store_eval): pycocotools' COCOeval against FiftyOne's own."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

pytest.importorskip("fiftyone")
import fiftyone as fo

from audit.data.store_eval import COCO_IOUS, evaluate

W, H = 640, 480
_names = itertools.count()


def _det(label: str, xyxy, confidence: float | None = None, iscrowd: int = 0) -> fo.Detection:
    x1, y1, x2, y2 = xyxy
    det = fo.Detection(label=label, bounding_box=[x1 / W, y1 / H, (x2 - x1) / W, (y2 - y1) / H])
    if confidence is None:
        det["iscrowd"] = iscrowd
    else:
        det.confidence = confidence
    return det


def _dataset(samples: list[tuple[list, list]]) -> fo.Dataset:
    ds = fo.Dataset(f"store-eval-{next(_names)}")
    ds.add_samples([fo.Sample(filepath=f"/tmp/store-eval/{i}.jpg",
                              metadata=fo.ImageMetadata(width=W, height=H),
                              ground_truth=fo.Detections(detections=gt),
                              predictions=fo.Detections(detections=pred))
                    for i, (gt, pred) in enumerate(samples)], progress=False)
    ds.info = {"audit": {"model": "m.pt"}}
    ds.save()
    return ds


def _random_world(seed: int) -> fo.Dataset:
    """12 images, 2 classes: jittered and missed detections, false positives, a crowd box."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(12):
        gt, pred = [], []
        for _ in range(rng.integers(1, 6)):
            label = str(rng.choice(["cat", "dog"]))
            x, y = rng.uniform(0, 500), rng.uniform(0, 350)
            box = (x, y, x + rng.uniform(20, 140), y + rng.uniform(20, 130))
            gt.append(_det(label, box))
            if rng.random() < 0.8:  # found, with a jittered box and sometimes the other class
                j = np.asarray(box) + rng.normal(0, 6, 4)
                other = "dog" if label == "cat" else "cat"
                pred.append(_det(other if rng.random() < 0.1 else label, j,
                                 float(rng.uniform(0.2, 1.0))))
        for _ in range(rng.integers(0, 3)):  # false positives
            x, y = rng.uniform(0, 560), rng.uniform(0, 400)
            pred.append(_det(str(rng.choice(["cat", "dog"])), (x, y, x + 60, y + 60),
                             float(rng.uniform(0.0, 0.6))))
        if i == 3:  # a crowd region and a detection inside it: ignored, not a false positive
            gt.append(_det("cat", (300, 300, 600, 460), iscrowd=1))
            pred.append(_det("cat", (320, 320, 400, 400), 0.9))
        samples.append((gt, pred))
    return _dataset(samples)


def _fiftyone_metrics(ds: fo.Dataset, iou: float = 0.5) -> dict:
    """The same figures from FiftyOne's evaluate_detections (the former implementation)."""
    threshs = sorted(set(COCO_IOUS) | {iou})
    logging.getLogger("fiftyone").setLevel(logging.WARNING)
    res = ds.evaluate_detections("predictions", gt_field="ground_truth", compute_mAP=True,
                                 iou_threshs=threshs, classwise=True, progress=False)
    precision = np.asarray(res.precision, dtype=float)
    coco = [i for i, t in enumerate(threshs) if t in COCO_IOUS]
    valid = precision[0, :, 0] > -1
    ap = precision[coco].mean(axis=(0, 2))
    ap50 = precision[threshs.index(iou)].mean(axis=1)
    return {"per_class_AP": {str(c): float(a) for c, a, v in zip(res.classes, ap, valid,
                                                                   strict=True) if v},
            "per_class_AP50": {str(c): float(a) for c, a, v in zip(res.classes, ap50, valid,
                                                                     strict=True) if v}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pycocotools_agrees_with_fiftyone(seed) -> None:
    ds = _random_world(seed)
    try:
        ours, theirs = evaluate(ds), _fiftyone_metrics(ds)
        for key in ("per_class_AP", "per_class_AP50"):
            assert ours[key].keys() == theirs[key].keys()
            for cls, value in theirs[key].items():
                assert ours[key][cls] == pytest.approx(value, abs=1e-6), (key, cls)
        assert 0 < ours["mAP"] < ours["mAP50"] < 1
    finally:
        ds.delete()


def test_perfect_missing_and_empty_predictions() -> None:
    box = (10, 10, 110, 90)
    ds = _dataset([([_det("cat", box), _det("dog", (200, 200, 300, 300))],
                    [_det("cat", box, 0.9)])])
    try:
        out = evaluate(ds)
        assert out["per_class_AP"] == {"cat": pytest.approx(1.0), "dog": 0.0}
        assert out["mAP"] == pytest.approx(0.5) and out["mAP50"] == pytest.approx(0.5)
    finally:
        ds.delete()
    ds = _dataset([([_det("cat", box)], [])])
    try:
        out = evaluate(ds)
        assert out["mAP"] == 0.0 and out["per_class_AP"] == {"cat": 0.0}
    finally:
        ds.delete()


def test_metrics_are_cached_until_the_samples_change() -> None:
    ds = _random_world(0)
    try:
        first = evaluate(ds)
        assert ds.info["audit"]["evaluation"]["key"] == first["key"]
        assert evaluate(ds) == first
        sample = ds.first()
        sample.ground_truth.detections = sample.ground_truth.detections[:1]
        sample.save()
        assert evaluate(ds)["key"] != first["key"]
    finally:
        ds.delete()
