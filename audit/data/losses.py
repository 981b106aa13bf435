"""Per-image YOLO training loss (box, cls, dfl) of a batch, with ultralytics' own criterion.

Each image's loss is the value the model's criterion (``v8DetectionLoss`` for YOLO11, with the
checkpoint's gains) gives for a batch of that image alone, as ultralytics' validator computes val
loss. Used by :meth:`audit.data.model.Detector.forward` on the head outputs of its one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

if TYPE_CHECKING:
    from audit.data.model import GroundTruth, LetterboxFrame


def image_losses(criterion: Any, raw: Any, gts: list[GroundTruth | None],
                 frames: Sequence[LetterboxFrame], x: torch.Tensor) -> list[NDArray[np.float32]]:
    """(box, cls, dfl) of every image as if it were alone in its batch; NaN without gt.

    With ultralytics' dict head output (``boxes`` / ``scores`` / ``feats``), one target
    assignment serves the whole batch: the task-aligned assigner works image by image inside
    the padded batch, so reducing its output per image, each normalised by that image's own
    target-score sum, gives what the criterion gives for a batch of that image alone
    (``tests/data/test_model.py`` checks it against ``model.loss``) at a fraction of the cost
    of one criterion call per image. Other head outputs take one call per image.
    """
    nan = np.full(3, np.nan, np.float32)
    if all(g is None for g in gts):
        return [nan] * len(gts)
    targets = loss_targets(gts, frames, x.device)
    preds = criterion.parse_output(raw)
    if not (isinstance(preds, dict) and {"boxes", "scores", "feats"} <= preds.keys()):
        return [nan if g is None else single_image_loss(criterion, raw, i, targets, x)
                for i, g in enumerate(gts)]
    per_image = _batched_losses(criterion, preds, targets, len(gts))
    return [nan if g is None else per_image[i] for i, g in enumerate(gts)]


def loss_targets(gts: list[GroundTruth | None], frames: Sequence[LetterboxFrame],
                 device: Any) -> torch.Tensor:
    """``(n, 6)`` rows ``(image, class, cx, cy, w, h)``, letterbox-relative, as ultralytics'
    training batches hold them."""
    rows = []
    for i, (g, frame) in enumerate(zip(gts, frames, strict=True)):
        if g is None or not len(g.boxes):
            continue
        lb = frame.to_letterbox(np.asarray(g.boxes)) / frame.imgsz
        xywh = np.concatenate([(lb[:, :2] + lb[:, 2:]) / 2, lb[:, 2:] - lb[:, :2]], 1)
        cls = np.asarray(g.class_ids, np.float64).reshape(-1, 1)
        rows.append(np.concatenate([np.full((len(lb), 1), i), cls, xywh], 1))
    out = np.concatenate(rows) if rows else np.zeros((0, 6))
    return torch.from_numpy(out.astype(np.float32)).to(device)


def _batched_losses(criterion: Any, preds: dict[str, Any], targets: torch.Tensor,
                    n: int) -> list[NDArray[np.float32]]:
    """Per-image (box, cls, dfl) from one assignment (``v8DetectionLoss`` internals)."""
    from ultralytics.utils.tal import make_anchors

    pred_distri = preds["boxes"].permute(0, 2, 1).contiguous()
    pred_scores = preds["scores"].permute(0, 2, 1).contiguous()
    anchor_points, stride_tensor = make_anchors(preds["feats"], criterion.stride, 0.5)
    dtype = pred_scores.dtype
    imgsz = torch.tensor(preds["feats"][0].shape[2:], device=criterion.device,
                         dtype=dtype) * criterion.stride[0]
    padded = criterion.preprocess(targets.to(criterion.device), n, scale_tensor=imgsz[[1, 0, 1, 0]])
    gt_labels, gt_bboxes = padded.split((1, 4), 2)
    mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
    pred_bboxes = criterion.bbox_decode(anchor_points, pred_distri)
    _, target_bboxes, target_scores, fg_mask, _ = criterion.assigner(
        pred_scores.detach().sigmoid(),
        (pred_bboxes.detach() * stride_tensor).type(gt_bboxes.dtype),
        anchor_points * stride_tensor, gt_labels, gt_bboxes, mask_gt)
    bce = criterion.bce(pred_scores, target_scores.to(dtype))
    if getattr(criterion, "class_weights", None) is not None:
        bce = bce * criterion.class_weights
    hyp = criterion.hyp
    gains = torch.tensor([hyp.box, hyp.cls, hyp.dfl], dtype=torch.float32)
    out = []
    for i in range(n):
        s = slice(i, i + 1)
        total = target_scores[s].sum().clamp_(min=1)
        box, dfl = criterion.bbox_loss(pred_distri[s], pred_bboxes[s], anchor_points,
                                  target_bboxes[s] / stride_tensor, target_scores[s], total,
                                  fg_mask[s], imgsz, stride_tensor)
        cls = bce[s].sum() / total
        loss = torch.stack([box.reshape(()), cls, dfl.reshape(())]).float().cpu() * gains
        out.append(loss.numpy().astype(np.float32))
    return out


def single_image_loss(criterion: Any, raw: Any, i: int, targets: torch.Tensor,
                      x: torch.Tensor) -> NDArray[np.float32]:
    """(box, cls, dfl) of image ``i`` alone: one criterion call on its slice of the batch."""
    mine = targets[targets[:, 0] == i]
    batch = {"batch_idx": torch.zeros(len(mine), device=x.device), "cls": mine[:, 1:2],
             "bboxes": mine[:, 2:], "img": x[i : i + 1]}
    total, _ = criterion(_slice_preds(raw, i), batch)
    return total.detach().float().cpu().numpy().reshape(-1)[:3].astype(np.float32)


def _slice_preds(preds: Any, i: int) -> Any:
    """Image ``i`` of a (nested dict / list of) batched head-output tensors, batch dim kept."""
    if isinstance(preds, torch.Tensor):
        return preds[i : i + 1]
    if isinstance(preds, dict):
        return {k: _slice_preds(v, i) for k, v in preds.items()}
    if isinstance(preds, list | tuple):
        return type(preds)(_slice_preds(v, i) for v in preds)
    return preds
