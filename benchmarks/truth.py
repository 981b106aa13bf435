"""The demo world's ``noise.csv`` turned into truth labels per box and per image.

``noise.csv`` (written by ``audit.world.generate``) has one row per injected error with columns
``split``, ``image_id`` (COCO image id), ``annotation_ids`` (noisy COCO annotation ids,
';'-joined, empty for a drop), ``clean_annotation_ids``, ``error_type`` in
{drop, flip, shift, spawn, merge}, ``clean_bbox``, ``clean_label``, ``noisy_bbox``,
``noisy_label``. Boxes are COCO ``[x, y, w, h]`` in absolute pixels, four numbers per box,
boxes ';'-joined when one error involves several (a merge).

Shelf images also carry a labelling *convention* that is no injected error: books boxed per group,
or some books left unlabelled. Those boxes are neither errors nor clean labels, so they are left
out of every box-level evaluation (see :func:`convention_rows`), and an image whose only
departure from the clean labels is its convention is left out of the image-level evaluation:
flagging its group boxes or unlabelled books is a finding the auditor is meant to make (label
inconsistency), not a false alarm, and it holds no injected error either.

Truth per box, for each error type separately:

* flip / shift / spawn / merge: a noisy ground-truth box named in a row of that type is a
  positive; ground-truth boxes named in no row at all are the negatives (boxes carrying another
  type of error are left out of that type's evaluation).
* drop: among predictions with confidence >= ``conf_floor``, positives are those matching
  (IoU >= ``iou``) a dropped clean box of their image; predictions matching the clean box of
  another error (a flipped, shifted or merged object) or of a book unlabelled by convention are
  left out; all others are negatives.

Truth per image: the image holds at least one injected error (positive), or no departure from
its clean labels at all (negative).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from audit import constants as C
from audit.boxes import iou_matrix

ERROR_TYPES = ("drop", "flip", "shift", "spawn", "merge")  # error types the generator injects
GT_ERROR_TYPES = ("flip", "shift", "spawn", "merge")  # types whose positives are noisy gt boxes
DROP_CONF_FLOOR = 0.1  # predictions below this confidence take no part in the drop evaluation
NOISE_COLUMNS = ("split", "image_id", "annotation_ids", "clean_annotation_ids", "error_type",
                 "clean_bbox", "clean_label", "noisy_bbox", "noisy_label")


def read_noise(path: str | Path) -> pd.DataFrame:
    """Read and validate ``noise.csv``.

    Args:
        path: the CSV written by the demo world generator.

    Returns:
        One row per injected error: ``split`` (str), ``image_id`` (int), ``error_type`` (str),
        ``annotation_ids`` / ``clean_annotation_ids`` (tuples of int), ``clean_boxes`` (float
        array ``(K, 4)``, absolute pixel xyxy; K = 0 for a spawn).

    Raises:
        ValueError: naming the file and the row when a column is missing, an error type is
            unknown, an id is not an integer or a box does not parse.

    Example:
        >>> noise = read_noise("world/noise.csv")  # doctest: +SKIP
    """
    path = Path(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in NOISE_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: expected columns {NOISE_COLUMNS}, missing {missing}")
    rows = []
    for i, rec in enumerate(raw.to_dict("records")):
        where = f"{path}, row {i + 2}"
        if rec["error_type"] not in ERROR_TYPES:
            raise ValueError(f"{where}: error_type {rec['error_type']!r} not in {ERROR_TYPES}")
        try:
            rows.append({
                "split": rec["split"],
                "image_id": int(rec["image_id"]),
                "error_type": rec["error_type"],
                "annotation_ids": _ids(rec["annotation_ids"]),
                "clean_annotation_ids": _ids(rec["clean_annotation_ids"]),
                "clean_boxes": parse_boxes(rec["clean_bbox"]),
            })
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
    cols = ["split", "image_id", "error_type", "annotation_ids", "clean_annotation_ids",
            "clean_boxes"]
    return pd.DataFrame(rows, columns=cols)


def _ids(text: str) -> tuple[int, ...]:
    """Parse ';'-joined integer ids ('' -> ())."""
    return tuple(int(float(t)) for t in str(text).split(";") if t.strip())


def parse_boxes(text: str) -> NDArray[np.float64]:
    """Parse COCO ``[x, y, w, h]`` box text into absolute xyxy, shape ``(K, 4)``.

    Accepts ';'-joined boxes of four space- or comma-separated numbers (the generator's
    format), a JSON list of four numbers or of such lists, or an empty string (K = 0).

    Example:
        >>> parse_boxes("10 20 5 5;0 0 1 2").tolist()
        [[10.0, 20.0, 15.0, 25.0], [0.0, 0.0, 1.0, 2.0]]
    """
    text = str(text).strip()
    if not text:
        return np.zeros((0, 4))
    if text.startswith("["):
        data = json.loads(text)
        data = data if data and isinstance(data[0], list) else [data]
    else:
        data = [[float(v) for v in part.replace(",", " ").split()]
                for part in text.split(";") if part.strip()]
    xywh = np.asarray(data, dtype=float).reshape(-1, 4)
    if not np.isfinite(xywh).all() or (xywh[:, 2:] < 0).any():
        raise ValueError(f"bad box {text!r}: expected [x, y, w, h] with w, h >= 0")
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def box_truth(
    noise: pd.DataFrame,
    gt: pd.DataFrame,
    pred: pd.DataFrame,
    *,
    conf_floor: float = DROP_CONF_FLOOR,
    iou: float = C.MATCH_IOU,
) -> pd.DataFrame:
    """Truth labels per box and error type.

    Args:
        noise: as returned by :func:`read_noise`, optionally with :func:`convention_rows`
            appended (their boxes are then left out).
        gt: one row per noisy ground-truth box: ``split``, ``image_id`` (COCO image id),
            ``ann_id`` (COCO annotation id), ``box_id``.
        pred: one row per prediction: ``split``, ``image_id``, ``box_id``, ``x1, y1, x2, y2``
            (absolute pixels, xyxy), ``confidence``.
        conf_floor: predictions below this confidence are left out of the drop evaluation.
        iou: IoU at which a prediction covers a dropped box.

    Returns:
        Long frame with columns ``error_type``, ``split``, ``box_id``, ``source``
        ("gt" | "pred") and ``is_error`` (bool): for each error type the boxes it is evaluated
        on, positives and negatives.

    Example:
        >>> truth = box_truth(read_noise(p), gt, pred)  # doctest: +SKIP
        >>> truth.groupby("error_type")["is_error"].mean()  # doctest: +SKIP
    """
    keyed = noise.explode("annotation_ids").dropna(subset=["annotation_ids"])
    err_type = {(s, int(a)): t for s, a, t in
                zip(keyed["split"], keyed["annotation_ids"], keyed["error_type"], strict=True)}
    key = list(zip(gt["split"], gt["ann_id"].astype(int), strict=True))
    gt_type = pd.Series([err_type.get(k) for k in key], index=gt.index, dtype=object)
    parts = []
    for etype in GT_ERROR_TYPES:
        sel = gt_type.isna() | (gt_type == etype)
        parts.append(pd.DataFrame({
            "error_type": etype, "split": gt["split"][sel], "box_id": gt["box_id"][sel],
            "source": "gt", "is_error": (gt_type[sel] == etype).to_numpy(bool),
        }))
    parts.append(_drop_truth(noise, pred, conf_floor=conf_floor, iou=iou))
    return pd.concat(parts, ignore_index=True)


def _drop_truth(noise: pd.DataFrame, pred: pd.DataFrame, *, conf_floor: float,
                iou: float) -> pd.DataFrame:
    """Drop truth on predictions above the floor: covers a dropped box / covers nothing erred."""
    pred = pred[pred["confidence"] >= conf_floor]
    by_image: dict[tuple[str, int], list[tuple[str, NDArray]]] = {}
    for rec in noise.itertuples(index=False):
        by_image.setdefault((rec.split, int(rec.image_id)), []).append(
            (rec.error_type, rec.clean_boxes))
    is_error, keep = [], []
    xyxy = pred[["x1", "y1", "x2", "y2"]].to_numpy(float)
    for row, (split, image_id) in enumerate(zip(pred["split"], pred["image_id"], strict=True)):
        hit = {t for t, boxes in by_image.get((split, int(image_id)), [])
               if len(boxes) and (iou_matrix(xyxy[row:row + 1], boxes) >= iou).any()}
        is_error.append("drop" in hit)
        keep.append("drop" in hit or not hit)
    keep_arr = np.asarray(keep, dtype=bool)
    return pd.DataFrame({
        "error_type": "drop", "split": pred["split"].to_numpy()[keep_arr],
        "box_id": pred["box_id"].to_numpy()[keep_arr], "source": "pred",
        "is_error": np.asarray(is_error, dtype=bool)[keep_arr],
    })


def convention_rows(noise: pd.DataFrame, noisy: dict[str, dict], clean: dict[str, dict],
                    ) -> pd.DataFrame:
    """Pseudo-noise rows (``error_type`` "convention") for labels set by a book convention.

    A noisy annotation whose id is neither a clean id nor named in ``noise`` is a group box; a
    clean annotation missing from the noisy file and from every noise row is a book left
    unlabelled (partial convention) or covered by a group box.

    Args:
        noise: as returned by :func:`read_noise`.
        noisy: split -> the noisy COCO dict (``<split>.json``).
        clean: split -> the clean COCO dict (``<split>_clean.json``).

    Returns:
        Frame with the columns of :func:`read_noise`, one row per image with such labels:
        ``annotation_ids`` the group boxes, ``clean_boxes`` the unlabelled clean boxes (xyxy).
    """
    rows = []
    for split in sorted(set(noisy) & set(clean)):
        part = noise[noise["split"] == split]
        named = {a for ids in part["annotation_ids"] for a in ids}
        named_clean = {a for ids in part["clean_annotation_ids"] for a in ids}
        clean_anns = {a["id"]: a for a in clean[split]["annotations"]}
        noisy_anns = {a["id"]: a for a in noisy[split]["annotations"]}
        per_image: dict[int, tuple[list, list]] = {}
        for aid, ann in noisy_anns.items():
            if aid not in clean_anns and aid not in named:
                per_image.setdefault(ann["image_id"], ([], []))[0].append(aid)
        for aid, ann in clean_anns.items():
            if aid not in noisy_anns and aid not in named_clean:
                per_image.setdefault(ann["image_id"], ([], []))[1].append(ann["bbox"])
        for image_id, (ids, boxes) in sorted(per_image.items()):
            text = ";".join(" ".join(str(v) for v in b) for b in boxes)
            rows.append({"split": split, "image_id": int(image_id), "error_type": "convention",
                         "annotation_ids": tuple(ids), "clean_annotation_ids": (),
                         "clean_boxes": parse_boxes(text)})
    return pd.DataFrame(rows, columns=list(noise.columns))


def image_truth(noise: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Truth per image: does it hold at least one injected error.

    Args:
        noise: as returned by :func:`read_noise`, optionally with :func:`convention_rows`
            appended: an image named only by convention rows is left out (neither positive nor
            negative, as its boxes are at box level).
        images: one row per image: ``sample_id``, ``split``, ``image_id`` (COCO image id).

    Returns:
        Frame indexed by ``sample_id`` with ``split`` and ``has_error`` (bool), one row per
        image that is not left out.

    Example:
        >>> image_truth(noise, images)["has_error"].mean()  # doctest: +SKIP
    """
    def keys(rows: pd.DataFrame) -> set[tuple[str, int]]:
        return set(zip(rows["split"], rows["image_id"].astype(int), strict=True))

    erred = keys(noise[noise["error_type"].isin(ERROR_TYPES)])
    convention = keys(noise[noise["error_type"] == "convention"]) - erred
    key = list(zip(images["split"], images["image_id"].astype(int), strict=True))
    keep = np.array([k not in convention for k in key], bool)
    return pd.DataFrame({"split": images["split"].to_numpy()[keep],
                         "has_error": np.array([k in erred for k in key], bool)[keep]},
                        index=pd.Index(images["sample_id"].to_numpy()[keep], name="sample_id"))