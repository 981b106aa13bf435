"""Evaluation drill-down: TP / FP / FN per box, a confusion matrix with background, PR curves.

Pure (numpy, pandas). Boxes come as the boxes frame (docs/ARCHITECTURE.md: absolute ``xyxy``,
``source`` gt | pred); the caller picks the split. Matching follows COCO: predictions in
descending confidence each take the unmatched label of their class with the highest IoU at or
above ``iou``. At a working confidence ``conf``:

- a prediction at or above ``conf`` is a TP when it matched, else an FP; a label is a TP when a
  prediction at or above ``conf`` matched it, else an FN (predictions below ``conf`` are left
  out; crowd labels are neither TP nor FN, and an unmatched prediction inside a crowd label of
  its class is left out, as COCOeval ignores it; FiftyOne's ``evaluate_detections`` counts
  such a prediction as a TP, the one difference between its counts and these);
- the confusion matrix puts the TPs on the diagonal, then pairs the remaining FPs with the
  remaining labels of another class by the same greedy rule (a confusion: row = the label's
  class, column = the predicted class), and puts what is left against ``BACKGROUND``: an FP
  with no label under it in the background row, an FN nothing found in the background column.

Every box carries its cell, so a cell leads back to the boxes behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from audit import boxes as B
from audit import constants as C
from audit.frames import iscrowd, xyxy

BACKGROUND = "(background)"
OUTCOME_COLUMNS = ["box_id", "sample_id", "source", "label", "confidence", "outcome",
                   "true_label", "pred_label", "iou"]


@dataclass(frozen=True)
class BoxEvaluation:
    """TP / FP / FN per box and the confusion matrix at one IoU and confidence.

    Attributes:
        outcomes: one row per counted box with ``OUTCOME_COLUMNS``: ``outcome`` "TP" | "FP" |
            "FN"; ``true_label`` / ``pred_label`` its cell (``BACKGROUND`` where the other side
            is missing); ``iou`` with the box it was paired with (NaN when none).
        matrix: counts, rows = true class + ``BACKGROUND``, columns = predicted class +
            ``BACKGROUND`` (the background-background cell is 0).
        iou: the IoU a match needs; conf: the working confidence.
    """

    outcomes: pd.DataFrame
    matrix: pd.DataFrame
    iou: float
    conf: float

    def cell_boxes(self, true_label: str, pred_label: str) -> pd.DataFrame:
        """The boxes behind one matrix cell (a pair's gt and prediction both)."""
        o = self.outcomes
        return o[(o["true_label"] == true_label) & (o["pred_label"] == pred_label)]

    def counts(self) -> pd.DataFrame:
        """TP, FP, FN, precision and recall per class (the label's class, or the prediction's)."""
        o = self.outcomes
        table = pd.crosstab(o["label"].rename("class"), o["outcome"] + "_" + o["source"])
        out = pd.DataFrame({"TP": table.get("TP_pred", 0), "FP": table.get("FP_pred", 0),
                            "FN": table.get("FN_gt", 0)}).fillna(0).astype(int)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["precision"] = out["TP"] / (out["TP"] + out["FP"])
            out["recall"] = out["TP"] / (out["TP"] + out["FN"])
        return out


def _pairs(gt: pd.DataFrame, pred: pd.DataFrame) -> B.BoxPairs:
    """Overlapping (gt row, pred row) pairs within each image with their IoU."""
    codes = pd.factorize(pd.concat([gt["sample_id"], pred["sample_id"]]).astype(str))[0]
    return B.overlapping_pairs(xyxy(gt), codes[: len(gt)], xyxy(pred), codes[len(gt):])


def _greedy(pairs: B.BoxPairs, keep: np.ndarray, conf: np.ndarray, n_gt: int,
            iou: float) -> B.Matching:
    """Greedy matching over the kept pairs."""
    return B.greedy_match_pairs(pairs.ia[keep], pairs.ib[keep], pairs.iou[keep], conf,
                                n_gt, iou_threshold=iou)


def _split_boxes(boxes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Non-crowd labels and predictions (descending confidence), each with a fresh index."""
    crowd = iscrowd(boxes)
    gt = boxes[(boxes["source"] == "gt") & ~crowd].reset_index(drop=True)
    pred = boxes[boxes["source"] == "pred"]
    conf = np.nan_to_num(pred["confidence"].to_numpy(float), nan=0.0)
    return gt, pred.iloc[np.argsort(-conf, kind="stable")].reset_index(drop=True)


def _class_matches(gt: pd.DataFrame, pred: pd.DataFrame, iou: float) -> tuple:
    """Same-image pairs, which join one class, and the class-aware greedy matching."""
    pairs = _pairs(gt, pred)
    gl, pl = gt["label"].astype(str).to_numpy(), pred["label"].astype(str).to_numpy()
    same = gl[pairs.ia] == pl[pairs.ib]
    return pairs, same, _greedy(pairs, same, pred["confidence"].to_numpy(float), len(gt), iou)


def _without_crowd_hits(boxes: pd.DataFrame, gt: pd.DataFrame, pred: pd.DataFrame,
                        iou: float) -> pd.DataFrame:
    """The predictions less those COCO ignores: unmatched, and at least ``iou`` of their area
    inside a crowd label of their class (such a prediction is neither a TP nor an FP)."""
    crowd = boxes[(boxes["source"] == "gt") & iscrowd(boxes)]
    if crowd.empty or pred.empty:
        return pred
    codes = pd.factorize(pd.concat([crowd["sample_id"], pred["sample_id"]]).astype(str))[0]
    p = B.overlapping_pairs(xyxy(crowd), codes[: len(crowd)], xyxy(pred), codes[len(crowd):])
    inside = (crowd["label"].astype(str).to_numpy()[p.ia]
              == pred["label"].astype(str).to_numpy()[p.ib]) & (p.contain_b_in_a >= iou)
    ignored = np.zeros(len(pred), bool)
    ignored[p.ib[inside]] = True
    ignored &= _class_matches(gt, pred, iou)[2].pred_to_gt < 0
    return pred[~ignored].reset_index(drop=True)


def evaluate_boxes(boxes: pd.DataFrame, *, iou: float = C.MATCH_IOU,
                   conf: float = C.RECALL_CONF) -> BoxEvaluation:
    """TP / FP / FN per box and the confusion matrix with background.

    Args:
        boxes: boxes frame (``sample_id``, ``box_id``, ``source``, ``x1..y2``, ``label``,
            ``confidence``, optional ``iscrowd``) of the images to evaluate.
        iou: IoU a match needs, in (0, 1].
        conf: predictions below it are left out.

    Returns:
        A :class:`BoxEvaluation`.

    Example:
        >>> frame = pd.DataFrame({"sample_id": ["a"] * 3, "box_id": ["g", "p", "q"],
        ...     "source": ["gt", "pred", "pred"], "x1": [0.0, 0, 50], "y1": [0.0, 0, 50],
        ...     "x2": [10.0, 10, 60], "y2": [10.0, 10, 60], "label": ["cat", "dog", "cat"],
        ...     "confidence": [np.nan, 0.9, 0.8]})
        >>> evaluate_boxes(frame).matrix.loc["cat", ["dog", "cat"]].tolist()
        [1, 0]
    """
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    gt, pred = _split_boxes(boxes)
    pred = pred[np.nan_to_num(pred["confidence"].to_numpy(float), nan=0.0) >= conf]
    pred = _without_crowd_hits(boxes, gt, pred.reset_index(drop=True), iou)
    pairs, same, hit = _class_matches(gt, pred, iou)
    gl, pl = gt["label"].astype(str).to_numpy(), pred["label"].astype(str).to_numpy()
    pconf = pred["confidence"].to_numpy(float)
    free = (hit.gt_to_pred[pairs.ia] < 0) & (hit.pred_to_gt[pairs.ib] < 0) & ~same
    confused = _greedy(pairs, free, pconf, len(gt), iou)
    outcomes = _outcomes(gt, pred, hit, confused)
    return BoxEvaluation(outcomes, _matrix(outcomes, sorted(set(gl) | set(pl))), float(iou),
                         float(conf))


def _take(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``labels[rows]``, ``BACKGROUND`` where a row is -1."""
    out = np.full(len(rows), BACKGROUND, dtype=object)
    out[rows >= 0] = labels[rows[rows >= 0]]
    return out


def _outcomes(gt: pd.DataFrame, pred: pd.DataFrame, hit: B.Matching,
              confused: B.Matching) -> pd.DataFrame:
    """One row per box: its outcome and cell."""
    gl, pl = gt["label"].astype(str).to_numpy(), pred["label"].astype(str).to_numpy()
    g_tp, p_tp = hit.gt_to_pred >= 0, hit.pred_to_gt >= 0
    g_other, p_other = confused.gt_to_pred, confused.pred_to_gt
    g_pred = np.where(g_tp, gl, _take(pl, g_other))
    p_true = np.where(p_tp, pl, _take(gl, p_other))
    g_iou = np.full(len(gt), np.nan)
    g_iou[hit.pred_to_gt[p_tp]] = hit.pred_iou[p_tp]
    p_iou = np.where(p_tp, hit.pred_iou, np.where(p_other >= 0, confused.pred_iou, np.nan))
    has = p_other >= 0
    g_iou[p_other[has]] = confused.pred_iou[has]
    rows = [pd.DataFrame({"box_id": gt["box_id"].astype(str), "sample_id": gt["sample_id"]
                          .astype(str), "source": "gt", "label": gl, "confidence": np.nan,
                          "outcome": np.where(g_tp, "TP", "FN"), "true_label": gl,
                          "pred_label": g_pred, "iou": g_iou}),
            pd.DataFrame({"box_id": pred["box_id"].astype(str), "sample_id": pred["sample_id"]
                          .astype(str), "source": "pred", "label": pl,
                          "confidence": pred["confidence"].to_numpy(float),
                          "outcome": np.where(p_tp, "TP", "FP"), "true_label": p_true,
                          "pred_label": pl, "iou": p_iou})]
    return pd.concat(rows, ignore_index=True)[OUTCOME_COLUMNS]


def _matrix(outcomes: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Counts per (true, predicted) cell: a TP or confusion pair once, FP / FN alone once."""
    labels = [*classes, BACKGROUND]
    once = outcomes[(outcomes["source"] == "gt") | (outcomes["true_label"] == BACKGROUND)]
    table = pd.crosstab(once["true_label"], once["pred_label"])
    return table.reindex(index=labels, columns=labels, fill_value=0).astype(int) \
        .rename_axis(index="true", columns="predicted")


def pr_curves(boxes: pd.DataFrame, *, iou: float = C.MATCH_IOU,
              max_points: int = 200) -> pd.DataFrame:
    """Precision and recall per class as the confidence threshold falls.

    Args:
        boxes: boxes frame as for :func:`evaluate_boxes`.
        iou: IoU a match needs.
        max_points: points kept per class (evenly along the confidence order; the last kept).

    Returns:
        Frame with ``label``, ``confidence`` (the threshold), ``precision``, ``recall`` (at
        that threshold, higher = better), one row per kept prediction, per class in descending
        confidence; a class without labels has no curve.

    Example:
        >>> frame = pd.DataFrame({"sample_id": ["a"] * 3, "box_id": ["g", "p", "q"],
        ...     "source": ["gt", "pred", "pred"], "x1": [0.0, 50, 0], "y1": [0.0, 50, 0],
        ...     "x2": [10.0, 60, 10], "y2": [10.0, 60, 10], "label": ["cat"] * 3,
        ...     "confidence": [np.nan, 0.9, 0.8]})
        >>> pr_curves(frame)[["precision", "recall"]].values.tolist()
        [[0.0, 0.0], [0.5, 1.0]]
    """
    gt, pred = _split_boxes(boxes)
    pred = _without_crowd_hits(boxes, gt, pred, iou)
    hit = _class_matches(gt, pred, iou)[2].pred_to_gt >= 0
    gl, pl = gt["label"].astype(str).to_numpy(), pred["label"].astype(str).to_numpy()
    n_gt = pd.Series(gl).value_counts()
    parts = []
    for label in sorted(set(pl) & set(n_gt.index)):
        rows = np.flatnonzero(pl == label)  # already in descending confidence
        tp = np.cumsum(hit[rows])
        curve = pd.DataFrame({"label": label, "confidence": pred["confidence"].to_numpy(float)
                              [rows], "precision": tp / np.arange(1, len(rows) + 1),
                              "recall": tp / n_gt[label]})
        step = max(1, int(np.ceil(len(curve) / max_points)))
        keep = np.unique(np.r_[np.arange(0, len(curve), step), len(curve) - 1])
        parts.append(curve.iloc[keep])
    columns = ["label", "confidence", "precision", "recall"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
