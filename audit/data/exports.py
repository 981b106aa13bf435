"""Exports of the corrected labels (COCO JSON, YOLO txt), the relabel CSV and saved views.

Corrected labels = ``ground_truth_reviewed`` where a sample was reviewed, else ``ground_truth``
(see :func:`audit.data.review_store.corrected_detections`); they go through FiftyOne's own
exporters. Every export is atomic: it is written to a temporary file or folder inside ``out_dir``
and moved into place with ``os.replace``, so a failure leaves ``out_dir`` as it was; a YOLO
export replaces an older one only when that folder holds nothing but an export's files, and
refuses otherwise, naming the user's files (:mod:`audit.data.export_files`). Nothing is written
outside ``out_dir``; dataset names with path separators or ``..`` are refused. Files and folders
get the modes ``open`` and ``mkdir`` would give them, not a temporary file's 0600 / 0700.

Outputs (``<tag>`` = dataset name, plus ``-<split>`` when a split is given), in ``out_dir``, or
at ``out_dir`` itself when it ends in the format's suffix (``.json`` for coco, ``.csv`` for
relabel-csv) and is not a folder:

- ``coco``: ``<tag>-coco.json``; boxes ``[x, y, w, h]`` absolute px, category ids 1..K in the
  model's class order, attributes ``coco_id`` (original annotation id) and ``review_status``
  kept. ``file_name`` is the one of the COCO JSON the image was ingested from (relative to that
  ingest's ``--images``, also for a symlinked image); an image ingested from a data.yaml gets
  its path relative to the common folder of all the dataset's images. Both are the same whatever
  ``split`` is exported, so the export ingests again with the same ``--images``.
- ``yolo``: folder ``<tag>-yolo/`` with ``dataset.yaml``, ``labels/<split>/*.txt`` (class id,
  normalised cx cy w h) and ``images/<split>/`` symlinks to the original images (no copy), by
  file name (clashing names numbered); it ingests again with ``--data-yaml``.
  Crowd boxes (``iscrowd``) are left out, as ultralytics' own COCO converter does: YOLO txt has
  no crowd flag, and a crowd box as an ordinary object teaches the model a wrong box.
- ``relabel-csv``: ``<tag>-relabel.csv``, one row per flagged box or image not yet reviewed
  and per image marked for relabelling, with the decision, note, reviewer and time in force
  (:func:`audit.data.relabel.relabel_frame`); a dataset that is not scored has no flags and is
  refused.

:func:`run_export` also returns a one-line summary of what was written (the command line's
output); :func:`export` returns the path alone.
"""

from __future__ import annotations

import json
import os
import shlex
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fiftyone as fo
from fiftyone import ViewField as F

from audit import constants as C
from audit.boxes import coco_xywh_abs
from audit.data import store
from audit.data.export_files import atomic_dir, atomic_file, prepare_out_dir, quiet_merge_notice
from audit.data.relabel import relabel_frame
from audit.data.review_store import corrected_detections
from audit.data.views import flagged_view
from audit.reviews import safe_name

FORMATS = ("coco", "yolo", "relabel-csv")  # export formats offered
FILE_SUFFIXES = {"coco": ".json", "relabel-csv": ".csv"}  # an --out with this suffix is the file
CROWD = F("iscrowd").is_in([True, 1])  # a crowd box (COCO iscrowd=1)


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote.

    Attributes:
        path: the file (coco, relabel-csv) or folder (yolo) written.
        summary: one line saying what is in it (and what was left out).
    """

    path: Path
    summary: str


def _dataset(name_or_ds: str | fo.Dataset) -> fo.Dataset:
    """The dataset itself, or the one named (``ValueError`` if it does not exist), with every
    review decision its log holds applied (``store.replay_reviews``): an export never carries a
    label that a decision cut short by a crash has already replaced."""
    if isinstance(name_or_ds, fo.Dataset):
        store.replay_reviews(name_or_ds)
        return name_or_ds
    return store.load_dataset(safe_name(name_or_ds))


def class_names(view: fo.DatasetView | fo.Dataset) -> list[str]:
    """Class list for export: the model's classes (``info["audit"]``) then any other label."""
    names = list((view._root_dataset.info or {}).get("audit", {}).get("class_names") or [])
    used = view.distinct("ground_truth.detections.label") if len(view) else []
    return names + sorted(set(used) - set(names))


def _image_root(view: fo.DatasetView) -> str | None:
    """Deepest folder holding every image of the dataset of ``view`` (keeps file names unique,
    and the same whichever split is exported)."""
    paths = view._root_dataset.values("filepath")
    return os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else None


def _ingest_file_names(view: fo.DatasetView, root: str | None) -> dict[str, str]:
    """FiftyOne's COCO ``file_name`` (the filepath relative to ``root``) -> the ``file_name``
    the image had in the COCO JSON it was ingested from, where that differs (a symlinked image
    is stored as the file it points to)."""
    if root is None or "file_name" not in view.get_field_schema():
        return {}
    pairs = zip(view.values("filepath"), view.values("file_name"), strict=True)
    return {rel: name for path, name in pairs if name is not None
            and (rel := os.path.relpath(path, root)) != name}


def _rename_images(labels: Path, names: dict[str, str]) -> None:
    """Rewrite the ``file_name`` of the images of a COCO JSON by ``names``."""
    if not names:
        return
    data = json.loads(labels.read_text(encoding="utf-8"))
    for image in data.get("images", []):
        image["file_name"] = names.get(image["file_name"], image["file_name"])
    labels.write_text(json.dumps(data), encoding="utf-8")


def _counts(view: fo.DatasetView) -> str:
    """``"<n> images, <m> boxes"`` of a view's corrected labels."""
    return f"{len(view)} images, {view.count('ground_truth.detections')} boxes"


def _exact_boxes(labels: Path, view: fo.DatasetView, root: str | None) -> None:
    """Rewrite each annotation's ``bbox`` (and ``area``) of a COCO JSON FiftyOne just wrote
    with the values the box was ingested with (:func:`audit.boxes.coco_xywh_abs`): FiftyOne
    multiplies the relative box back, which moves most boxes by a rounding error. FiftyOne
    writes an image's annotations in the order of its detections; an image whose count differs
    is left as written."""
    if root is None or not len(view):
        return
    data = json.loads(labels.read_text(encoding="utf-8"))
    boxes = view.values(["filepath", "metadata.width", "metadata.height",
                         "ground_truth.detections.bounding_box"])
    by_name = {os.path.relpath(path, root): (w, h, dets or [])
               for path, w, h, dets in zip(*boxes, strict=True)}
    anns: dict[Any, list[dict]] = {}
    for ann in data.get("annotations", []):
        anns.setdefault(ann["image_id"], []).append(ann)
    for image in data.get("images", []):
        width, height, dets = by_name.get(image["file_name"], (None, None, []))
        mine = anns.get(image["id"], [])
        if width and height and len(mine) == len(dets):
            for ann, rel in zip(mine, dets, strict=True):
                ann["bbox"] = coco_xywh_abs(rel, width, height)
                ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    labels.write_text(json.dumps(data), encoding="utf-8")


def _export_coco(view: fo.DatasetView, final: Path) -> str:
    """COCO detection JSON of the corrected labels, labels only; returns what it holds."""
    root = _image_root(view)
    with atomic_file(final) as tmp:
        view.export(dataset_type=fo.types.COCODetectionDataset, labels_path=str(tmp),
                    label_field="ground_truth", export_media=False, rel_dir=root,
                    classes=class_names(view), extra_attrs=["coco_id", "review_status"],
                    progress=False)
        _exact_boxes(tmp, view, root)
        _rename_images(tmp, _ingest_file_names(view, root))
    return f"{_counts(view)} as COCO JSON"


def _export_yolo(view: fo.DatasetView, final: Path) -> str:
    """YOLO txt labels per split, images symlinked, dataset.yaml with the class names; crowd
    boxes left out (YOLO has no crowd flag). Returns what it holds and what it left out.

    Images are linked by their file name alone (``images/<split>/0.png``; FiftyOne numbers
    clashing names): a path kept below the images' common folder could hold a folder named
    ``images``, and ultralytics (as the data.yaml reader) finds a label file by replacing the
    last ``images`` of the image's path with ``labels``."""
    classes = class_names(view)
    n_crowd = view.filter_labels("ground_truth", CROWD).count("ground_truth.detections") \
        if len(view) else 0
    kept = view.filter_labels("ground_truth", ~CROWD, only_matches=False)
    with atomic_dir(final) as tmp, quiet_merge_notice(tmp):
        splits = [s for s in C.SPLITS if s in set(view.distinct("split"))] or ["train"]
        for split in splits:
            part = kept.match(F("split") == split) if "split" in view.get_field_schema() else kept
            part.export(export_dir=str(tmp), dataset_type=fo.types.YOLOv5Dataset,
                        label_field="ground_truth", split=split, classes=classes,
                        export_media="symlink", include_path=False, progress=False)
    left_out = (f"; {n_crowd} crowd box(es) (iscrowd=1) left out, as ultralytics' COCO "
                "converter does: YOLO txt has no crowd flag" if n_crowd else "")
    return f"{_counts(kept)} as YOLO txt{left_out}"


def export(name_or_ds: str | fo.Dataset, fmt: str, out_dir: str | Path, *,
           split: str | None = None) -> Path:
    """Export corrected annotations or the relabel list of a dataset into ``out_dir``.

    Args:
        name_or_ds: dataset name or the dataset.
        fmt: ``"coco"``, ``"yolo"`` or ``"relabel-csv"``.
        out_dir: folder to write into (created if missing); for coco / relabel-csv a path
            ending in ``.json`` / ``.csv`` that is not a folder is the file to write.
        split: ``"train"``, ``"val"`` or None for every sample.

    Returns:
        Path of the written file (coco, relabel-csv) or folder (yolo), inside ``out_dir``
        (or ``out_dir`` itself, when it names the file).

    Raises:
        ValueError: unknown dataset, format or split; unsafe dataset name; ``out_dir`` is a file
            or is not writable; the output name is taken by a folder (coco, relabel-csv) or a
            file (yolo); a relabel list of a dataset that is not scored. Nothing is written then.

    Example:
        >>> export("yolo-audit-demo", "coco", "exports")  # doctest: +SKIP
        PosixPath('exports/yolo-audit-demo-coco.json')
    """
    return run_export(name_or_ds, fmt, out_dir, split=split).path


def run_export(name_or_ds: str | fo.Dataset, fmt: str, out_dir: str | Path, *,
               split: str | None = None) -> ExportResult:
    """:func:`export`, returning the path and a one-line summary of what was written.

    Example:
        >>> print(run_export("yolo-audit-demo", "yolo", "exports").summary)  # doctest: +SKIP
        exports/yolo-audit-demo-yolo: 600 images, 5012 boxes as YOLO txt; 3 crowd box(es) ...
    """
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {fmt!r}")
    if split is not None and split not in C.SPLITS:
        raise ValueError(f"split must be one of {C.SPLITS} or None, got {split!r}")
    ds = _dataset(name_or_ds)
    if fmt == "relabel-csv":
        store.check_scores_complete(ds)  # half-written scores would list a wrong set of boxes
    if fmt == "relabel-csv" and "flagged" not in ds.get_field_schema():
        raise ValueError(f"dataset {ds.name!r} is not scored, so it has no flags to list: run "
                         f"`python -m audit score --name {shlex.quote(ds.name)}` first")
    tag = safe_name(ds.name) + (f"-{split}" if split else "")
    writers: dict[str, tuple[str, Callable[[Any, Path], str]]] = {
        "coco": (f"{tag}-coco.json", _export_coco),
        "yolo": (f"{tag}-yolo", _export_yolo),
        "relabel-csv": (f"{tag}-relabel.csv", _write_relabel_csv),
    }
    file_name, writer = writers[fmt]
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() == FILE_SUFFIXES.get(fmt) and not out_dir.is_dir():
        out_dir, final = out_dir.parent, out_dir  # --out relabel.csv: that file, not a folder
    else:
        final = out_dir / safe_name(file_name, "output file name")
    if fmt == "yolo" and (final.is_symlink() or final.exists()) and not final.is_dir():
        raise ValueError(f"{final} exists and is not a folder; the yolo export writes a folder "
                         "there (move the file away)")
    if fmt != "yolo" and final.is_dir():
        raise ValueError(f"{final} exists and is a folder; the {fmt} export writes a file there "
                         "(move the folder away)")
    prepare_out_dir(out_dir)
    view = corrected_detections(ds)
    if split is not None:
        view = view.match(F("split") == split)
    if not len(view):
        warnings.warn(f"dataset {ds.name!r}{f' split {split}' if split else ''} has no "
                      "samples: the export is empty", stacklevel=2)
    what = writer(view if fmt != "relabel-csv" else (ds, split), final)
    return ExportResult(final, f"{final}: {what}")


def _write_relabel_csv(ds_split: tuple[fo.Dataset, str | None], final: Path) -> str:
    """Write :func:`relabel_frame` as CSV, atomically; returns what it holds."""
    ds, split = ds_split
    frame = relabel_frame(ds, split=split)
    with atomic_file(final) as tmp:
        frame.to_csv(tmp, index=False)
    n_boxes = int(frame["box_id"].notna().sum())
    return (f"{len(frame)} rows to relabel ({n_boxes} flagged boxes not yet reviewed, "
            f"{len(frame) - n_boxes} image rows)")


def save_flagged_view(name_or_ds: str | fo.Dataset, name: str = "flagged") -> str:
    """Save the flagged samples (most mistaken first) as a FiftyOne saved view; returns its name.

    Opens in the FiftyOne App's view bar. An existing saved view of that name is replaced.

    Raises:
        ValueError: unknown dataset, unsafe view name, or a dataset that is not scored yet.
    """
    name = safe_name(name, "view name")
    ds = _dataset(name_or_ds)
    store.check_scores_complete(ds)
    if "flagged" not in ds.get_field_schema():
        raise ValueError(f"dataset {ds.name!r} is not scored yet (no 'flagged' field)")
    ds.save_view(name, flagged_view(ds), overwrite=True)
    return name
