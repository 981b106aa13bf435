"""The FiftyOne dataset: datasets, bulk reads (frames) and bulk writes of audit results.

With :mod:`audit.data.sample_docs` (which builds and inserts the samples), the only code that
reads and writes the persistent dataset (schema in
docs/ARCHITECTURE.md). Reads use ``values()`` over whole fields, writes use ``set_values`` (nested
lists for detection attributes); nothing loops over samples calling ``save()``.

Boxes: FiftyOne stores relative ``[x, y, w, h]`` in [0, 1]; every frame leaving this module holds
absolute pixel ``xyxy`` floats. Scores keep the auditor's direction: higher = more likely wrong,
NaN = does not apply.
"""

from __future__ import annotations

import contextlib
import shlex
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import fiftyone as fo
import numpy as np
import pandas as pd
from fiftyone import ViewField as F
from numpy.typing import NDArray

from audit.boxes import xywh_rel_to_xyxy_abs
from audit.config import FIELD_NAMES, ScoringConfig
from audit.data.database import check_database
from audit.data.review_store import replay_log
from audit.metadata import count_column

AUDIT_KEY = "audit"  # dataset.info key holding ingest settings, insights and scored_at
CONFIG_KEY = "scoring_config"  # info["audit"] key: the ScoringConfig.to_dict() of the last scoring
# info["audit"] key present while a scoring (or re-flag) run writes, removed by its commit: a run
# killed or failed mid-write leaves it, and readers refuse or warn on the half-written scores
INCOMPLETE_KEY = "scoring_incomplete"
LABEL_FIELDS = {"gt": "ground_truth", "pred": "predictions"}  # boxes-frame source -> field
# label-sized boxes on background with the model's feature there, drawn at ingest: the sites of
# the calibration's decoy spurious labels (audit.calibration)
PROBE_FIELD = "background_probes"
LOSS_FIELDS = ("loss_box", "loss_cls", "loss_dfl", "loss")
BOX_ATTRIBUTES = ("coco_id", "suggested_label", "review_status")  # optional per-box columns
_SKIP_FIELDS = {"id", "filepath", "tags", "metadata", "created_at", "last_modified_at",
                "ground_truth", "predictions", "embedding", "class_counts", "file_name"}


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string (seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- datasets ------------------------------------------------------------------------------------

def list_audit_datasets() -> list[str]:
    """Names of the persistent datasets built by the auditor (they carry ``info["audit"]``).

    Example:
        >>> list_audit_datasets()  # doctest: +SKIP
        ['yolo-audit-demo']
    """
    check_database()
    names = []
    for name in fo.list_datasets():
        try:
            ds = fo.load_dataset(name)
        except Exception:  # a dataset another FiftyOne version wrote: not ours to list
            continue
        if isinstance((ds.info or {}).get(AUDIT_KEY), dict):
            names.append(name)
    return names


def load_dataset(name: str) -> fo.Dataset:
    """Load the persistent dataset ``name``, with any review decision that a crash cut short
    applied from its log (:func:`replay_reviews`).

    Raises:
        ValueError: ``no dataset named X; known: ...`` when it does not exist.
    """
    check_database()  # the database FiftyOne's settings choose, not another process's
    if not fo.dataset_exists(name):
        known = ", ".join(list_audit_datasets()) or "none"
        raise ValueError(f"no dataset named {name!r}; known: {known}")
    ds = fo.load_dataset(name)
    replay_reviews(ds)
    return ds


def replay_reviews(ds: fo.Dataset) -> int:
    """Apply the review decisions that the dataset's log holds but the dataset does not (a
    process killed between the log append and the dataset update), so every reader and exporter
    sees what the reviewers decided; returns how many were applied (0, cheaply, most times).
    See :func:`audit.data.review_store.replay_log`."""
    return replay_log(ds, progress=False)


def create_dataset(name: str, settings: dict[str, Any]) -> fo.Dataset:
    """Create the persistent, empty dataset ``name`` with ``info["audit"] = settings``."""
    check_database()
    ds = fo.Dataset(name, persistent=True)
    ds.info = {AUDIT_KEY: dict(settings)}
    ds.save()
    return ds


def audit_info(ds: fo.Dataset) -> dict[str, Any]:
    """A copy of ``ds.info["audit"]`` (empty dict when absent)."""
    return dict((ds.info or {}).get(AUDIT_KEY) or {})


def update_audit_info(ds: fo.Dataset, **values: Any) -> None:
    """Merge ``values`` into ``ds.info["audit"]`` and save."""
    _save_audit_info(ds, {**audit_info(ds), **values})


@contextlib.contextmanager
def scoring_run(ds: fo.Dataset, what: str = "scoring") -> Iterator[None]:
    """Mark ``ds`` as being scored while the block writes; commit (unmark) only when it ends.

    The mark (``info["audit"][INCOMPLETE_KEY]``: what, when) is saved before the first write and
    ``scored_at`` is dropped with it, so a run killed or failed mid-write leaves a dataset that
    :func:`score_state` calls ``"incomplete"``, never a mix of old and new scores that looks
    finished. The commit removes the mark (the block sets ``scored_at`` again).
    """
    info = audit_info(ds)
    info.pop("scored_at", None)
    info[INCOMPLETE_KEY] = {"what": what, "started_at": now_iso()}
    _save_audit_info(ds, info)
    yield
    info = audit_info(ds)
    info.pop(INCOMPLETE_KEY, None)
    _save_audit_info(ds, info)


def _save_audit_info(ds: fo.Dataset, audit: dict[str, Any]) -> None:
    """Replace ``ds.info["audit"]`` by ``audit`` and save."""
    ds.info = {**dict(ds.info or {}), AUDIT_KEY: audit}
    ds.save()


def score_state(ds: fo.Dataset) -> str:
    """``"scored"``, ``"unscored"`` or ``"incomplete"`` (a scoring run that did not commit: it
    was killed, failed, or is still writing)."""
    info = audit_info(ds)
    if info.get(INCOMPLETE_KEY):
        return "incomplete"
    return "scored" if info.get("scored_at") else "unscored"


def incomplete_message(ds: fo.Dataset) -> str | None:
    """What to tell a reader of a dataset whose last scoring did not finish, else None."""
    mark = audit_info(ds).get(INCOMPLETE_KEY)
    if not mark:
        return None
    mark = mark if isinstance(mark, dict) else {}
    return (f"dataset {ds.name!r}: its last {mark.get('what', 'scoring')} (started "
            f"{mark.get('started_at', '?')} UTC) did not finish (killed, failed or still "
            "running), so its score fields are partly written: score it again "
            f"(`python -m audit score --name {shlex.quote(ds.name)} --full`)")


def check_scores_complete(ds: fo.Dataset) -> None:
    """ValueError (:func:`incomplete_message`) when the last scoring of ``ds`` did not finish."""
    message = incomplete_message(ds)
    if message:
        raise ValueError(message)


def stored_scoring_config(ds: fo.Dataset) -> ScoringConfig | None:
    """The :class:`audit.config.ScoringConfig` stored with the dataset's scores, None if none is.

    Settings this version does not know (a dataset scored by another version) are dropped with
    a warning; the others keep their stored values.
    """
    stored = audit_info(ds).get(CONFIG_KEY)
    if not isinstance(stored, dict):
        return None
    unknown = sorted(set(stored) - set(FIELD_NAMES))
    if unknown:
        warnings.warn(f"dataset {ds.name!r}: ignoring unknown stored scoring settings {unknown}",
                      stacklevel=2)
    return ScoringConfig.from_dict({k: v for k, v in stored.items() if k in FIELD_NAMES})


def scoring_config(ds: fo.Dataset) -> ScoringConfig:
    """The config the dataset was scored with, or the defaults when none is stored: the flag
    thresholds views and exports apply (``flag_thresholds()``, ``missing_flag_conf``).

    Example:
        >>> scoring_config(load_dataset("yolo-audit-demo")).flag_thresholds()  # doctest: +SKIP
    """
    return stored_scoring_config(ds) or ScoringConfig()


def stored_filepaths(ds: fo.Dataset) -> set[str]:
    """Filepaths of the samples already in ``ds`` (the resume key of ingest)."""
    return set(ds.values("filepath")) if len(ds) else set()


def plain_value(value: Any) -> Any:
    """numpy scalars -> Python scalars, NaN -> None (MongoDB-friendly)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- bulk reads ----------------------------------------------------------------------------------

def _frame_fields(ds: fo.Dataset) -> list[str]:
    """Top-level scalar fields (plus ``flagged`` and ``proj_*``) of the samples frame."""
    out = []
    for name, fld in ds.get_field_schema().items():
        if name in _SKIP_FIELDS or name.startswith("_"):
            continue
        if name == "flagged" or name.startswith("proj_") or not isinstance(
                fld, fo.ListField | fo.DictField | fo.EmbeddedDocumentField):
            out.append(name)
    return out


def samples_frame(ds: fo.Dataset) -> tuple[pd.DataFrame, NDArray[np.float32]]:
    """One row per sample and the aligned image embeddings.

    Returns:
        ``(frame, embeddings)``: frame indexed by ``sample_id`` with ``filepath``, ``split``,
        ``width``, ``height`` (px), losses, metadata, ``count_<class>`` per class and, after
        scoring, scores / ``cluster`` / ``proj_<method>_x|_y`` / ``flagged`` (tuple of issues);
        embeddings ``(n_samples, D)`` float32 (``(n, 0)`` when none are stored).

    Example:
        >>> frame, emb = samples_frame(load_dataset("yolo-audit-demo"))  # doctest: +SKIP
    """
    fields = _frame_fields(ds)
    base = ["id", "filepath", "metadata.width", "metadata.height", "class_counts", "embedding"]
    values = dict(zip(base + fields, ds.values(base + fields), strict=True)) if len(ds) else {}
    get = lambda k: values.get(k, [])  # noqa: E731
    frame = pd.DataFrame({"sample_id": get("id"), "filepath": get("filepath"),
                          "width": get("metadata.width"), "height": get("metadata.height")})
    for f in fields:
        col = get(f)
        if f.startswith("proj_"):
            xy = np.array([v if v is not None else [np.nan, np.nan] for v in col],
                          dtype=float).reshape(-1, 2)
            frame[f"{f}_x"], frame[f"{f}_y"] = xy[:, 0], xy[:, 1]
        elif f == "flagged":
            frame[f] = [tuple(v or ()) for v in col]
        else:
            frame[f] = [np.nan if v is None else v for v in col]
    classes = list(audit_info(ds).get("class_names") or [])
    counts = pd.DataFrame([c or {} for c in get("class_counts")], index=frame.index, dtype=float)
    for name in dict.fromkeys([*classes, *counts.columns]):
        col = counts[name] if name in counts else pd.Series(0.0, index=frame.index)
        frame[count_column(name)] = col.fillna(0).astype(np.int64).to_numpy()
    frame = frame.set_index("sample_id")
    emb_list = get("embedding")
    dim = max((len(e) for e in emb_list if e is not None), default=0)
    emb = np.full((len(frame), dim), np.nan, dtype=np.float32)
    for i, e in enumerate(emb_list):
        if e is not None and len(e) == dim:
            emb[i] = e
    return frame, emb


def _box_attribute_fields(ds: fo.Dataset, field: str) -> list[str]:
    """Optional detection attributes present on ``field`` (scores, suggested label, ...)."""
    schema = ds.get_field_schema(flat=True)
    prefix = f"{field}.detections."
    names = [k.removeprefix(prefix) for k in schema if k.startswith(prefix)]
    return [n for n in names if n.endswith("_score") or n in BOX_ATTRIBUTES]


def _flatten(nested: list[list[Any] | None]) -> list[Any]:
    """Concatenate per-sample lists (None = no detections)."""
    return [v for row in nested for v in (row or [])]


def _source_frame(view: Any, source: str, with_features: bool,
                  extra: list[str]) -> tuple[pd.DataFrame, list[Any]]:
    """Boxes of one label field as a frame (+ raw feature lists)."""
    field = PROBE_FIELD if source == "probe" else LABEL_FIELDS[source]
    paths = ["id", "metadata.width", "metadata.height", f"{field}.detections.id",
             f"{field}.detections.bounding_box", f"{field}.detections.label",
             f"{field}.detections.confidence", f"{field}.detections.iscrowd",
             *(f"{field}.detections.{a}" for a in extra)]
    if with_features:
        paths.append(f"{field}.detections.feature")
    vals = (dict(zip(paths, view.values(paths), strict=True)) if len(view)
            else {p: [] for p in paths})
    ids = vals[f"{field}.detections.id"]
    n_per = [len(r or []) for r in ids]
    width = np.repeat(np.asarray(vals["metadata.width"], dtype=float), n_per)
    height = np.repeat(np.asarray(vals["metadata.height"], dtype=float), n_per)
    xyxy = xywh_rel_to_xyxy_abs(np.array(_flatten(vals[f"{field}.detections.bounding_box"]),
                                     dtype=float), width, height)
    conf = np.array([np.nan if c is None else c
                     for c in _flatten(vals[f"{field}.detections.confidence"])], dtype=float)
    frame = pd.DataFrame({
        "sample_id": np.repeat(np.asarray(vals["id"], dtype=object), n_per),
        "box_id": _flatten(ids), "source": source,
        "x1": xyxy[:, 0], "y1": xyxy[:, 1], "x2": xyxy[:, 2], "y2": xyxy[:, 3],
        "label": _flatten(vals[f"{field}.detections.label"]),
        "confidence": conf if source == "pred" else np.full(len(conf), np.nan),
        "iscrowd": [bool(v) for v in _flatten(vals[f"{field}.detections.iscrowd"])]})
    for a in extra:
        col = _flatten(vals[f"{field}.detections.{a}"])
        frame[a] = [np.nan if v is None else v for v in col] if a.endswith("_score") else col
    feats = _flatten(vals[f"{field}.detections.feature"]) if with_features else []
    return frame, feats


def boxes_frame(ds: fo.Dataset, *, min_confidence: float = 0.0,
                with_features: bool = True) -> tuple[pd.DataFrame, NDArray[np.float32] | None]:
    """One row per box, ground truth then predictions, and the aligned per-box features.

    Args:
        ds: the dataset (or a view of it).
        min_confidence: predictions below this confidence are left out (gt always kept).
        with_features: also return the per-box features.

    Returns:
        ``(frame, features)``: frame with ``sample_id``, ``box_id``, ``source`` (gt|pred),
        ``x1, y1, x2, y2`` absolute px ``xyxy``, ``label``, ``confidence`` (NaN for gt),
        ``iscrowd``, plus stored ``<issue>_score`` (higher = more likely wrong) /
        ``suggested_label`` / ``coco_id`` columns; features ``(n_boxes, F)`` float32 with NaN rows
        where none is stored, or None when ``with_features`` is False.

    Example:
        >>> boxes, feats = boxes_frame(ds, min_confidence=0.05)  # doctest: +SKIP
    """
    view = ds.filter_labels("predictions", F("confidence") >= min_confidence, only_matches=False) \
        if min_confidence > 0 else ds
    parts, feats = [], []
    for source in ("gt", "pred"):
        frame, f = _source_frame(view, source, with_features,
                                 _box_attribute_fields(ds, LABEL_FIELDS[source]))
        parts.append(frame)
        feats += f
    frame = pd.concat(parts, ignore_index=True) if any(len(p) for p in parts) else parts[0]
    if not with_features:
        return frame, None
    return frame, _feature_matrix(feats)


def _feature_matrix(feats: list[Any]) -> NDArray[np.float32]:
    """Stored feature lists as a ``(n, F)`` float32 matrix, NaN rows where none is stored."""
    dim = max((len(v) for v in feats if v is not None), default=0)
    out = np.full((len(feats), dim), np.nan, dtype=np.float32)
    for i, v in enumerate(feats):
        if v is not None:
            out[i] = v
    return out


def probes_frame(ds: fo.Dataset) -> tuple[pd.DataFrame, NDArray[np.float32] | None]:
    """The background probes drawn at ingest (``PROBE_FIELD``) as a boxes frame (``source``
    "probe", absolute px ``xyxy``) and their features; an empty frame and None for a dataset
    ingested before probes existed."""
    if PROBE_FIELD not in ds.get_field_schema():
        return pd.DataFrame(columns=["sample_id", "box_id", "source", "x1", "y1", "x2", "y2",
                                     "label", "confidence", "iscrowd"]), None
    frame, feats = _source_frame(ds, "probe", True, [])
    return frame, _feature_matrix(feats)


# --- bulk writes ---------------------------------------------------------------------------------

# --- small reads ---------------------------------------------------------------------------------

def insights(ds: fo.Dataset) -> list[dict[str, Any]]:
    """The insights stored by the last scoring (``Insight.to_dict()`` dicts), [] if unscored."""
    return [dict(d) for d in audit_info(ds).get("insights") or []]


def dataset_summary(ds: fo.Dataset) -> dict[str, Any]:
    """Size and settings of an audit dataset.

    Returns:
        ``{"name", "n_samples", "splits": {split: n}, "classes", "n_gt_boxes", "n_pred_boxes",
        "ingest": {model, imgsz, layers, ...}, "complete", "scored_at", "score_incomplete"}``
        (``score_incomplete``: :func:`incomplete_message`, None after a finished scoring).
    """
    info = audit_info(ds)
    has_split = "split" in ds.get_field_schema()
    ingest_keys = ("model", "imgsz", "layers", "conf", "iou", "max_det", "feature_conf",
                   "sources", "ingested_at")
    return {
        "name": ds.name, "n_samples": len(ds),
        "splits": dict(ds.count_values("split")) if has_split else {},
        "classes": list(info.get("class_names") or []),
        "n_gt_boxes": ds.count("ground_truth.detections") if len(ds) else 0,
        "n_pred_boxes": ds.count("predictions.detections") if len(ds) else 0,
        "ingest": {k: info[k] for k in ingest_keys if k in info},
        "complete": bool(info.get("complete")), "scored_at": info.get("scored_at"),
        "score_incomplete": incomplete_message(ds),
    }
