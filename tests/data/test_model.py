"""audit.data.model against ultralytics' own computations on an untrained tiny YOLO11.

Every expected value is computed here by a separate path: a second ``YOLO(path)`` instance,
its own hooks, ultralytics' ``predict`` / ``model.loss`` / ``embed=``, and ``roi_align`` called
directly with boxes mapped into the letterbox by hand.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align
from ultralytics import YOLO
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.data.augment import LetterBox
from ultralytics.utils import IterableSimpleNamespace

from audit import constants as C
from audit.data import checkpoint
from audit.data import losses as L
from audit.data import model as M
from audit.data.checkpoint import load_detector
from tests.data.conftest import draw_scene

IMGSZ = 320
LAYERS = (16, 19, 22)


@pytest.fixture(scope="module")
def detector(tiny_checkpoint: Path) -> M.Detector:
    """The tiny checkpoint loaded through the module under test."""
    with pytest.warns(UserWarning, match="pickle"):
        checkpoint._PICKLE_WARNED = False
        return load_detector(tiny_checkpoint)


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A landscape and a portrait scene (different sizes in one batch)."""
    return [draw_scene(1, 240, 400), draw_scene(2, 300, 200, n_objects=2)]


@pytest.fixture(scope="module")
def results(detector, scenes) -> list[M.ForwardResult]:
    """One forward over both scenes with their ground truth."""
    gts = [M.GroundTruth(b, c) for _, b, c in scenes]
    return detector.forward([s[0] for s in scenes], gts, imgsz=IMGSZ, feature_conf=0.2)


def _reference_net(path: Path) -> torch.nn.Module:
    """A second, independent copy of the checkpoint's nn.Module in eval mode."""
    return YOLO(str(path)).model.eval()


def _letterbox(image: np.ndarray) -> tuple[torch.Tensor, float, float, float, float]:
    """(1,3,S,S) input, and (gain_x, gain_y, pad_x, pad_y) computed by hand."""
    h, w = image.shape[:2]
    r = min(IMGSZ / h, IMGSZ / w)
    new_w, new_h = round(w * r), round(h * r)
    pad_x, pad_y = round((IMGSZ - new_w) / 2 - 0.1), round((IMGSZ - new_h) / 2 - 0.1)
    boxed = LetterBox((IMGSZ, IMGSZ), auto=False)(image=image)
    x = torch.from_numpy(boxed).permute(2, 0, 1)[None].float() / 255.0
    return x, new_w / w, new_h / h, pad_x, pad_y


def _hooked_maps(net: torch.nn.Module, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Outputs of LAYERS for input x, captured with hooks owned by the test."""
    maps: dict[int, torch.Tensor] = {}
    hs = [net.model[i].register_forward_hook(lambda _m, _i, o, i=i: maps.__setitem__(i, o))
          for i in LAYERS]
    with torch.no_grad():
        net(x)
    for h in hs:
        h.remove()
    return maps


def _unit_blocks(blocks: list[np.ndarray]) -> np.ndarray:
    """Each block L2-normalised to 1/sqrt(L), concatenated (the documented normalisation)."""
    return np.concatenate([b / np.linalg.norm(b) / np.sqrt(len(blocks)) for b in blocks])


def test_detector_attributes(detector, tiny_checkpoint):
    assert detector.class_names == ["ball", "crate", "book"]
    assert detector.path == tiny_checkpoint
    assert detector.layers == C.EMBED_LAYERS
    assert detector.n_layers == 24
    names = detector.layer_names()
    assert len(names) == 24 and names[16] == "16: C3k2" and names[23] == "23: Detect"


def test_result_shapes_and_types(results, scenes):
    for r, (image, boxes, _) in zip(results, scenes, strict=True):
        n = len(r.pred_boxes)
        assert 0 < n <= C.MAX_DET
        assert r.pred_conf.shape == (n,) and r.pred_cls.shape == (n,)
        assert r.pred_features.shape == (n, C.BOX_FEATURE_DIM)
        assert r.gt_features.shape == (len(boxes), C.BOX_FEATURE_DIM)
        assert r.embedding.shape == (448,) and r.embedding.dtype == np.float32
        assert r.image_size == image.shape[:2]
        assert r.loss.shape == (3,) and np.isfinite(r.loss).all()
        h, w = image.shape[:2]
        assert (r.pred_boxes >= 0).all() and (r.pred_boxes[:, [0, 2]] <= w).all()
        assert (r.pred_boxes[:, [1, 3]] <= h).all()


def test_predictions_match_ultralytics_predict(results, scenes, tiny_checkpoint):
    """Same boxes as YOLO.predict with a square letterbox (rect=False; its default is rect=True).

    Tolerance: predict runs the Conv+BN-fused copy of the model (AutoBackend fuse=True), so
    floats differ in the last bits: ~1e-2 px on boxes and ~1e-4 on confidences.
    """
    yolo = YOLO(str(tiny_checkpoint))
    for r, (image, _, _) in zip(results, scenes, strict=True):
        ref = yolo.predict(image[..., ::-1].copy(), imgsz=IMGSZ, conf=C.PRED_CONF, iou=C.PRED_IOU,
                           max_det=C.MAX_DET, rect=False, verbose=False)[0].boxes
        boxes, conf, cls = ref.xyxy.numpy(), ref.conf.numpy(), ref.cls.numpy().astype(int)
        assert len(boxes) == len(r.pred_boxes)
        top = np.argsort(-conf)[:20]  # the confident ones, away from near-ties at the tail
        for b, c, k in zip(boxes[top], conf[top], cls[top], strict=True):
            dist = np.abs(r.pred_boxes - b).max(1) + 100 * (r.pred_cls != k)
            j = int(np.argmin(dist))
            assert dist[j] < 1.0, f"no prediction within 1 px of {b}"
            assert abs(r.pred_conf[j] - c) < 1e-3


def test_embedding_equals_pooled_hook_output(results, scenes, tiny_checkpoint):
    net = _reference_net(tiny_checkpoint)
    for r, (image, _, _) in zip(results, scenes, strict=True):
        maps = _hooked_maps(net, _letterbox(image)[0])
        pooled = [maps[i][0].mean((1, 2)).numpy() for i in LAYERS]
        np.testing.assert_allclose(r.embedding, _unit_blocks(pooled), atol=1e-5)
        assert np.linalg.norm(r.embedding) == pytest.approx(1.0, abs=1e-5)


def test_embedding_equals_ultralytics_embed(results, scenes, tiny_checkpoint):
    """ultralytics' own ``embed=`` (raw pooled, concatenated) agrees after block normalisation."""
    image = scenes[0][0]
    raw = YOLO(str(tiny_checkpoint)).predict(image[..., ::-1].copy(), imgsz=IMGSZ, rect=False,
                                             embed=list(LAYERS), verbose=False)[0].numpy()
    blocks = np.split(raw, np.cumsum([64, 128])) if raw.shape == (448,) else None
    assert blocks is not None, f"unexpected embed shape {raw.shape}"
    np.testing.assert_allclose(results[0].embedding, _unit_blocks(blocks), atol=1e-4)


def test_gt_box_feature_equals_direct_roi_align(results, scenes, tiny_checkpoint):
    net = _reference_net(tiny_checkpoint)
    proj = np.random.default_rng(C.BOX_FEATURE_SEED).standard_normal((448, C.BOX_FEATURE_DIM))
    proj /= np.sqrt(C.BOX_FEATURE_DIM)
    for r, (image, boxes, _) in zip(results, scenes, strict=True):
        x, gx, gy, px, py = _letterbox(image)
        maps = _hooked_maps(net, x)
        lb = boxes * np.array([gx, gy, gx, gy], np.float32) + np.array([px, py, px, py])
        rois = torch.cat([torch.zeros(len(lb), 1), torch.from_numpy(lb).float()], 1)
        for k in range(len(boxes)):
            blocks = [roi_align(maps[i], rois[k : k + 1], 2, maps[i].shape[-1] / IMGSZ, 2, True)
                      .mean((2, 3))[0].numpy() for i in LAYERS]
            np.testing.assert_allclose(r.gt_features[k], _unit_blocks(blocks) @ proj, atol=1e-4)


def test_pred_features_nan_only_below_feature_conf(results):
    for r in results:
        nan_rows = np.isnan(r.pred_features).all(1)
        assert (nan_rows == (r.pred_conf < 0.2)).all()
        assert np.isfinite(r.pred_features[~nan_rows]).all()
    assert any((r.pred_conf >= 0.2).any() for r in results), "fixture gives no confident box"


def test_same_box_gives_same_feature_as_prediction(detector, scenes):
    """A gt box placed exactly on a prediction gets that prediction's feature."""
    image = scenes[0][0]
    first = detector.forward([image], imgsz=IMGSZ, feature_conf=0.0)[0]
    h, w = image.shape[:2]
    b = first.pred_boxes  # boxes touching the border were clipped, so skip those
    inner = np.flatnonzero((b[:, :2] > 1).all(1) & (b[:, 2] < w - 1) & (b[:, 3] < h - 1))[:3]
    assert len(inner), "no prediction away from the border"
    gt = M.GroundTruth(b[inner], first.pred_cls[inner])
    second = detector.forward([image], [gt], imgsz=IMGSZ, feature_conf=0.0)[0]
    np.testing.assert_allclose(second.gt_features, first.pred_features[inner], atol=1e-3)


def _reference_loss(net: torch.nn.Module, image: np.ndarray, boxes: np.ndarray,
                    classes: np.ndarray) -> np.ndarray:
    """ultralytics' model.loss on the single-image letterboxed batch, as its validator calls it."""
    args = net.args if isinstance(net.args, dict) else vars(net.args)
    net.args = IterableSimpleNamespace(**{**DEFAULT_CFG_DICT, **args})
    x, gx, gy, px, py = _letterbox(image)
    lb = boxes * np.array([gx, gy, gx, gy]) + np.array([px, py, px, py])
    xywh = np.stack([(lb[:, 0] + lb[:, 2]) / 2, (lb[:, 1] + lb[:, 3]) / 2,
                     lb[:, 2] - lb[:, 0], lb[:, 3] - lb[:, 1]], 1).reshape(-1, 4) / IMGSZ
    batch = {"img": x, "batch_idx": torch.zeros(len(boxes)),
             "cls": torch.tensor(classes, dtype=torch.float32).view(-1, 1),
             "bboxes": torch.tensor(xywh, dtype=torch.float32)}
    with torch.no_grad():
        total, _ = net.loss(batch)
    return total.numpy()


def test_loss_equals_ultralytics_model_loss(results, scenes, tiny_checkpoint):
    """Per image, batched forward == ultralytics' loss of that image alone (eval-mode network,
    the training criterion with the checkpoint's gains, as DetectionValidator computes val loss)."""
    net = _reference_net(tiny_checkpoint)
    for r, (image, boxes, classes) in zip(results, scenes, strict=True):
        expected = _reference_loss(net, image, boxes, classes)
        np.testing.assert_allclose(r.loss, expected, rtol=1e-4, atol=1e-5)
        assert (r.loss > 0).all()


def test_loss_without_objects_is_pure_classification(detector, scenes, tiny_checkpoint):
    image = scenes[0][0]
    empty = M.GroundTruth(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    loss = detector.forward([image], [empty], imgsz=IMGSZ)[0].loss
    expected = _reference_loss(_reference_net(tiny_checkpoint), image, np.zeros((0, 4)),
                               np.zeros(0))
    np.testing.assert_allclose(loss, expected, rtol=1e-4, atol=1e-6)
    assert loss[0] == 0 and loss[2] == 0 and loss[1] > 0


def test_loss_of_a_mixed_batch_equals_each_image_alone(detector, scenes):
    """One assignment for a batch with boxes, no boxes and no ground truth at all gives each
    image the loss it gets alone (which test_loss_equals_ultralytics_model_loss ties to
    ultralytics), and the per-image criterion call gives the same numbers."""
    (a, boxes_a, cls_a), (b, boxes_b, cls_b) = scenes
    empty = M.GroundTruth(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    images = [a, b, a, b]
    gts = [M.GroundTruth(boxes_a, cls_a), empty, None, M.GroundTruth(boxes_b, cls_b)]
    batched = [r.loss for r in detector.forward(images, gts, imgsz=IMGSZ)]
    alone = [detector.forward([im], [g], imgsz=IMGSZ)[0].loss for im, g in zip(images, gts,
                                                                              strict=True)]
    for got, want in zip(batched, alone, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert np.isnan(batched[2]).all() and batched[1][0] == 0 and batched[1][1] > 0
    # the fallback for other head outputs: one criterion call per image
    frames = [M.letterbox_image(im, IMGSZ)[1] for im in images]
    x = detector.to_tensor([M.letterbox_image(im, IMGSZ)[0] for im in images])
    targets = L.loss_targets(gts, frames, x.device)
    with torch.inference_mode():
        _, raw = detector.net(x)
        single = [L.single_image_loss(detector._criterion, raw, i, targets, x) for i in (0, 1, 3)]
    for got, want in zip(single, [batched[0], batched[1], batched[3]], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_loss_nan_without_ground_truth(detector, scenes):
    r = detector.forward([scenes[0][0]], imgsz=IMGSZ)[0]
    assert np.isnan(r.loss).all() and r.gt_features.shape == (0, C.BOX_FEATURE_DIM)


def test_labels_change_loss_but_not_the_rest(detector, scenes):
    """Shifted labels give another loss; predictions and embedding do not depend on labels."""
    image, boxes, classes = scenes[0]
    shifted = boxes + np.array([60, 40, 60, 40], np.float32)
    shifted[:, [0, 2]] = shifted[:, [0, 2]].clip(0, image.shape[1] - 1)
    shifted[:, [1, 3]] = shifted[:, [1, 3]].clip(0, image.shape[0] - 1)
    good, bad = detector.forward([image, image], [M.GroundTruth(boxes, classes),
                                                  M.GroundTruth(shifted, classes)], imgsz=IMGSZ)
    assert not np.allclose(good.loss, bad.loss)
    np.testing.assert_allclose(good.embedding, bad.embedding, atol=1e-6)
    np.testing.assert_allclose(good.pred_boxes, bad.pred_boxes, atol=1e-3)


def test_batch_does_not_change_per_image_results(detector, scenes, results):
    image, boxes, classes = scenes[1]
    alone = detector.forward([image], [M.GroundTruth(boxes, classes)], imgsz=IMGSZ,
                             feature_conf=0.2)[0]
    np.testing.assert_allclose(alone.loss, results[1].loss, rtol=1e-4)
    np.testing.assert_allclose(alone.embedding, results[1].embedding, atol=1e-5)
    np.testing.assert_allclose(alone.pred_boxes, results[1].pred_boxes, atol=1e-2)


def test_predict_bare_leaves_forward_unchanged(detector, scenes):
    """The bare-predict benchmark path shares no state with forward (nor torch's thread count)."""
    images = [s[0] for s in scenes]
    before = detector.forward(images, imgsz=IMGSZ)
    threads = torch.get_num_threads()
    assert detector.predict_bare(images, imgsz=IMGSZ) is None
    assert torch.get_num_threads() == threads
    after = detector.forward(images, imgsz=IMGSZ)
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a.pred_boxes, b.pred_boxes)
        np.testing.assert_array_equal(a.embedding, b.embedding)


def test_box_projection_is_fixed_and_keeps_distances():
    p = M.box_projection(448)
    assert p.shape == (448, C.BOX_FEATURE_DIM) and not p.flags.writeable
    np.testing.assert_array_equal(p, M.box_projection(448))
    x = np.random.default_rng(0).standard_normal((50, 448)).astype(np.float32)
    d_in = np.linalg.norm(x[:, None] - x[None], axis=-1)[np.triu_indices(50, 1)]
    d_out = np.linalg.norm((x @ p)[:, None] - (x @ p)[None], axis=-1)[np.triu_indices(50, 1)]
    ratio = d_out / d_in
    assert abs(np.median(ratio) - 1.0) < 0.1 and ratio.min() > 0.5 and ratio.max() < 1.5


def test_empty_batch(detector):
    assert detector.forward([], imgsz=IMGSZ) == []


@pytest.mark.parametrize(("images", "gt", "kwargs", "match"), [
    ([np.zeros((10, 10), np.uint8)], None, {}, "image 0: expected an HxWx3 uint8"),
    ([np.zeros((10, 10, 3), np.float32)], None, {}, "image 0: expected an HxWx3 uint8"),
    ([np.zeros((10, 10, 3), np.uint8)], [], {}, "1 images but 0 ground truths"),
    ([np.zeros((10, 10, 3), np.uint8)], [M.GroundTruth(np.zeros((1, 3)), np.zeros(1))], {},
     "image 0: ground truth needs boxes"),
    ([np.zeros((10, 10, 3), np.uint8)], [M.GroundTruth(np.array([[5, 5, 1, 9.0]]), np.zeros(1))],
     {}, "x2>=x1"),
    ([np.zeros((10, 10, 3), np.uint8)], [M.GroundTruth(np.array([[1, 1, 5, 5.0]]), np.array([7]))],
     {}, r"class ids must be in \[0, 2\]"),
    ([np.zeros((10, 10, 3), np.uint8)], None, {"layers": (23,)}, "Detect head excluded"),
    ([np.zeros((10, 10, 3), np.uint8)], None, {"imgsz": 300}, "multiple of 32"),
])
def test_forward_rejects_bad_input(detector, images, gt, kwargs, match):
    with pytest.raises(ValueError, match=match):
        detector.forward(images, gt, **{"imgsz": IMGSZ, **kwargs})


def _classification_checkpoint(path: Path) -> None:
    YOLO("yolo11n-cls.yaml").save(path)


@pytest.mark.parametrize(("writer", "match"), [
    (None, "model file not found"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(2048)), "not a PyTorch checkpoint"),
    (lambda p: p.write_bytes(pickle.dumps({"model": "nothing here", "epoch": 3})),
     "not a PyTorch checkpoint"),
    (lambda p: torch.save({"model": "nothing here", "epoch": 3}, p), "not a PyTorch checkpoint"),
    (_classification_checkpoint, "found a classification model"),
])
def test_load_rejects_bad_checkpoints(tmp_path, writer, match):
    path = tmp_path / "model.pt"
    if writer is not None:
        writer(path)
    with pytest.raises(ValueError, match=match) as err:
        load_detector(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("prefix", [b"", b"\x80", b"\x80\x02", b"PK\x03\x04"])
def test_random_bytes_are_always_called_damaged(tmp_path, prefix):
    """Garbage fails torch's unpickler with whatever error its bytes happen to hit (ValueError
    'unregistered extension code', KeyError, UnicodeDecodeError, ...): the message must not
    depend on which. Forty draws per prefix (pickle's protocol opcode, a zip's local header)."""
    rng = np.random.default_rng(7)
    path = tmp_path / "model.pt"
    for draw in range(40):
        path.write_bytes(prefix + rng.bytes(int(rng.integers(1, 4096))))
        with pytest.raises(ValueError) as err:
            load_detector(path)
        assert "empty, truncated or corrupted" in str(err.value), (draw, str(err.value))
        assert str(path) in str(err.value)


def test_load_rejects_non_pt_file(tmp_path):
    path = tmp_path / "yolo11n.yaml"
    path.write_text("nc: 3\n")
    with pytest.raises(ValueError, match=r"yolo11n\.yaml: expected an ultralytics \.pt"):
        load_detector(path)


def test_load_warns_about_pickles_once(tiny_checkpoint, monkeypatch):
    import warnings

    monkeypatch.setattr(checkpoint, "_PICKLE_WARNED", False)
    with pytest.warns(UserWarning, match="trusted source"):
        load_detector(tiny_checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_detector(tiny_checkpoint)
