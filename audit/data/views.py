"""Read-only queries the Streamlit pages need: the only place the UI touches FiftyOne.

Everything returns plain pandas frames or dicts so the pages can cache them with
``st.cache_data``. Boxes leave this module as absolute pixel ``xyxy`` floats (FiftyOne's relative
``[x, y, w, h]`` is converted here). Scores keep the auditor's direction: higher = more likely
wrong, NaN = does not apply. Flags computed here use the thresholds stored with the dataset's
scores (``store.scoring_config``), not the global defaults.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fiftyone import ViewField as F

from audit import constants as C
from audit import issues as I
from audit.competence import COLUMNS as COMPETENCE_COLUMNS
from audit.config import ScoringConfig
from audit.data import store
from audit.data.review_log import orphaned_records, reapply_orphaned
from audit.data.review_plan import DISMISSED_FIELD
from audit.data.review_store import REVIEWED_STATUSES
from audit.data.store_eval import evaluate
from audit.mistakenness import is_flagged

ISSUES = I.NAMES  # every issue (audit/issues.py)
BOX_ISSUES = I.DETECTION_ISSUES  # per-detection
ISSUE_THRESHOLDS = C.FLAG_SCORES  # default flag thresholds; a dataset's own: scoring_config(ds)
_MISTAKENNESS_FIELDS = ("mistakenness_score", "mistakenness")  # brief vs architecture spelling
_FLAGGED_FIELDS = ("flagged_issues", "flagged")
_NUMERIC_FIELDS = ("loss", "loss_box", "loss_cls", "loss_dfl", "n_objects", "median_box_area",
                   "min_box_area", "occlusion_mean_iou", "occlusion_max_ios", "crowd_fraction",
                   "neighbour_loss_ratio")
BOX_COLUMNS = ["box_id", "source", "x1", "y1", "x2", "y2", "label", "confidence",
               "suggested_label", *(f"{i}_score" for i in BOX_ISSUES), "flagged_issue",
               "flag_score"]


def list_datasets() -> list[str]:
    """Names of the persistent datasets built by the auditor (``store.list_audit_datasets``)."""
    return list(store.list_audit_datasets())


def open_dataset(name: str) -> Any:
    """Load the persistent dataset ``name`` and finish any review decision a crash cut short.

    A decision is logged before it is written to the dataset; if the process that made it was
    killed in between, ``review_store.replay_log`` applies it now (idempotent, cheap when there
    is nothing to do). ValueError naming the known datasets if ``name`` is absent.
    """
    return store.load_dataset(name)  # replays the review log (store.replay_reviews)


def _first_field(schema: dict, candidates: tuple[str, ...]) -> str | None:
    """First of ``candidates`` present in ``schema``, or None."""
    return next((f for f in candidates if f in schema), None)


def scored_fields(ds: Any) -> dict[str, str | None]:
    """Which optional scored fields this dataset carries.

    Returns:
        ``{"mistakenness": name|None, "flagged": name|None}`` plus one ``proj_<m>`` key per
        computed projection method mapped to its field name.
    """
    schema = ds.get_field_schema()
    out: dict[str, str | None] = {
        "mistakenness": _first_field(schema, _MISTAKENNESS_FIELDS),
        "flagged": _first_field(schema, _FLAGGED_FIELDS),
    }
    for method in C.PROJECTION_METHODS:
        if f"proj_{method}" in schema:
            out[f"proj_{method}"] = f"proj_{method}"
    return out


def samples_table(ds: Any) -> pd.DataFrame:
    """One row per sample with everything the overview, latent-space and triage pages show.

    Returns:
        Frame indexed by ``sample_id`` with ``filepath``, ``split``, ``width``, ``height``, the
        loss and metadata columns present in the dataset, ``cluster`` (int, -1 if absent),
        ``<issue>_score`` for each issue present, ``mistakenness`` (float, higher = more likely
        wrong), ``flagged`` (tuple of issue names), ``count_<class>`` and, per computed
        projection, ``<method>_x`` / ``<method>_y``.
    """
    schema = ds.get_field_schema()
    names = scored_fields(ds)
    wanted = ["id", "filepath", "split", "metadata.width", "metadata.height",
              *(f for f in (*_NUMERIC_FIELDS, "cluster", "class_counts") if f in schema),
              *(f"{i}_score" for i in ISSUES if f"{i}_score" in schema),
              *(n for n in (names["mistakenness"], names["flagged"]) if n),
              *(f"proj_{m}" for m in C.PROJECTION_METHODS if f"proj_{m}" in schema)]
    columns = dict(zip(wanted, ds.values(wanted), strict=True)) if len(ds) else {}
    frame = pd.DataFrame({k: columns.get(k, []) for k in wanted if not k.startswith("proj_")})
    frame = frame.rename(columns={"id": "sample_id", "metadata.width": "width",
                                  "metadata.height": "height"}).set_index("sample_id")
    return _finish_table(frame, columns, names)


def _finish_table(frame: pd.DataFrame, columns: dict, names: dict) -> pd.DataFrame:
    """Normalise types, expand class counts and projections (helper of ``samples_table``)."""
    frame["cluster"] = pd.to_numeric(frame.get("cluster", -1), errors="coerce")
    frame["cluster"] = frame["cluster"].fillna(-1).astype(int)
    mk = names["mistakenness"]
    frame["mistakenness"] = (frame.pop(mk).astype(float) if mk else np.nan)
    fl = names["flagged"]
    raw_flags = frame.pop(fl) if fl else pd.Series([None] * len(frame), index=frame.index)
    frame["flagged"] = [tuple(v) if v else () for v in raw_flags]
    if "class_counts" in frame:
        counts = pd.DataFrame([c or {} for c in frame.pop("class_counts")], index=frame.index)
        counts = counts.fillna(0).astype(int).add_prefix("count_")
        frame = pd.concat([frame, counts], axis=1)
    for key, values in columns.items():
        if key.startswith("proj_"):
            xy = np.array([v if v is not None else (np.nan, np.nan) for v in values], dtype=float)
            method = key.removeprefix("proj_")
            frame[f"{method}_x"], frame[f"{method}_y"] = xy[:, 0], xy[:, 1]
    return frame


def sample_boxes(ds: Any, sample_id: str) -> pd.DataFrame:
    """Ground-truth (as reviewed so far) and predicted boxes of one sample with their scores.

    The ground truth is the review store's corrected copy (``ground_truth_reviewed``) once the
    sample has a decision, else the original ``ground_truth``.

    Returns:
        Frame with columns ``BOX_COLUMNS`` + ``review_status`` (a prediction's: ``accepted``
        or ``dismissed`` once a review acted on it): ``source`` is "gt" or "pred",
        boxes are absolute pixel ``xyxy``, ``confidence`` NaN for gt, ``<issue>_score`` NaN where
        it does not apply, ``flagged_issue`` the issue with the highest score among those that
        flag the box (:func:`audit.mistakenness.is_flagged` at the dataset's stored thresholds,
        :func:`scoring_config`; None if none does) and ``flag_score`` that score (NaN if not
        flagged). Sorted by ``flag_score`` descending, so the most suspicious box comes first.
    """
    from audit.data.review_store import REVIEWED_FIELD

    config = scoring_config(ds)
    sample = _get_sample(ds, sample_id)
    width, height = _image_size(sample)
    rows = []
    gt_field = REVIEWED_FIELD if _non_empty(sample, REVIEWED_FIELD) else "ground_truth"
    for source, field in (("gt", gt_field), ("pred", "predictions")):
        dets = sample[field].detections if _non_empty(sample, field) else []
        rows.extend(_box_row(det, source, width, height, config) for det in dets)
    frame = pd.DataFrame(rows, columns=[*BOX_COLUMNS, "review_status"])
    _mark_predictions(frame, sample, gt_field)
    return frame.sort_values("flag_score", ascending=False, na_position="last", kind="stable")


def _mark_predictions(frame: pd.DataFrame, sample: Any, gt_field: str) -> None:
    """Set the ``review_status`` of the predictions a review acted on, in place: ``accepted``
    (a label was taken from it) or ``dismissed`` (marked as no object)."""
    dismissed = set(sample[DISMISSED_FIELD] or []) if sample.has_field(DISMISSED_FIELD) else set()
    labels = sample[gt_field].detections if _non_empty(sample, gt_field) else []
    accepted = {d.get_attribute_value("accepted_from", None) for d in labels}
    is_pred = frame["source"] == "pred"
    frame.loc[is_pred & frame["box_id"].isin(dismissed), "review_status"] = "dismissed"
    frame.loc[is_pred & frame["box_id"].isin(accepted), "review_status"] = "accepted"


def reviewed_ids(ds: Any) -> tuple[str, ...]:
    """Ids of the samples a decision reviewed (status confirmed, fixed or relabel; an undo back
    to unreviewed takes a sample off)."""
    if "review_status" not in ds.get_field_schema():
        return ()
    return tuple(ds.match(F("review_status").is_in(REVIEWED_STATUSES)).values("id"))


def sample_review(ds: Any, sample_id: str) -> dict:
    """Review state of one sample: ``{"revision": int, "status": str}`` (0 / "unreviewed")."""
    sample = _get_sample(ds, sample_id)
    get = lambda f: sample[f] if sample.has_field(f) else None  # noqa: E731
    return {"revision": int(get("review_revision") or 0),
            "status": str(get("review_status") or "unreviewed")}


def _get_sample(ds: Any, sample_id: str) -> Any:
    """The sample, fresh from the database; ValueError naming the dataset if absent."""
    try:
        return ds[sample_id]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"dataset {ds.name!r} has no sample {sample_id!r}") from exc


def _non_empty(sample: Any, field: str) -> bool:
    """Whether ``sample`` has a non-None label field ``field``."""
    return bool(sample.has_field(field) and sample[field] is not None)


def _image_size(sample: Any) -> tuple[int, int]:
    """Width and height in pixels from the sample's metadata, else from the image file."""
    meta = sample.metadata
    if meta is not None and meta.width and meta.height:
        return int(meta.width), int(meta.height)
    from PIL import Image

    with Image.open(sample.filepath) as img:
        return img.size


def _box_row(det: Any, source: str, width: int, height: int, config: ScoringConfig) -> dict:
    """One ``BOX_COLUMNS`` row from a FiftyOne detection (relative xywh -> absolute xyxy)."""
    x, y, w, h = det.bounding_box
    row = {"box_id": det.id, "source": source, "x1": x * width, "y1": y * height,
           "x2": (x + w) * width, "y2": (y + h) * height, "label": det.label,
           "confidence": float(det.confidence) if det.confidence is not None else np.nan,
           "suggested_label": det.get_field("suggested_label")
           if det.has_field("suggested_label") else None}
    best, best_score = None, np.nan
    thresholds = config.flag_thresholds()
    for issue in BOX_ISSUES:
        value = det.get_field(f"{issue}_score") if det.has_field(f"{issue}_score") else None
        score = float(value) if value is not None else np.nan
        row[f"{issue}_score"] = score
        hit = is_flagged(issue, score, row["confidence"], threshold=thresholds[issue],
                         missing_flag_conf=config.missing_flag_conf)
        if hit and (best is None or score > best_score):
            best, best_score = issue, score
    row["flagged_issue"], row["flag_score"] = best, best_score
    row["review_status"] = det.get_field("review_status") if det.has_field("review_status") \
        else None
    return row


def scoring_config(ds: Any) -> ScoringConfig:
    """The settings the dataset was scored with, or the defaults (``store.scoring_config``)."""
    return store.scoring_config(ds)


def flagged_view(ds: Any) -> Any:
    """The samples with at least one flagged issue, most mistaken first (the saved ``flagged``
    views of scoring and of export)."""
    view = ds.exists("flagged").match(F("flagged").length() > 0)
    score = scored_fields(ds)["mistakenness"]
    return view.sort_by(score, reverse=True) if score else view


def dataset_overview(ds: Any) -> dict:
    """Size, splits, classes, scoring time and model of a dataset (``store.dataset_summary``).

    Returns:
        ``{"name", "n_samples", "splits": {split: n}, "classes": [str], "scored_at": str|None,
        "model": str|None, "model_sha": the checkpoint's digest recorded at ingest | None,
        "orphaned_reviews": logged decisions on samples no longer in the dataset, ...}`` (the
        summary's other keys kept).
    """
    summary = dict(store.dataset_summary(ds))
    if not summary.get("classes"):
        summary["classes"] = sorted(map(str, ds.distinct("ground_truth.detections.label")))
    summary["model"] = summary.get("ingest", {}).get("model")
    summary["model_sha"] = store.audit_info(ds).get("model_sha")  # the checkpoint's identity
    summary["orphaned_reviews"] = len(orphaned_records(ds))
    return summary


def reapply_reviews(name: str) -> str:
    """Re-apply the logged decisions on samples no longer in dataset ``name`` (deleted and
    ingested again) to the samples now at their file paths; one line saying what was done
    (:func:`audit.data.review_log.reapply_orphaned`)."""
    return reapply_orphaned(open_dataset(name)).summary(name)


ISSUE_OF_KIND = {"inconsistency": "group_box"}  # the issue of an insight stored before they
# named it (scored by an earlier version): a mixed-convention card is about group boxes


def insights(ds: Any) -> list[dict]:
    """The stored insights (``Insight.to_dict`` dicts), most severe first; one stored before
    insights named their issue gets the issue of its kind (``ISSUE_OF_KIND``)."""
    items = [d if d.get("issue") or d.get("kind") not in ISSUE_OF_KIND
             else {**d, "issue": ISSUE_OF_KIND[d["kind"]]} for d in store.insights(ds)]
    return sorted(items, key=lambda d: -float(d.get("severity") or 0.0))


def evaluation(ds: Any) -> dict:
    """mAP, mAP50 and per-class AP of the predictions against the ground truth
    (:func:`audit.data.store_eval.evaluate`)."""
    return dict(evaluate(ds))


def dataset_version(ds: Any) -> str:
    """A token that changes when the dataset is re-scored or its size changes (for cache keys)."""
    ds.reload()
    info = (ds.info or {}).get("audit", {})
    return f"{len(ds)}|{info.get('scored_at')}|{ds.last_modified_at}"


def model_competence(ds: Any) -> dict:
    """The model measured against the labels by the last scoring (:mod:`audit.competence`).

    Returns:
        ``{"classes": frame indexed by class with ``audit.competence.COLUMNS`` (higher figures =
        better model; empty when not measured), "warnings": [plain sentences], "split": "val" |
        "all" | None, "conf": working confidence | None, "overall": pooled figures,
        "thresholds": the verdicts' knobs}``.
    """
    stored = ((ds.info or {}).get("audit") or {}).get("competence") or {}
    frame = pd.DataFrame(stored.get("classes") or [], columns=["label", *COMPETENCE_COLUMNS])
    frame = frame.set_index("label")
    numeric = [c for c in COMPETENCE_COLUMNS if c not in ("verdict", "weak_on")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")  # None -> NaN
    return {"classes": frame, "warnings": [str(w) for w in stored.get("warnings") or []],
            "split": stored.get("split"), "conf": stored.get("conf"),
            "overall": dict(stored.get("overall") or {}),
            "thresholds": dict(stored.get("thresholds") or {})}
