"""Model competence: how good the detector is on the labels, per class, before its disagreement
with them is trusted as evidence of label errors (pure).

Most issue scores lean on the model: a label no confident prediction supports may be spurious, a
confident prediction no label covers may be a missing label, a label the model's box fits badly
may be a bad box. That reasoning holds only where the model finds most labelled objects
(recall), where most of its confident detections are objects (precision) and where its boxes fit
(IoU of matched pairs). With a weak model (val mAP50 0.26 on aerial tree crowns) the top
"spurious" flags were real trees the model missed. :func:`model_competence` measures the model per
class on the val split and says, in plain sentences, what a weak class does to each issue type.

The figures are measured against the labels under audit: label errors lower them a little (an
unlabelled object the model finds counts as a false alarm). A class whose labels are so bad that
the model looks weak needs a human reviewer either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from audit import boxes as B
from audit import constants as C
from audit.frames import check_boxes, iscrowd, require_columns, xyxy

VERDICTS = ("reliable", "weak", "too few labels")
COLUMNS = ("n_gt", "n_pred", "recall", "precision", "ap50", "median_iou", "verdict", "weak_on")
_PLACE_WEIGHTS = np.array([1.0, np.pi, np.e, np.sqrt(2.0)])  # xyxy -> one sort key
_USED = ("sample_id", "source", "x1", "y1", "x2", "y2", "label", "confidence", "iscrowd")


@dataclass(frozen=True)
class Competence:
    """What the model is worth as evidence on this dataset.

    Attributes:
        classes: frame indexed by class name (``label``) with ``COLUMNS``: ``n_gt`` (non-crowd
            labels), ``n_pred`` (predictions at ``conf`` or above, those on crowd regions left
            out), ``recall`` and ``precision`` at ``conf`` (NaN: nothing to divide by), ``ap50``
            (VOC all-point AP at IoU ``match_iou`` from every prediction), ``median_iou`` (of the
            matched pairs at ``conf``), ``verdict`` (one of ``VERDICTS``) and ``weak_on``
            (comma-separated ``recall`` / ``precision`` / ``localisation``, "" when not weak).
        split: ``"val"``, or ``"all"`` when the samples have no val split.
        n_images: images measured.
        conf: the working confidence of ``recall`` / ``precision``.
        n_gt, n_pred, recall, precision, median_iou: the same over every class pooled.
        map50: mean ``ap50`` over the classes with labels (NaN: none).
        verdict: the pooled verdict (``VERDICTS``).
        warnings: plain sentences for the user, most general first: no val split, a weak model
            overall, one per weak class (what it does to each issue type), classes with too few
            labels. Empty when the model is reliable everywhere it can be judged.
        thresholds: the knobs the verdicts used (``match_iou``, ``min_recall``,
            ``min_precision``, ``min_iou``, ``min_boxes``).
    """

    classes: pd.DataFrame
    split: str
    n_images: int
    conf: float
    n_gt: int
    n_pred: int
    recall: float
    precision: float
    map50: float
    median_iou: float
    verdict: str
    warnings: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``classes`` as a list of row dicts with ``label``) for storage."""
        overall = {k: getattr(self, k) for k in ("n_gt", "n_pred", "recall", "precision",
                                                 "map50", "median_iou", "verdict")}
        return {"split": self.split, "n_images": self.n_images, "conf": self.conf,
                "overall": overall, "warnings": list(self.warnings),
                "thresholds": dict(self.thresholds),
                "classes": self.classes.reset_index().to_dict(orient="records")}


def _canonical(frame: pd.DataFrame, by_confidence: bool) -> pd.DataFrame:
    """Rows in an order that does not depend on the input's: by descending confidence (when
    ``by_confidence``), ties broken by where the box is (matching and AP then ignore row order)."""
    place = xyxy(frame) @ _PLACE_WEIGHTS  # one key for the box
    if not by_confidence:
        return frame.iloc[np.argsort(place, kind="stable")]
    conf = -np.nan_to_num(frame["confidence"].to_numpy(float), nan=0.0)
    order = np.argsort(conf, kind="stable")
    tied = np.r_[False, conf[order][1:] == conf[order][:-1]]
    if tied.any():  # rare: re-order only the runs of equal confidence, by place
        run = np.cumsum(~tied)
        rows = np.flatnonzero(tied | np.r_[tied[1:], False])
        order[rows] = order[rows][np.lexsort((place[order[rows]], run[rows]))]
    return frame.iloc[order]


def _match(boxes: pd.DataFrame, match_iou: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Class-aware greedy matching by confidence; returns the gt and prediction frames.

    gt (crowd left out) gains ``matched``; predictions (descending confidence) gain ``matched``,
    ``iou`` and ``ignored`` (unmatched, and at least ``match_iou`` of it inside a same-class crowd
    box, as COCO does).
    """
    crowd, source = iscrowd(boxes), boxes["source"].to_numpy()
    gt = _canonical(boxes[(source == "gt") & ~crowd], by_confidence=False)
    crowd_gt = boxes[(source == "gt") & crowd]
    pred = _canonical(boxes[source == "pred"], by_confidence=True)
    codes = pd.factorize(pd.concat([gt["sample_id"], pred["sample_id"], crowd_gt["sample_id"]])
                         .astype(str))[0]
    c_gt, c_pred, c_crowd = np.split(codes, [len(gt), len(gt) + len(pred)])
    gl, pl = gt["label"].astype(str).to_numpy(), pred["label"].astype(str).to_numpy()
    pairs = B.overlapping_pairs(xyxy(gt), c_gt, xyxy(pred), c_pred)
    same = gl[pairs.ia] == pl[pairs.ib]
    m = B.greedy_match_pairs(pairs.ia[same], pairs.ib[same], pairs.iou[same],
                             pred["confidence"].to_numpy(float), len(gt), iou_threshold=match_iou)
    on_crowd = B.overlapping_pairs(xyxy(crowd_gt), c_crowd, xyxy(pred), c_pred)
    hit = (crowd_gt["label"].astype(str).to_numpy()[on_crowd.ia] == pl[on_crowd.ib]) & (
        on_crowd.contain_b_in_a >= match_iou)
    ignored = np.zeros(len(pred), bool)
    ignored[on_crowd.ib[hit]] = True
    gt_out = pd.DataFrame({"label": gl, "matched": m.gt_to_pred >= 0})
    pred_out = pd.DataFrame({"label": pl, "confidence": np.nan_to_num(
        pred["confidence"].to_numpy(float), nan=0.0), "matched": m.pred_to_gt >= 0,
        "iou": m.pred_iou})
    pred_out["ignored"] = ignored & ~pred_out["matched"].to_numpy()
    return gt_out, pred_out


def average_precision(matched: NDArray[np.bool_], n_gt: int) -> float:
    """VOC all-point AP: area under the precision envelope of predictions in descending
    confidence (``matched``: whether each is a true positive). NaN without labels.

    Example:
        >>> average_precision(np.array([True, False, True]), 4)
        0.41666666666666663
    """
    if n_gt <= 0:
        return float("nan")
    tp = np.asarray(matched, dtype=bool)
    if not tp.size:
        return 0.0
    hits = np.cumsum(tp)
    precision = hits / np.arange(1, tp.size + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(np.r_[0, hits]) / n_gt * envelope))


def _figures(gt: pd.DataFrame, pred: pd.DataFrame, conf: float) -> dict[str, float]:
    """n_gt, n_pred, recall, precision, AP50 and median matched IoU of one class (or all)."""
    kept = pred[~pred["ignored"].to_numpy()]
    at = kept[kept["confidence"].to_numpy() >= conf]
    n_gt, n_pred, hits = len(gt), len(at), int(at["matched"].sum())
    ious = at.loc[at["matched"].to_numpy(), "iou"]
    return {"n_gt": n_gt, "n_pred": n_pred, "recall": hits / n_gt if n_gt else np.nan,
            "precision": hits / n_pred if n_pred else np.nan,
            "ap50": average_precision(kept["matched"].to_numpy(), n_gt),
            "median_iou": float(ious.median()) if len(ious) else np.nan}


def _weak_on(fig: dict[str, float], min_recall: float, min_precision: float,
             min_iou: float) -> list[str]:
    """Which of recall, precision and localisation are at or below their minimum (NaN never
    is): at the minimum the model's word is a coin flip."""
    return [name for name, value, low in (("recall", fig["recall"], min_recall),
                                          ("precision", fig["precision"], min_precision),
                                          ("localisation", fig["median_iou"], min_iou))
            if np.isfinite(value) and value <= low]


def _verdict(fig: dict[str, float], weak_on: list[str], min_boxes: int) -> str:
    """``too few labels`` under ``min_boxes`` labels, else ``weak`` or ``reliable``."""
    return VERDICTS[2] if fig["n_gt"] < min_boxes else VERDICTS[1] if weak_on else VERDICTS[0]


def _val(split: str) -> str:
    """``"val "`` when the val split was measured, else ``""`` (every image was)."""
    return "val " if split == "val" else ""


def _pct(value: float) -> str:
    """A share as ``42%``, ``n/a`` for NaN."""
    return f"{value:.0%}" if np.isfinite(value) else "n/a"


def _num(value: float) -> str:
    """A figure with two decimals, ``n/a`` for NaN."""
    return f"{value:.2f}" if np.isfinite(value) else "n/a"


def class_sentence(label: str, row: pd.Series, *, conf: float, split: str) -> str:
    """One plain sentence on a weak class: its figures and what they do to each issue type."""
    facts = (f"recall {_pct(row['recall'])}, precision {_pct(row['precision'])} at confidence "
             f"{conf:g}; AP50 {_num(row['ap50'])} on {int(row['n_gt'])} {_val(split)}labels")
    weak = str(row["weak_on"]).split(", ")
    parts = []
    if "recall" in weak:
        parts.append(f"the model misses many real {label} objects: 'spurious' flags on {label} "
                     f"are often real objects the model missed, and dropped {label} labels are "
                     "found less often")
    if "precision" in weak:
        parts.append(f"many of its confident {label} detections match no label: 'missing' flags "
                     f"on {label} are often model false alarms")
    if "localisation" in weak:
        parts.append(f"its {label} boxes fit loosely (median IoU {_num(row['median_iou'])}): "
                     f"'bad_box' flags on {label} are less reliable")
    return f"The model is weak on {label} ({facts}): {'; '.join(parts)}."


def _warnings(res: Competence, n_samples: int, min_boxes: int) -> list[str]:
    """The plain sentences of :attr:`Competence.warnings`."""
    out = []
    if res.split == "all" and n_samples:
        out.append(f"There is no val split: the model is measured on all {res.n_images} images, "
                   "including those it was trained on, so it looks better here than it is.")
    frame = res.classes
    labelled = frame[frame["n_gt"] > 0]
    if res.verdict == "weak" and not (len(labelled) == 1 and labelled["verdict"].iloc[0] == "weak"):
        # (one labelled class: its own sentence below says it all)
        out.append(f"The model is weak on this data: at confidence {res.conf:g} it finds "
                   f"{_pct(res.recall)} of the {res.n_gt} labelled objects in the "
                   f"{_val(res.split)}images, {_pct(res.precision)} of its detections match a "
                   f"label, matched boxes overlap a median IoU {_num(res.median_iou)} (mAP50 "
                   f"{res.map50:.2f}). Its disagreement with the labels is weak evidence: read "
                   "the flags as candidates to check, not as errors.")
    out += [class_sentence(str(label), row, conf=res.conf, split=res.split)
            for label, row in frame[frame["verdict"] == "weak"].iterrows()]
    few = [str(label) for label in frame.index[frame["verdict"] == "too few labels"]]
    if few:
        out.append(f"Too few {_val(res.split)}labels to judge the model on {', '.join(few)} (under "
                   f"{min_boxes} each): flags on them rest on an unmeasured model.")
    return out


def model_competence(
    boxes: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    conf: float = C.COMPETENCE_CONF,
    match_iou: float = C.MATCH_IOU,
    min_recall: float = C.COMPETENCE_MIN_RECALL,
    min_precision: float = C.COMPETENCE_MIN_PRECISION,
    min_iou: float = C.COMPETENCE_MIN_IOU,
    min_boxes: int = C.COMPETENCE_MIN_BOXES,
) -> Competence:
    """Measure the detector against the labels of the val split, per class.

    Predictions are matched to labels of their class in their image greedily by descending
    confidence (COCO style; crowd labels are not targets, and an unmatched prediction mostly
    inside a crowd label of its class is neither right nor wrong). A class is ``weak`` when its
    recall or precision at ``conf`` or its matched pairs' median IoU is at or below the minimum,
    ``too few labels`` under ``min_boxes`` labels, else ``reliable``.

    Args:
        boxes: boxes frame (absolute ``xyxy``; gt and pred rows; optional ``iscrowd``).
        samples: samples frame indexed by ``sample_id`` with ``split``. Without val samples every
            sample is measured and a warning says so.
        conf: working confidence of recall and precision (AP50 uses every prediction).
        match_iou: IoU at which a prediction covers a label.
        min_recall: recall at or below which a class is weak (the model misses real objects).
        min_precision: precision at or below which a class is weak (the model's false alarms).
        min_iou: median matched IoU at or below which a class is weak (loose boxes).
        min_boxes: labels a class needs in the measured split for a verdict.

    Returns:
        A :class:`Competence` (higher figures = better model; ``warnings`` in plain words).

    Example:
        >>> res = model_competence(boxes, samples)  # doctest: +SKIP
        >>> res.classes.loc["tree", ["recall", "verdict"]].tolist()  # doctest: +SKIP
        [0.31, 'weak']
    """
    check_boxes(boxes)
    require_columns(samples, ("split",), "samples")
    is_val = (samples["split"].astype(str) == "val").to_numpy()
    split = "val" if is_val.any() else "all"
    ids = samples.index[is_val] if is_val.any() else samples.index
    used = boxes[[c for c in _USED if c in boxes.columns]]
    gt, pred = _match(used[used["sample_id"].astype(str).isin(ids.astype(str))], match_iou)
    rows, labels = [], sorted(set(pd.unique(gt["label"])) | set(pd.unique(pred["label"])))
    by_gt, by_pred = gt.groupby("label").indices, pred.groupby("label").indices
    none = np.zeros(0, np.int64)
    for label in labels:
        fig = _figures(gt.iloc[by_gt.get(label, none)], pred.iloc[by_pred.get(label, none)], conf)
        weak = _weak_on(fig, min_recall, min_precision, min_iou)
        rows.append({**fig, "verdict": _verdict(fig, weak, min_boxes), "weak_on": ", ".join(
            weak) if fig["n_gt"] >= min_boxes else ""})
    frame = pd.DataFrame(rows, index=pd.Index(labels, name="label", dtype=object),
                         columns=list(COLUMNS))
    frame[["n_gt", "n_pred"]] = frame[["n_gt", "n_pred"]].astype(int)
    total = _figures(gt, pred, conf)
    aps = frame["ap50"].to_numpy(float)
    res = Competence(
        classes=frame, split=split, n_images=len(ids), conf=float(conf), n_gt=total["n_gt"],
        n_pred=total["n_pred"], recall=total["recall"], precision=total["precision"],
        map50=float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan"),
        median_iou=total["median_iou"],
        verdict=_verdict(total, _weak_on(total, min_recall, min_precision, min_iou), min_boxes),
        thresholds={"match_iou": float(match_iou), "min_recall": float(min_recall),
                    "min_precision": float(min_precision), "min_iou": float(min_iou),
                    "min_boxes": int(min_boxes)})
    return replace(res, warnings=_warnings(res, len(samples), min_boxes))
