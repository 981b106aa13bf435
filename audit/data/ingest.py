"""Ingest: validated inputs + a YOLO11 checkpoint -> the persistent FiftyOne dataset, resumable.

Everything is validated before anything is written: the COCO JSON / data.yaml (see
:mod:`audit.data.inputs`), the checkpoint, the class names (matched by name), ``imgsz``, the
dataset name (one path component: it is also the review log's folder) and, when
the dataset already exists, that it was built with the same model, ``imgsz`` and layers. Then, per
batch: decode the images, run one :meth:`Detector.forward` with the ground truth, build the
sample documents (ground truth, predictions, per-box features, losses, embedding, metadata) and
insert them in one bulk write (:mod:`audit.data.sample_docs`). Samples whose filepath is already
stored are skipped, so an interrupted ingest continues where it stopped and a re-run adds
nothing; a failing batch adds nothing. Two ingests of one name at once (two fresh ones, or two
resumes) store every image once: the dataset is created with its settings in one write and its
filepath index is unique (:mod:`audit.data.store_create`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fiftyone as fo
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm.auto import tqdm

from audit import constants as C
from audit.data import store
from audit.data.checkpoint import file_digest
from audit.data.images import open_image, rgb_array
from audit.data.ingest_check import check_labels_unchanged
from audit.data.inputs import CocoSplit, ImageRecord, check_class_names, read_coco_split
from audit.data.sample_docs import add_sample_docs, sample_doc
from audit.data.store_create import create_or_load, ensure_unique_filepaths
from audit.decoys import background_probes
from audit.reviews import new_dataset_name

ProgressCallback = Callable[[float, str], None]  # (fraction done in [0, 1], message)


def read_inputs(*, images: str | Path | None = None, train_json: str | Path | None = None,
                val_json: str | Path | None = None,
                data_yaml: str | Path | None = None) -> list[CocoSplit]:
    """Read and validate the ground truth given either as COCO JSON per split or a data.yaml.

    Raises:
        ValueError: inconsistent arguments, any input problem, or one image in two splits.
    """
    if data_yaml is not None:
        if images is not None or train_json is not None or val_json is not None:
            raise ValueError("give either data_yaml or images + train_json/val_json, not both")
        from audit.data.inputs_yolo import read_data_yaml

        splits = read_data_yaml(data_yaml)
    else:
        if train_json is None and val_json is None:
            raise ValueError("nothing to ingest: give train_json and/or val_json, or data_yaml")
        if images is None:
            raise ValueError("images (the folder COCO file_name is relative to) is required")
        splits = [read_coco_split(p, images, s)
                  for s, p in (("train", train_json), ("val", val_json)) if p is not None]
    seen: dict[Path, str] = {}
    for s in splits:
        for rec in s.images:
            if rec.filepath in seen:
                raise ValueError(f"{rec.record}: the same image file is also in the "
                                 f"{seen[rec.filepath]} split ({rec.filepath})")
            seen[rec.filepath] = s.split
    return splits


def _check_resume(ds: fo.Dataset, settings: dict[str, Any]) -> None:
    """Refuse to add to a dataset built with another model, imgsz or layers."""
    info = store.audit_info(ds)
    if not info:
        raise ValueError(f"dataset {ds.name!r} exists but was not built by the auditor; "
                         "choose another name")
    if info.get("model_sha") != settings["model_sha"]:
        raise ValueError(f"dataset {ds.name!r} was ingested with model {info.get('model')} "
                         f"(sha {info.get('model_sha')}); refusing to resume with "
                         f"{settings['model']} (sha {settings['model_sha']})")
    for key in ("imgsz", "layers"):
        if info.get(key) != settings[key]:
            raise ValueError(f"dataset {ds.name!r} was ingested with {key}={info.get(key)}; "
                             f"refusing to resume with {key}={settings[key]}")


def decode_image(rec: ImageRecord) -> NDArray[np.uint8]:
    """Decode one image as ``HxWx3`` uint8 RGB with EXIF orientation applied (16-bit greyscale
    scaled to 8 bit as ultralytics reads it, see :func:`audit.data.images.rgb_array`).

    Raises:
        ValueError: naming the file, when it cannot be decoded or its size is not the header's.
    """
    try:
        with open_image(rec.filepath) as im:
            array = rgb_array(im)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{rec.record}: cannot decode {rec.filepath}: {exc}") from None
    if array.shape[:2] != (rec.height, rec.width):
        raise ValueError(f"{rec.record}: {rec.filepath} decodes to {array.shape[1]}x"
                         f"{array.shape[0]}, its header said {rec.width}x{rec.height}")
    return array


def batch_metadata(records: list[ImageRecord], class_names: Sequence[str]) -> list[
        tuple[dict[str, Any], dict[str, int]]]:
    """Ground-truth metadata per record (``audit.metadata``) and its box count per class name.

    Returns:
        One ``(metadata, class_counts)`` per record: metadata holds ``n_objects``,
        ``median_box_area``, ... (NaN -> None); class_counts maps every class name to its count.
    """
    from audit.metadata import METADATA_COLUMNS, count_column, sample_metadata

    keys = [str(i) for i in range(len(records))]
    samples = pd.DataFrame({"width": [r.width for r in records],
                            "height": [r.height for r in records]}, index=keys)
    rows = [(k, j, r) for k, r in zip(keys, records, strict=True) for j in range(len(r.labels))]
    xy = np.array([r.boxes[j] for _, j, r in rows], dtype=np.float64).reshape(-1, 4)
    boxes = pd.DataFrame({"sample_id": [k for k, _, _ in rows],
                          "box_id": [f"{k}-{j}" for k, j, _ in rows], "source": "gt",
                          "x1": xy[:, 0], "y1": xy[:, 1], "x2": xy[:, 2], "y2": xy[:, 3],
                          "label": [r.labels[j] for _, j, r in rows], "confidence": np.nan,
                          "iscrowd": [bool(r.iscrowd[j]) for _, j, r in rows]})
    meta = sample_metadata(boxes, samples, class_names=list(class_names))
    out = []
    for k in keys:
        row = meta.loc[k]
        values = {c: (None if pd.isna(row[c]) else float(row[c])) for c in METADATA_COLUMNS}
        values["n_objects"] = int(row["n_objects"])
        counts = {n: int(row[count_column(n)]) for n in class_names}
        out.append((values, counts))
    return out


def _build_samples(batch: list[tuple[str, ImageRecord]], results: list[Any],
                   class_names: list[str], probe_boxes: list[NDArray]) -> list[dict[str, Any]]:
    """Sample documents from records, their forward results and background probes."""
    metas = batch_metadata([rec for _, rec in batch], class_names)
    samples = []
    for (split, rec), res, (meta, counts), probes in zip(batch, results, metas, probe_boxes,
                                                         strict=True):
        file_name = {} if rec.file_name is None else {"file_name": rec.file_name}
        samples.append(file_name | sample_doc(
            str(rec.filepath), split, rec.width, rec.height, gt_boxes=rec.boxes,
            gt_labels=list(rec.labels), gt_iscrowd=rec.iscrowd, gt_coco_ids=rec.coco_ids,
            gt_features=res.gt_features, pred_boxes=res.pred_boxes,
            pred_labels=[class_names[int(c)] for c in res.pred_cls], pred_conf=res.pred_conf,
            pred_features=res.pred_features, loss=res.loss, embedding=res.embedding,
            metadata=meta, class_counts=counts, probe_boxes=probes,
            probe_features=res.probe_features))  # file_name: what a COCO export writes back
    return samples


def _settings(detector: Any, splits: list[CocoSplit], imgsz: int,
              layers: Sequence[int]) -> dict[str, Any]:
    """The ingest settings stored in ``info["audit"]``."""
    return {"model": str(Path(detector.path).resolve()), "model_sha": file_digest(detector.path),
            "imgsz": int(imgsz), "layers": [int(x) for x in layers],
            "class_names": list(detector.class_names), "conf": C.PRED_CONF, "iou": C.PRED_IOU,
            "max_det": C.MAX_DET, "feature_conf": C.FEATURE_CONF,
            "sources": {s.split: str(s.source) for s in splits}}


def _prepare(name: str, splits: list[CocoSplit], model: str | Path, imgsz: int, batch: int,
             device: str, layers: Sequence[int]) -> tuple[Any, dict[str, int], dict[str, Any]]:
    """Validate checkpoint, class names and knobs; returns (detector, class map, settings)."""
    if int(imgsz) <= 0 or int(imgsz) % 32:
        raise ValueError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    from audit.data.checkpoint import load_detector

    detector = load_detector(model, device=device, layers=layers)
    class_map: dict[str, int] = {}
    for s in splits:
        class_map |= check_class_names(s.used_class_names, detector.class_names,
                                       source=s.source.name, model=Path(model).name)
    return detector, class_map, _settings(detector, splits, imgsz, detector.layers)


def ingest(name: str, *, images: str | Path | None = None, train_json: str | Path | None = None,
           val_json: str | Path | None = None, data_yaml: str | Path | None = None,
           model: str | Path, imgsz: int = C.IMGSZ, batch: int = C.INGEST_BATCH,
           device: str = "cpu", layers: Sequence[int] = C.EMBED_LAYERS, progress: bool = True,
           progress_callback: ProgressCallback | None = None) -> fo.Dataset:
    """Ingest images, ground truth and a YOLO11 checkpoint into the persistent dataset ``name``.

    Args:
        name: FiftyOne dataset name; an existing auditor dataset is resumed.
        images: folder COCO ``file_name`` is relative to (with ``train_json`` / ``val_json``).
        train_json: COCO JSON of the train split (absolute px ``[x, y, w, h]`` boxes).
        val_json: COCO JSON of the val split.
        data_yaml: an ultralytics data.yaml instead of the three above.
        model: YOLO11 detection ``.pt`` checkpoint.
        imgsz: letterbox side in px (multiple of 32).
        batch: images per forward pass and per bulk write.
        device: torch device.
        layers: model layers pooled into the embedding and the per-box features.
        progress: show a tqdm bar (images/s).
        progress_callback: called after each batch with (fraction done, message); an exception
            it raises stops the ingest, keeping what was stored.

    Returns:
        The dataset, every image of the inputs in it once.

    Raises:
        ValueError: bad inputs, checkpoint, class names, settings or dataset name, inputs
            that give an image the dataset stores other labels (a resume never changes stored
            labels, :mod:`audit.data.ingest_check`; nothing is written for any of these), or
            an image that fails to decode although its header read (the batches
            before it stay stored; a dataset this call created and left empty is removed).

    Example:
        >>> ds = ingest("world", images="w/images", train_json="w/train.json",
        ...             val_json="w/val.json", model="demo_yolo11n.pt", imgsz=320)  # doctest: +SKIP
    """
    from audit.data.checkpoint import check_device

    new_dataset_name(name)  # also a folder of the review log: no separators, '..', long names
    check_device(device)  # before the inputs are read: a wrong option fails at once
    splits = read_inputs(images=images, train_json=train_json, val_json=val_json,
                         data_yaml=data_yaml)
    detector, class_map, settings = _prepare(name, splits, model, imgsz, batch, device, layers)
    ds, created = create_or_load(name, {**settings, "complete": False})
    if not created:
        _check_resume(ds, settings)
        check_labels_unchanged(ds, splits)
        ensure_unique_filepaths(ds)
    try:
        _add_batches(ds, splits, detector, class_map, imgsz, batch, progress, progress_callback)
    except BaseException:
        if created:  # nothing stored by this call's first dataset: leave no empty dataset behind
            with contextlib.suppress(Exception):
                if not len(ds):
                    ds.delete()
        raise
    store.update_audit_info(ds, complete=True, ingested_at=store.now_iso())
    store.replay_reviews(ds)  # warns of logged decisions a former dataset of this name left
    return ds


def _add_batches(ds: fo.Dataset, splits: list[CocoSplit], detector: Any,
                 class_map: dict[str, int], imgsz: int, batch: int, progress: bool,
                 progress_callback: ProgressCallback | None) -> None:
    """Decode, run and add the images not stored yet, one bulk write per batch."""
    done = store.stored_filepaths(ds)
    todo = [(s.split, r) for s in splits for r in s.images if str(r.filepath) not in done]
    total, n_done = len(todo) + len(done), len(done)
    bar = tqdm(total=len(todo), unit="img", desc=f"ingest {ds.name}", disable=not progress)
    with bar:
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            arrays = [decode_image(rec) for _, rec in chunk]
            gts = [_ground_truth(rec, class_map) for _, rec in chunk]
            probes = [background_probes(rec.boxes, rec.width, rec.height, seed=str(rec.filepath))
                      for _, rec in chunk]
            results = detector.forward(arrays, gts, imgsz=imgsz, layers=detector.layers,
                                       probes=probes)
            add_sample_docs(ds, _build_samples(chunk, results, detector.class_names, probes))
            bar.update(len(chunk))
            n_done += len(chunk)
            if progress_callback is not None:
                progress_callback(n_done / max(total, 1), f"ingested {n_done}/{total} images")


def _ground_truth(rec: ImageRecord, class_map: dict[str, int]) -> Any:
    """The model's GroundTruth (absolute px ``xyxy``, model class ids) of one record."""
    from audit.data.model import GroundTruth

    return GroundTruth(boxes=rec.boxes.astype(np.float32),
                       class_ids=np.array([class_map[n] for n in rec.labels], dtype=np.int64))
