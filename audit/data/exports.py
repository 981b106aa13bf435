"""Exports of the corrected labels (COCO JSON, YOLO txt), the relabel CSV and saved views.

Corrected labels = ``ground_truth_reviewed`` where a sample was reviewed, else ``ground_truth``
(see :func:`audit.data.review_store.corrected_detections`); they go through FiftyOne's own
exporters. Every export is atomic: it is written to a temporary file or folder inside ``out_dir``
and moved into place with ``os.replace``, so a failure leaves ``out_dir`` as it was (a folder
export that replaces an older one swaps two renames; the old copy is removed after the swap).
Nothing is written outside ``out_dir``; dataset names with path separators or ``..`` are refused.

Outputs (``<tag>`` = dataset name, plus ``-<split>`` when a split is given):

- ``coco``: ``<tag>-coco.json``; boxes ``[x, y, w, h]`` absolute px, category ids 1..K in the
  model's class order, ``file_name`` relative to the images' common folder, attributes
  ``coco_id`` (original annotation id) and ``review_status`` kept.
- ``yolo``: folder ``<tag>-yolo/`` with ``dataset.yaml``, ``labels/<split>/*.txt`` (class id,
  normalised cx cy w h) and ``images/<split>/`` symlinks to the original images (no copy).
- ``relabel-csv``: ``<tag>-relabel.csv``, one row per flagged box or image (see
  :func:`relabel_frame`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fiftyone as fo
import pandas as pd
from fiftyone import ViewField as F

from audit import constants as C
from audit import issues as I
from audit.config import ScoringConfig
from audit.data.review_store import REVIEWED_FIELD, corrected_detections
from audit.data.views import flagged_view, scoring_config
from audit.mistakenness import is_flagged
from audit.reviews import safe_name

FORMATS = ("coco", "yolo", "relabel-csv")  # export formats offered
BOX_ISSUES = I.GT_ISSUES  # issues scored on gt boxes (audit/issues.py)
PRED_ISSUES = I.PRED_ISSUES  # issues scored on prediction boxes
RELABEL_COLUMNS = ("sample_id", "filepath", "split", "issue", "score", "x1", "y1", "x2", "y2",
                   "current_label", "suggested_label", "review_status", "box_id")


def _dataset(name_or_ds: str | fo.Dataset) -> fo.Dataset:
    """The dataset itself, or the one named (``ValueError`` if it does not exist)."""
    if isinstance(name_or_ds, fo.Dataset):
        return name_or_ds
    name = safe_name(name_or_ds)
    if not fo.dataset_exists(name):
        raise ValueError(f"no dataset named {name!r}")
    return fo.load_dataset(name)


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and check it is a writable folder (``ValueError`` naming it).

    ``os.access`` answers for the real user (it says no to a 0o500 folder unless run as root); the
    probe file then catches what it cannot see (read-only mounts, root on some file systems).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file, not a folder")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {out} is not writable (permission denied)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"output folder {out} is not writable ({exc.strerror or exc})") from None
    return out


@contextlib.contextmanager
def _atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success fsync it and ``os.replace`` it."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success swap it into place."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    old = None
    try:
        yield tmp
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old / "previous")
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def class_names(view: fo.DatasetView | fo.Dataset) -> list[str]:
    """Class list for export: the model's classes (``info["audit"]``) then any other label."""
    names = list((view._root_dataset.info or {}).get("audit", {}).get("class_names") or [])
    used = view.distinct("ground_truth.detections.label") if len(view) else []
    return names + sorted(set(used) - set(names))


def _image_root(view: fo.DatasetView) -> str | None:
    """Deepest folder holding every image of ``view`` (keeps file names unique)."""
    paths = view.values("filepath")
    return os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else None


def _export_coco(view: fo.DatasetView, final: Path) -> None:
    """COCO detection JSON of the corrected labels, labels only."""
    with _atomic_file(final) as tmp:
        view.export(dataset_type=fo.types.COCODetectionDataset, labels_path=str(tmp),
                    label_field="ground_truth", export_media=False, rel_dir=_image_root(view),
                    classes=class_names(view), extra_attrs=["coco_id", "review_status"],
                    progress=False)


def _export_yolo(view: fo.DatasetView, final: Path) -> None:
    """YOLO txt labels per split, images symlinked, dataset.yaml with the class names."""
    classes, root = class_names(view), _image_root(view)
    with _atomic_dir(final) as tmp:
        splits = [s for s in C.SPLITS if s in set(view.distinct("split"))] or ["train"]
        for split in splits:
            part = view.match(F("split") == split) if "split" in view.get_field_schema() else view
            part.export(export_dir=str(tmp), dataset_type=fo.types.YOLOv5Dataset,
                        label_field="ground_truth", split=split, classes=classes,
                        export_media="symlink", rel_dir=root, include_path=False, progress=False)


def export(name_or_ds: str | fo.Dataset, fmt: str, out_dir: str | Path, *,
           split: str | None = None) -> Path:
    """Export corrected annotations or the relabel list of a dataset into ``out_dir``.

    Args:
        name_or_ds: dataset name or the dataset.
        fmt: ``"coco"``, ``"yolo"`` or ``"relabel-csv"``.
        out_dir: folder to write into (created if missing).
        split: ``"train"``, ``"val"`` or None for every sample.

    Returns:
        Path of the written file (coco, relabel-csv) or folder (yolo), inside ``out_dir``.

    Raises:
        ValueError: unknown dataset, format or split; unsafe dataset name; ``out_dir`` is a file
            or is not writable; the output name is taken by a folder (coco, relabel-csv) or a
            file (yolo). Nothing is written then.

    Example:
        >>> export("yolo-audit-demo", "coco", "exports")  # doctest: +SKIP
        PosixPath('exports/yolo-audit-demo-coco.json')
    """
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {fmt!r}")
    if split is not None and split not in C.SPLITS:
        raise ValueError(f"split must be one of {C.SPLITS} or None, got {split!r}")
    ds = _dataset(name_or_ds)
    tag = safe_name(ds.name) + (f"-{split}" if split else "")
    writers: dict[str, tuple[str, Callable[[Any, Path], None]]] = {
        "coco": (f"{tag}-coco.json", _export_coco),
        "yolo": (f"{tag}-yolo", _export_yolo),
        "relabel-csv": (f"{tag}-relabel.csv", _write_relabel_csv),
    }
    file_name, writer = writers[fmt]
    final = Path(out_dir) / safe_name(file_name, "output file name")
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
    writer(view if fmt != "relabel-csv" else (ds, split), final)
    return final


def _write_relabel_csv(ds_split: tuple[fo.Dataset, str | None], final: Path) -> None:
    """Write :func:`relabel_frame` as CSV, atomically."""
    ds, split = ds_split
    frame = relabel_frame(ds, split=split)
    with _atomic_file(final) as tmp:
        frame.to_csv(tmp, index=False)


def _score(det: Any, issue: str) -> float:
    """``<issue>_score`` attribute of a detection, NaN when absent."""
    value = det.get_field(f"{issue}_score") if det.has_field(f"{issue}_score") else None
    return float(value) if value is not None else float("nan")


def _xyxy(det: Any, width: float, height: float) -> list[float]:
    """FiftyOne relative ``[x, y, w, h]`` -> absolute px ``[x1, y1, x2, y2]``."""
    x, y, w, h = det.bounding_box
    return [x * width, y * height, (x + w) * width, (y + h) * height]


def _box_rows(sample: dict[str, Any], config: ScoringConfig) -> list[dict[str, Any]]:
    """Relabel rows of one sample's flagged boxes (gt issues, then missing predictions), flagged
    at ``config``'s thresholds."""
    thresholds = config.flag_thresholds()
    reviewed = {d.id: d for d in sample["reviewed"].detections} if sample["reviewed"] else None
    accepted = {d.get_field("accepted_from") for d in (reviewed or {}).values()
                if d.has_field("accepted_from")}
    rows = []
    for source, issues in (("gt", BOX_ISSUES), ("pred", PRED_ISSUES)):
        labels = sample[source]
        for det in labels.detections if labels else []:
            scores = {i: _score(det, i) for i in issues}
            hits = {i: s for i, s in scores.items() if is_flagged(
                i, s, det.confidence, threshold=thresholds[i],
                missing_flag_conf=config.missing_flag_conf)}
            if not hits:
                continue
            issue = max(hits, key=hits.get)
            current, status = det, "unreviewed"
            if source == "gt" and reviewed is not None:
                current = reviewed.get(det.id)
                status = "deleted" if current is None else (
                    current.get_field("review_status") if current.has_field("review_status")
                    and current.get_field("review_status") else "unreviewed")
            if source == "pred":
                current, status = None, "fixed" if det.id in accepted else "unreviewed"
            suggested = det.get_field("suggested_label") if det.has_field("suggested_label") \
                else (det.label if source == "pred" else None)
            box = _xyxy(current or det, sample["width"], sample["height"])
            rows.append({"issue": issue, "score": hits[issue], "x1": box[0], "y1": box[1],
                         "x2": box[2], "y2": box[3], "box_id": det.id, "review_status": status,
                         "current_label": current.label if current is not None else "",
                         "suggested_label": suggested or ""})
    return rows


def relabel_frame(ds: fo.Dataset, *, split: str | None = None) -> pd.DataFrame:
    """The relabel list: one row per flagged box or flagged image, highest score first.

    A box is listed when one of its ``<issue>_score`` attributes flags it
    (:func:`audit.mistakenness.is_flagged` at the thresholds stored with the dataset's scores,
    :func:`audit.data.store.scoring_config`; ``missing`` is scored on prediction boxes and needs
    their confidence to reach its ``missing_flag_conf``);
    ``issue``/``score`` are its highest one. An image is listed once more for each issue in its
    ``flagged`` list that no box row covers (e.g. ``partial_labels``), with an empty box.
    Coordinates are the corrected box in absolute px ``xyxy``; ``review_status`` is the box's
    (``deleted`` when review removed it), or the sample's for image rows. Higher score = more
    likely wrong.

    Returns:
        A frame with columns ``RELABEL_COLUMNS`` (empty with those columns if nothing is flagged).
    """
    view = ds.match(F("split") == split) if split is not None else ds.view()
    schema = view.get_field_schema()
    paths = {"id": "id", "filepath": "filepath", "width": "metadata.width",
             "height": "metadata.height", "gt": "ground_truth", "pred": "predictions"}
    paths |= {k: k for k in ("split", "flagged", "review_status") if k in schema}
    issues = I.NAMES
    paths |= {f"{i}_score": f"{i}_score" for i in issues if f"{i}_score" in schema}
    if REVIEWED_FIELD in schema:
        paths["reviewed"] = REVIEWED_FIELD
    values = dict(zip(paths, view.values(list(paths.values())), strict=True))
    config = scoring_config(ds)
    rows = []
    for i, sample_id in enumerate(values["id"]):
        sample = {"reviewed": None} | {k: values[k][i] for k in paths}
        if not sample["width"] or not sample["height"]:
            raise ValueError(f"sample {sample_id} ({sample['filepath']}) has no image size")
        box_rows = _box_rows(sample, config)
        covered = {r["issue"] for r in box_rows}
        for issue in sorted(set(sample.get("flagged") or []) - covered):
            score = sample.get(f"{issue}_score")
            box_rows.append({"issue": issue, "score": float("nan") if score is None else score,
                             "review_status": sample.get("review_status") or "unreviewed"})
        for row in box_rows:
            rows.append({"sample_id": sample_id, "filepath": sample["filepath"],
                         "split": sample.get("split"), **row})
    frame = pd.DataFrame(rows, columns=list(RELABEL_COLUMNS))
    return frame.sort_values("score", ascending=False, na_position="last", kind="stable") \
        .reset_index(drop=True)


def save_flagged_view(name_or_ds: str | fo.Dataset, name: str = "flagged") -> str:
    """Save the flagged samples (most mistaken first) as a FiftyOne saved view; returns its name.

    Opens in the FiftyOne App's view bar. An existing saved view of that name is replaced.

    Raises:
        ValueError: unknown dataset, unsafe view name, or a dataset that is not scored yet.
    """
    name = safe_name(name, "view name")
    ds = _dataset(name_or_ds)
    if "flagged" not in ds.get_field_schema():
        raise ValueError(f"dataset {ds.name!r} is not scored yet (no 'flagged' field)")
    ds.save_view(name, flagged_view(ds), overwrite=True)
    return name
