"""audit.data.gradcam: heatmap ranges, shapes, layer dependence, and the numpy overlay."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from audit import constants as C
from audit.data import gradcam as G
from audit.data import model as M
from audit.data.checkpoint import load_detector
from tests.data.conftest import draw_scene

IMGSZ = 320


@pytest.fixture(scope="module")
def detector(tiny_checkpoint: Path) -> M.Detector:
    """The tiny untrained checkpoint (its pickle warning is tested in test_model)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_detector(tiny_checkpoint)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 240x400 scene with three rectangles."""
    return draw_scene(1, 240, 400)


@pytest.fixture(scope="module")
def maps(detector, scene) -> dict[int, np.ndarray]:
    """Heatmaps of a shallow, a middle and a deep layer for the scene's first box."""
    image, boxes, classes = scene
    return G.layer_heatmaps(detector, image, boxes[0], int(classes[0]), layers=[2, 16, 22],
                            imgsz=IMGSZ)


def test_maps_in_unit_range_with_image_shape(maps, scene):
    assert sorted(maps) == [2, 16, 22]
    for heat in maps.values():
        assert heat.shape == scene[0].shape[:2] and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
        assert heat.max() == pytest.approx(1.0)  # a live model gives some positive evidence


def test_shallow_and_deep_layers_differ(maps):
    assert np.abs(maps[2] - maps[22]).mean() > 0.01
    # a stride-32 map upsampled is smoother than a stride-4 one
    def roughness(h: np.ndarray) -> float:
        return float(np.abs(np.diff(h, axis=1)).mean())

    assert roughness(maps[2]) > roughness(maps[22])


def test_other_box_gives_other_map(detector, scene, maps):
    image, boxes, classes = scene
    other = G.layer_heatmaps(detector, image, boxes[1], int(classes[0]), layers=[16], imgsz=IMGSZ)
    assert np.abs(other[16] - maps[16]).mean() > 1e-3


def test_heatmaps_leave_forward_working_and_unchanged(detector, scene):
    """Grad mode after inference mode (and back) must not break the cached head anchors."""
    image, boxes, classes = scene
    before = detector.forward([image], imgsz=IMGSZ)[0]
    G.layer_heatmaps(detector, image, boxes[2], int(classes[2]), layers=[22], imgsz=IMGSZ)
    after = detector.forward([image], imgsz=IMGSZ)[0]
    np.testing.assert_allclose(after.pred_boxes, before.pred_boxes, atol=1e-4)
    assert all(p.grad is None for p in detector.net.parameters())


def test_zero_gradient_gives_zero_map_without_nan():
    frame = M.LetterboxFrame(height=30, width=50, new_h=19, new_w=32, top=6, left=0, imgsz=32)
    act = torch.rand(1, 4, 4, 4)
    heat = G._cam(act, torch.zeros_like(act), frame)
    assert heat.shape == (30, 50) and not heat.any() and np.isfinite(heat).all()
    assert not G._cam(act, None, frame).any()


def test_cam_is_unletterboxed():
    """Activation only in the top-left quarter of the real image lands top-left after mapping."""
    frame = M.LetterboxFrame(height=100, width=200, new_h=16, new_w=32, top=8, left=0, imgsz=32)
    act = torch.zeros(1, 1, 32, 32)
    act[0, 0, 8:16, 0:16] = 1.0  # rows 8..15 are the top half of the image (padding is 0..7)
    heat = G._cam(act, torch.ones_like(act), frame)
    assert heat[:40, :90].mean() > 0.8 and heat[60:, :].max() < 0.05 and heat[:, 110:].max() < 0.05


@pytest.mark.parametrize(("box", "class_id", "layers", "match"), [
    (np.array([10, 10, 5, 50]), 0, [16], "x2>x1"),
    (np.array([10, 10, 50]), 0, [16], r"\(4,\)"),
    (np.array([10, 10, np.nan, 50]), 0, [16], "finite"),
    (np.array([10, 10, 50, 50]), 3, [16], r"class_id must be in \[0, 2\]"),
    (np.array([10, 10, 50, 50]), 0, [23], "Detect head excluded"),
    (np.array([10, 10, 50, 50]), 0, [], "layers must be"),
])
def test_rejects_bad_input(detector, scene, box, class_id, layers, match):
    with pytest.raises(ValueError, match=match):
        G.layer_heatmaps(detector, scene[0], box, class_id, layers=layers, imgsz=IMGSZ)


def test_overlay_colours_and_blend():
    image = np.full((4, 6, 3), 100, np.uint8)
    heat = np.zeros((4, 6), np.float32)
    heat[:, 3:] = 1.0
    out = G.overlay(image, heat, alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[0, 0], [0, 0, 128])  # cold = dark blue
    np.testing.assert_array_equal(out[0, 5], [128, 0, 0])  # hot = dark red
    np.testing.assert_array_equal(G.overlay(image, heat, alpha=0.0), image)
    mid = G.overlay(image, np.full((4, 6), 0.5, np.float32), alpha=0.5)
    np.testing.assert_array_equal(mid[0, 0], [114, 178, 114])  # half grey, half jet(0.5) = green
    assert (image == 100).all()  # input untouched


@pytest.mark.parametrize(("heat", "alpha", "match"), [
    (np.zeros((3, 6)), 0.5, "does not match"),
    (np.zeros((4, 6)), 1.5, "alpha"),
])
def test_overlay_rejects_bad_input(heat, alpha, match):
    with pytest.raises(ValueError, match=match):
        G.overlay(np.zeros((4, 6, 3), np.uint8), heat, alpha=alpha)


def _background_box(box: np.ndarray, objects: np.ndarray, h: int, w: int) -> np.ndarray | None:
    """A box of the same size as ``box`` that touches none of ``objects``, or None."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    for y in np.linspace(0, h - bh, 12):
        for x in np.linspace(0, w - bw, 12):
            cand = np.array([x, y, x + bw, y + bh])
            apart = ((cand[2] <= objects[:, 0]) | (cand[0] >= objects[:, 2])
                     | (cand[3] <= objects[:, 1]) | (cand[1] >= objects[:, 3]))
            if apart.all():
                return cand
    return None


def _mean_inside(heat: np.ndarray, box: np.ndarray) -> float:
    x1, y1, x2, y2 = np.round(box).astype(int)
    return float(heat[y1:y2, x1:x2].mean())


@pytest.mark.skipif(not C.DEMO_CHECKPOINT.is_file(),
                    reason="needs the trained demo checkpoint audit/world/demo_yolo11n.pt "
                           "(python -m audit train-demo); an untrained model has no notion "
                           "of objects")
def test_trained_model_heats_objects_more_than_background(tmp_path):
    from PIL import Image

    from audit.world.generate import generate_world

    generate_world(tmp_path / "world", n_images=8, seed=3, progress=False)
    coco = json.loads((tmp_path / "world" / "train_clean.json").read_text())
    det = load_detector(C.DEMO_CHECKPOINT)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    obj_heat, bg_heat = [], []
    for img in coco["images"][:4]:
        image = np.asarray(Image.open(tmp_path / "world" / "images" / img["file_name"])
                           .convert("RGB"))
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        objects = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                             a["bbox"][1] + a["bbox"][3]] for a in anns]).reshape(-1, 4)
        for ann, box in zip(anns[:3], objects[:3], strict=False):
            bg = _background_box(box, objects, *image.shape[:2])
            if bg is None or names[ann["category_id"]] not in det.class_names:
                continue
            cls = det.class_names.index(names[ann["category_id"]])
            on = G.layer_heatmaps(det, image, box, cls, layers=[16, 19], imgsz=320)
            off = G.layer_heatmaps(det, image, bg, cls, layers=[16, 19], imgsz=320)
            obj_heat.append(np.mean([_mean_inside(on[k], box) for k in on]))
            bg_heat.append(np.mean([_mean_inside(off[k], bg) for k in off]))
    assert len(obj_heat) >= 3, "too few objects with a free background box"
    assert np.mean(obj_heat) > np.mean(bg_heat)
