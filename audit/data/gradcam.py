"""Per-layer Grad-CAM-like heatmaps for one box of one image, and a numpy colour overlay.

For a chosen box and class, one forward pass with gradients records every chosen layer's output
``A`` (``C x h x w``); the target is the class logit of the Detect head, averaged over the anchors
whose centre lies inside the box, weighted by the IoU of each anchor's decoded box with the chosen
box (the best-overlapping anchor alone when no centre is inside). One backward pass gives
``dtarget/dA``; per layer the channel weights are the mean gradient per channel and
``cam = ReLU(sum_c w_c A_c)``. Each map is upsampled to the letterboxed input, the padding is cut
off, it is resized to the original image and divided by its maximum: values in [0, 1], higher =
the layer's evidence for that class at that place; an all-zero map stays zero.

Example:
    >>> box = np.array([10, 20, 80, 90])
    >>> maps = layer_heatmaps(det, image, box, 0, layers=[4, 16, 22])  # doctest: +SKIP
    >>> tinted = overlay(image, maps[16])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torchvision.ops import box_iou

from audit import constants as C
from audit.data.model import Detector, LetterboxFrame, letterbox_image, validate_image


def layer_heatmaps(detector: Detector, image: NDArray[np.uint8], box_xyxy: NDArray,
                   class_id: int, *, layers: Sequence[int],
                   imgsz: int = C.IMGSZ) -> dict[int, NDArray[np.float32]]:
    """Grad-CAM-like heatmap of each chosen layer for one box and class.

    Args:
        detector: a loaded :class:`~audit.data.model.Detector`.
        image: ``HxWx3`` uint8 RGB.
        box_xyxy: ``(4,)`` absolute-px ``xyxy`` box in ``image``.
        class_id: class whose logit is explained, in ``[0, len(detector.class_names))``.
        layers: model layer indices (any but the Detect head).
        imgsz: letterbox side in px, a multiple of 32.

    Returns:
        ``{layer: (H, W) float32 in [0, 1]}``; higher = more evidence for ``class_id`` there.
    """
    layers = detector.check_layers(layers)
    box = _check_inputs(detector, image, box_xyxy, class_id, imgsz)
    boxed, frame = letterbox_image(image, imgsz)
    x = detector.to_tensor([boxed]).requires_grad_(True)
    head = detector.net.model[-1]
    head.shape = None  # rebuild cached anchors here: ones made under inference_mode can't backprop
    with torch.enable_grad(), detector.hooked(layers) as maps:
        y, raw = detector.net(x)
        target = _target_logit(y, raw, frame.to_letterbox(box)[0], int(class_id), head)
        acts = [maps[i] for i in layers]
        grads = torch.autograd.grad(target, acts, allow_unused=True)
    return {i: _cam(a, g, frame) for i, a, g in zip(layers, acts, grads, strict=True)}


def _check_inputs(detector: Detector, image: NDArray, box_xyxy: NDArray, class_id: int,
                  imgsz: int) -> NDArray[np.float32]:
    """Validate the image, box, class and size; return the box as ``(4,)`` float32."""
    validate_image(image, 0)
    box = np.asarray(box_xyxy, np.float32).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box must be a finite (4,) xyxy array with x2>x1, y2>y1, got {box_xyxy}")
    n_classes = len(detector.class_names)
    if not 0 <= int(class_id) < n_classes:
        raise ValueError(f"class_id must be in [0, {n_classes - 1}], got {class_id}")
    if imgsz <= 0 or imgsz % 32:
        raise ValueError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    return box


def _target_logit(y: torch.Tensor, raw: dict, box_lb: NDArray, class_id: int,
                  head: torch.nn.Module) -> torch.Tensor:
    """IoU-weighted mean class logit over anchors inside ``box_lb`` (letterbox ``xyxy`` px)."""
    scores = raw["one2many"]["scores"] if "one2many" in raw else raw["scores"]  # (1, nc, A) logits
    xywh = y[0, :4].detach().T  # (A, 4) decoded boxes, letterbox px
    decoded = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    target = torch.as_tensor(box_lb, dtype=decoded.dtype, device=decoded.device).view(1, 4)
    iou = box_iou(decoded, target)[:, 0]
    centres = (head.anchors * head.strides).T.detach()  # (A, 2) anchor centres, letterbox px
    inside = ((centres >= target[0, :2]) & (centres <= target[0, 2:])).all(1)
    weights = iou * inside
    if float(weights.sum()) <= 0:
        if bool(inside.any()):
            weights = inside.to(iou.dtype)
        else:
            dist = ((centres - (target[0, :2] + target[0, 2:]) / 2) ** 2).sum(1)
            weights = torch.zeros_like(iou)
            weights[int(torch.argmax(iou)) if float(iou.max()) > 0 else int(torch.argmin(dist))] = 1
    return (scores[0, class_id] * weights).sum() / weights.sum()


def _cam(act: torch.Tensor, grad: torch.Tensor | None,
         frame: LetterboxFrame) -> NDArray[np.float32]:
    """ReLU(sum_c mean(grad_c) * A_c) mapped back onto the original image, scaled to [0, 1]."""
    if grad is None:  # the layer does not feed the head
        return np.zeros((frame.height, frame.width), np.float32)
    weights = grad[0].mean((1, 2), keepdim=True)
    cam = torch.relu((weights * act[0]).sum(0)).detach()[None, None]
    cam = torch.nn.functional.interpolate(cam, size=(frame.imgsz, frame.imgsz), mode="bilinear",
                                          align_corners=False)[0, 0]
    cam = cam[frame.top : frame.top + frame.new_h, frame.left : frame.left + frame.new_w]
    out = cv2.resize(cam.float().cpu().numpy(), (frame.width, frame.height),
                     interpolation=cv2.INTER_LINEAR)
    out = np.nan_to_num(np.clip(out, 0.0, None), nan=0.0, posinf=0.0)
    peak = float(out.max())
    return (out / peak).astype(np.float32) if peak > 0 else np.zeros_like(out, np.float32)


def _jet(values: NDArray) -> NDArray[np.float32]:
    """Jet-like colormap: values in [0, 1] of any shape -> RGB in [0, 1], shape ``(..., 3)``."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], np.float32)  # red, green, blue peaks
    return np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)


def overlay(image: NDArray[np.uint8], heatmap: NDArray, alpha: float = 0.45) -> NDArray[np.uint8]:
    """Blend a jet-coloured heatmap over an image.

    Args:
        image: ``HxWx3`` uint8 RGB.
        heatmap: ``(H, W)`` values in [0, 1] (higher = hotter, drawn red; 0 drawn dark blue).
        alpha: weight of the colour, in [0, 1].

    Returns:
        ``HxWx3`` uint8 RGB; the inputs are not modified.
    """
    validate_image(image, 0)
    heat = np.asarray(heatmap, np.float32)
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heatmap shape {heat.shape} does not match image {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * 255.0 * _jet(np.nan_to_num(heat))
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
