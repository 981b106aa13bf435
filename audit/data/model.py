"""One forward pass of a YOLO11 detector: predictions, embeddings, per-box features, per-image loss.

The only module (with ``gradcam.py``) that runs the torch model. A batch of RGB images is
letterboxed to a square, run once through the detector's ``nn.Module`` with forward hooks on the
chosen layers, and from that single pass come:

- predictions: ultralytics' NMS, boxes scaled back to the original image (absolute ``xyxy`` px);
- the image embedding: global-average-pooled hooked maps, each layer block L2-normalised to norm
  ``1/sqrt(L)`` (L = number of hooked layers), so every layer weighs the same and the
  concatenation has unit norm (448-d for layers 16, 19, 22 of yolo11n);
- per-box features: ``torchvision.ops.roi_align`` (2x2 bins, averaged) of every hooked map,
  normalised per layer block the same way, then reduced to ``C.BOX_FEATURE_DIM`` by a fixed
  Gaussian random projection (Johnson-Lindenstrauss: pairwise distances are kept up to a small
  relative error, so features of 100k-image datasets fit in memory);
- the per-image loss: ultralytics' own detection criterion on that image's raw head outputs alone,
  as (box, cls, dfl) after the hyperparameter gains (higher = the model fits the labels worse;
  :mod:`audit.data.losses`).

Loading and validating a checkpoint: :mod:`audit.data.checkpoint`.

Example:
    >>> det = load_detector("demo_yolo11n.pt")  # doctest: +SKIP
    >>> res = det.forward([image], [GroundTruth(boxes, class_ids)], imgsz=320)  # doctest: +SKIP
    >>> res[0].pred_boxes.shape, res[0].embedding.shape, res[0].loss  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torchvision.ops import roi_align

from audit import constants as C
from audit.data.losses import image_losses


@dataclass(frozen=True)
class GroundTruth:
    """Ground truth of one image: boxes ``(M, 4)`` absolute-px ``xyxy``, class_ids ``(M,)``."""

    boxes: NDArray[np.float32]
    class_ids: NDArray[np.int64]


@dataclass
class ForwardResult:
    """Everything one forward pass yields for one image.

    Attributes:
        pred_boxes: ``(N, 4)`` float32 ``xyxy`` absolute px in the original image.
        pred_conf: ``(N,)`` float32 confidence in [0, 1] (higher = more sure).
        pred_cls: ``(N,)`` int64 class ids.
        pred_features: ``(N, F)`` float32; NaN rows where ``pred_conf < feature_conf``.
        gt_features: ``(M, F)`` float32, rows aligned with the given ground truth.
        probe_features: ``(K, F)`` float32, rows aligned with the given probe boxes.
        embedding: ``(D,)`` float32 unit-norm image embedding.
        loss: ``(3,)`` float32 (box, cls, dfl) loss of this image alone; NaN when no gt was given.
        image_size: ``(height, width)`` of the original image in px.
    """

    pred_boxes: NDArray[np.float32]
    pred_conf: NDArray[np.float32]
    pred_cls: NDArray[np.int64]
    pred_features: NDArray[np.float32]
    gt_features: NDArray[np.float32]
    embedding: NDArray[np.float32]
    loss: NDArray[np.float32]
    image_size: tuple[int, int]
    probe_features: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class LetterboxFrame:
    """Where an original ``(height, width)`` image sits inside the ``imgsz`` square letterbox."""

    height: int
    width: int
    new_h: int
    new_w: int
    top: int
    left: int
    imgsz: int

    def to_letterbox(self, boxes: NDArray) -> NDArray[np.float32]:
        """Map ``(K, 4)`` original-image ``xyxy`` px into the letterboxed input."""
        gain = np.array([self.new_w / self.width, self.new_h / self.height] * 2, np.float32)
        pad = np.array([self.left, self.top] * 2, np.float32)
        return np.asarray(boxes, np.float32).reshape(-1, 4) * gain + pad


def letterbox_image(image: NDArray[np.uint8],
                    imgsz: int) -> tuple[NDArray[np.uint8], LetterboxFrame]:
    """Letterbox ``HxWx3`` uint8 to an ``imgsz`` square as ultralytics' predictor does."""
    from ultralytics.data.augment import LetterBox

    lb = LetterBox((imgsz, imgsz), auto=False, scale_fill=False, center=True)
    params = lb.get_params({"img": image})
    boxed = lb.apply_image({"img": image}, params)["img"]
    new_w, new_h = params["new_unpad"]
    frame = LetterboxFrame(image.shape[0], image.shape[1], new_h, new_w,
                           params["top"], params["left"], imgsz)
    return boxed, frame


def validate_image(image: Any, index: int) -> None:
    """Raise ValueError unless ``image`` is an ``HxWx3`` uint8 array."""
    ok = isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
    if not ok or image.dtype != np.uint8 or 0 in image.shape:
        got = f"shape {getattr(image, 'shape', None)} dtype {getattr(image, 'dtype', type(image))}"
        raise ValueError(f"image {index}: expected an HxWx3 uint8 RGB array, got {got}")


@lru_cache(maxsize=8)
def box_projection(dim_in: int, dim_out: int = C.BOX_FEATURE_DIM,
                   seed: int = C.BOX_FEATURE_SEED) -> NDArray[np.float32]:
    """Fixed Gaussian random projection ``(dim_in, dim_out)``, entries N(0, 1/dim_out), read-only.

    ``x @ P`` keeps squared norms in expectation (Johnson-Lindenstrauss), and the same seed gives
    the same matrix on every machine, so features of one dataset stay comparable.
    """
    rng = np.random.default_rng(seed)
    proj = (rng.standard_normal((dim_in, dim_out)) / math.sqrt(dim_out)).astype(np.float32)
    proj.flags.writeable = False
    return proj


def _block_normalise(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Scale each ``(K, C_l)`` block to L2 norm ``1/sqrt(L)``; concatenate to ``(K, sum C_l)``."""
    scale = 1.0 / math.sqrt(len(blocks))
    return torch.cat([torch.nn.functional.normalize(b.float(), dim=1) * scale for b in blocks], 1)


class Detector:
    """A loaded YOLO detection checkpoint; see :func:`load_detector`.

    Attributes:
        path: the checkpoint file.
        class_names: class names, index = class id.
        layers: model layer indices hooked for embeddings and box features.
        device: torch device string.
    """

    def __init__(self, yolo: Any, path: Path, *, device: str, layers: Sequence[int]) -> None:
        """Wrap an ultralytics ``YOLO`` detection model on ``device`` (use load_detector)."""
        self.path = Path(path)
        self.device = device
        self.net = yolo.model.eval()
        names = self.net.names
        self.class_names = [str(names[i]) for i in range(len(names))]
        self.layers = self.check_layers(layers)
        self._criterion = self._build_criterion()
        self._bare: Any = None

    @property
    def n_layers(self) -> int:
        """Number of modules in the model (the last one is the Detect head)."""
        return len(self.net.model)

    def layer_names(self) -> list[str]:
        """``"<index>: <module type>"`` for every layer, e.g. ``"16: C3k2"``."""
        return [f"{i}: {str(getattr(m, 'type', type(m).__name__)).rsplit('.', 1)[-1]}"
                for i, m in enumerate(self.net.model)]

    def check_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        """Validate hookable layer indices (any layer but the Detect head); ValueError if not."""
        out = tuple(int(x) for x in layers)
        bad = [x for x in out if not 0 <= x < self.n_layers - 1]
        if not out or bad or len(set(out)) != len(out):
            raise ValueError(f"{self.path}: layers must be distinct indices in [0, "
                             f"{self.n_layers - 2}] (the Detect head excluded), got {list(layers)}")
        return out

    def _build_criterion(self) -> Any:
        """The model's own loss (v8DetectionLoss for YOLO11) with its checkpoint's gains."""
        from ultralytics.cfg import DEFAULT_CFG_DICT
        from ultralytics.utils import IterableSimpleNamespace

        args = self.net.args if isinstance(self.net.args, dict) else vars(self.net.args)
        saved = self.net.args
        self.net.args = IterableSimpleNamespace(**{**DEFAULT_CFG_DICT, **args})
        try:
            return self.net.init_criterion()
        finally:
            self.net.args = saved

    @contextmanager
    def hooked(self, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
        """Forward hooks on ``layers``; yields a dict filled with each layer's output per pass."""
        maps: dict[int, torch.Tensor] = {}
        handles = [self.net.model[i].register_forward_hook(
            lambda _m, _inp, out, i=i: maps.__setitem__(i, out)) for i in layers]
        try:
            yield maps
        finally:
            for h in handles:
                h.remove()

    def to_tensor(self, boxed: list[NDArray[np.uint8]]) -> torch.Tensor:
        """Stack letterboxed RGB uint8 ``HxWx3`` images into a float ``(B, 3, S, S)`` in [0, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(np.stack(boxed))).to(self.device)
        return x.permute(0, 3, 1, 2).float().div_(255.0)

    def forward(self, images: list[NDArray[np.uint8]],
                gt: list[GroundTruth | None] | None = None, *, imgsz: int = C.IMGSZ,
                conf: float = C.PRED_CONF, iou: float = C.PRED_IOU,
                max_det: int = C.MAX_DET, feature_conf: float = C.FEATURE_CONF,
                layers: Sequence[int] | None = None,
                probes: list[NDArray | None] | None = None) -> list[ForwardResult]:
        """Run one forward pass over a batch and return one :class:`ForwardResult` per image.

        Args:
            images: ``HxWx3`` uint8 RGB arrays (sizes may differ).
            gt: optional ground truth per image (same length); without it (or for a None
                entry) ``loss`` is NaN.
            imgsz: letterbox side in px (a multiple of the model stride, 32).
            conf: minimum confidence kept by NMS.
            iou: NMS IoU threshold.
            max_det: predictions kept per image.
            feature_conf: predictions below this confidence get NaN feature rows.
            layers: hooked layer indices (default ``self.layers``).
            probes: optional ``(K, 4)`` absolute px ``xyxy`` boxes per image whose features
                are wanted too (``probe_features``).

        Returns:
            Results aligned with ``images``; boxes absolute-px ``xyxy`` in the original image.
        """
        layers = self.check_layers(self.layers if layers is None else layers)
        gts = self._check_inputs(images, gt, imgsz)
        if not images:
            return []
        boxed, frames = zip(*(letterbox_image(im, imgsz) for im in images), strict=True)
        x = self.to_tensor(list(boxed))
        with torch.inference_mode(), self.hooked(layers) as maps:
            y, raw = self.net(x)
            dets = self._nms(y, conf, iou, max_det)
            blocks = [maps[i] for i in layers]
            emb = _block_normalise([b.mean((2, 3)) for b in blocks]).cpu().numpy()
            extra = list(probes) if probes is not None else [None] * len(images)
            feats = self._box_features(blocks, dets, gts, frames, feature_conf, imgsz, extra)
            losses = image_losses(self._criterion, raw, gts, frames, x)
        return [self._result(d, f, emb[i], feats[i], losses[i])
                for i, (d, f) in enumerate(zip(dets, frames, strict=True))]

    def _check_inputs(self, images: list, gt: list | None, imgsz: int) -> list[GroundTruth | None]:
        """Validate images, ground truth and imgsz; return gt per image (None if absent)."""
        if imgsz <= 0 or imgsz % 32:
            raise ValueError(f"{self.path}: imgsz must be a positive multiple of 32, got {imgsz}")
        for i, im in enumerate(images):
            validate_image(im, i)
        if gt is None:
            return [None] * len(images)
        if len(gt) != len(images):
            raise ValueError(f"got {len(images)} images but {len(gt)} ground truths")
        nc = len(self.class_names)
        for i, g in enumerate(gt):
            if g is None:  # this image has no ground truth: no loss
                continue
            b, c = np.asarray(g.boxes), np.asarray(g.class_ids)
            if b.ndim != 2 or b.shape[1] != 4 or c.shape != (len(b),) or not np.isfinite(b).all():
                raise ValueError(f"image {i}: ground truth needs boxes (M, 4) finite and "
                                 f"class_ids (M,), got {b.shape} and {c.shape}")
            if len(b) and ((b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any()):
                raise ValueError(f"image {i}: ground-truth boxes must be xyxy with x2>=x1, y2>=y1")
            if len(c) and (c.min() < 0 or c.max() >= nc):
                raise ValueError(f"image {i}: class ids must be in [0, {nc - 1}], got "
                                 f"{sorted(set(c.tolist()))}")
        return list(gt)

    def _nms(self, y: torch.Tensor, conf: float, iou: float, max_det: int) -> list[torch.Tensor]:
        """ultralytics NMS on decoded head output; ``(N, 6)`` per image in letterbox px."""
        from ultralytics.utils import nms

        return nms.non_max_suppression(y, conf, iou, max_det=max_det, nc=0,
                                       end2end=bool(getattr(self.net, "end2end", False)))

    def _box_features(self, blocks: list[torch.Tensor], dets: list[torch.Tensor],
                      gts: list[GroundTruth | None], frames: Sequence[LetterboxFrame],
                      feature_conf: float, imgsz: int,
                      probes: list[NDArray | None]) -> list[tuple[NDArray, NDArray, NDArray]]:
        """Per image (pred ``(N, F)``, gt ``(M, F)``, probe ``(K, F)``) features from one
        roi_align per layer."""
        rois, spans = [], []
        for i, (d, g, fr, pb) in enumerate(zip(dets, gts, frames, probes, strict=True)):
            keep = (d[:, 4] >= feature_conf).nonzero().flatten()
            gt_lb = torch.from_numpy(fr.to_letterbox(np.zeros((0, 4)) if g is None else g.boxes))
            pb_lb = torch.from_numpy(fr.to_letterbox(np.zeros((0, 4)) if pb is None else pb))
            boxes = torch.cat([d[keep, :4].float(), gt_lb.to(d.device), pb_lb.to(d.device)])
            rois.append(torch.cat([boxes.new_full((len(boxes), 1), i), boxes], 1))
            spans.append((keep.cpu().numpy(), len(d), len(gt_lb), len(pb_lb)))
        all_rois = torch.cat(rois)
        per_layer = [roi_align(b.float(), all_rois, output_size=2,
                               spatial_scale=b.shape[-1] / imgsz, sampling_ratio=2,
                               aligned=True).mean((2, 3)) for b in blocks]
        proj = box_projection(sum(b.shape[1] for b in blocks))
        feats = (_block_normalise(per_layer).cpu().numpy() @ proj).astype(np.float32)
        out, start = [], 0
        for keep, n_pred, n_gt, n_probe in spans:
            pred = np.full((n_pred, proj.shape[1]), np.nan, np.float32)
            pred[keep] = feats[start : start + len(keep)]
            start += len(keep)
            out.append((pred, feats[start : start + n_gt],
                        feats[start + n_gt : start + n_gt + n_probe]))
            start += n_gt + n_probe
        return out

    @staticmethod
    def _result(det: torch.Tensor, frame: LetterboxFrame, emb: NDArray,
                feats: tuple[NDArray, NDArray, NDArray], loss: NDArray) -> ForwardResult:
        """Scale letterbox predictions back to the original image and package one result."""
        from ultralytics.utils.ops import scale_boxes

        boxes = scale_boxes((frame.imgsz, frame.imgsz), det[:, :4].clone().float(),
                            (frame.height, frame.width))
        return ForwardResult(
            pred_boxes=boxes.cpu().numpy().astype(np.float32),
            pred_conf=det[:, 4].float().cpu().numpy(), pred_cls=det[:, 5].long().cpu().numpy(),
            pred_features=feats[0], gt_features=feats[1], embedding=emb.astype(np.float32),
            loss=loss, image_size=(frame.height, frame.width), probe_features=feats[2])

    def predict_bare(self, images: list[NDArray[np.uint8]], *, imgsz: int = C.IMGSZ,
                     conf: float = C.PRED_CONF) -> None:
        """Plain ``YOLO(path).predict`` on the RGB images (a separate instance), for benchmarks."""
        from ultralytics import YOLO

        if self._bare is None:
            self._bare = YOLO(str(self.path))
        if images:
            threads = torch.get_num_threads()  # ultralytics' device selection lowers it
            try:
                self._bare.predict([im[..., ::-1] for im in images], imgsz=imgsz, conf=conf,
                                   device=self.device, verbose=False)
            finally:
                torch.set_num_threads(threads)
