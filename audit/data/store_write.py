"""Writing audit results into the FiftyOne dataset, in bulk (used through ``store``).

Every write is one ``set_values`` per field over the whole dataset (detection attributes as nested
lists aligned with the stored detections); nothing loops over samples calling ``save()``.
"""

from __future__ import annotations

import warnings
from typing import Any

import fiftyone as fo
import numpy as np
import pandas as pd
from fiftyone import ViewField as F
from numpy.typing import NDArray

from audit import constants as C
from audit.data.store import LABEL_FIELDS, now_iso, plain_value, update_audit_info
from audit.data.views import flagged_view


def _cell(value: Any) -> Any:
    """A frame cell as a MongoDB value: numpy -> Python, NaN -> None, arrays -> lists."""
    if isinstance(value, np.ndarray | list | tuple):
        return [_cell(v) for v in value]
    return plain_value(value)


def _projection_columns(frame: pd.DataFrame) -> dict[str, NDArray[np.float64]]:
    """``{"proj_<m>": (n, 2)}`` from ``proj_<m>_x`` / ``_y`` column pairs or ``proj_<m>`` lists."""
    out = {}
    for col in frame.columns:
        name = str(col)
        if name.startswith("proj_") and name.endswith("_x") and f"{name[:-2]}_y" in frame:
            out[name[:-2]] = frame[[name, f"{name[:-2]}_y"]].to_numpy(dtype=np.float64)
        elif name.startswith("proj_") and not name.endswith(("_x", "_y")):
            out[name] = np.array([v if v is not None else [np.nan, np.nan] for v in frame[name]],
                                 dtype=np.float64).reshape(-1, 2)
    return out


def _field_type(series: pd.Series) -> tuple[type, dict[str, Any]]:
    """The FiftyOne field type (and its keyword arguments) that holds a frame column."""
    if pd.api.types.is_bool_dtype(series):
        return fo.BooleanField, {}
    if pd.api.types.is_integer_dtype(series):
        return fo.IntField, {}
    if pd.api.types.is_numeric_dtype(series) or series.isna().all():
        return fo.FloatField, {}
    first = series.dropna().iloc[0]  # an object column: its values say
    if isinstance(first, bool | np.bool_):
        return fo.BooleanField, {}
    return (fo.FloatField, {}) if isinstance(first, int | float | np.number) \
        else (fo.StringField, {})


def _declare(ds: fo.Dataset, fields: dict[str, tuple[type, dict[str, Any]]]) -> None:
    """Declare the sample (or detection attribute) fields ``ds`` lacks, before any value is
    written: a column that is None everywhere (no train split, one image, no box) then stores
    as "does not apply" instead of failing FiftyOne's type inference halfway through a write."""
    schema = ds.get_field_schema(flat=True)
    for path, (ftype, kwargs) in fields.items():
        if path not in schema:
            ds.add_sample_field(path, ftype, **kwargs)


def _sample_columns(frame: pd.DataFrame) -> list[str]:
    """The scalar columns of a samples frame that scoring stores."""
    return [str(c) for c in frame.columns if str(c).endswith("_score")
            or str(c) in ("cluster", "mistakenness", "neighbour_loss_ratio")]


def _declare_samples(ds: fo.Dataset, frame: pd.DataFrame) -> None:
    """Declare every sample field :func:`_write_samples` will write."""
    fields = {c: _field_type(frame[c]) for c in _sample_columns(frame)}
    if "flagged" in frame:
        fields["flagged"] = (fo.ListField, {"subfield": fo.StringField})
    for name in _projection_columns(frame):
        fields[name] = (fo.ListField, {"subfield": fo.FloatField})
    _declare(ds, fields)


def _write_samples(ds: fo.Dataset, frame: pd.DataFrame) -> dict[str, NDArray[np.float64]]:
    """Write score, cluster, flag and projection columns of a samples frame; returns projections."""
    ids = [str(i) for i in frame.index]
    _declare_samples(ds, frame)
    for col in _sample_columns(frame):
        ds.set_values(str(col), dict(zip(ids, (_cell(v) for v in frame[col]), strict=True)),
                      key_field="id")
    if "flagged" in frame:
        flags = [[str(x) for x in (v if isinstance(v, list | tuple | np.ndarray) else [])]
                 for v in frame["flagged"]]
        ds.set_values("flagged", dict(zip(ids, flags, strict=True)), key_field="id")
    projections = _projection_columns(frame)
    for field, xy in projections.items():
        values = [None if not np.isfinite(p).all() else [float(p[0]), float(p[1])] for p in xy]
        ds.set_values(field, dict(zip(ids, values, strict=True)), key_field="id")
    return {k.removeprefix("proj_"): v for k, v in projections.items()}


def _write_boxes(ds: fo.Dataset, frame: pd.DataFrame) -> None:
    """Write ``<issue>_score`` and ``suggested_label`` columns onto the detections, by box id."""
    ids = (frame["box_id"] if "box_id" in frame else frame.index.to_series()).astype(str)
    cols = [c for c in frame.columns if str(c).endswith("_score") or c == "suggested_label"]
    for source, field in LABEL_FIELDS.items():
        part = frame["source"].to_numpy() == source if "source" in frame else np.ones(len(frame),
                                                                                     bool)
        # only the columns that apply to this source (a gt box has no missing score, ...)
        used = [c for c in cols if frame.loc[part, c].notna().any()]
        if not used:
            continue
        _declare(ds, {f"{field}.detections.{c}": _field_type(frame.loc[part, c]) for c in used})
        nested = ds.values(f"{field}.detections.id")
        for col in used:
            lookup = dict(zip(ids[part], (_cell(v) for v in frame.loc[part, col]), strict=True))
            values = [[lookup.get(i) for i in (row or [])] for row in nested]
            ds.set_values(f"{field}.detections.{col}", values)


def _save_flag_views(ds: fo.Dataset, issues: list[str]) -> None:
    """Saved views for the FiftyOne App: ``flagged`` (most mistaken first), ``flagged-<issue>``
    (highest ``<issue>_score`` first) and ``generalisation-gap`` (val images whose loss is at
    least ``C.OVERFIT_RATIO`` times their nearest train images', highest ratio first)."""
    schema = ds.get_field_schema()
    ds.save_view("flagged", flagged_view(ds),
                 description="samples with at least one issue, most mistaken first",
                 overwrite=True)
    for issue in issues:
        view = ds.exists("flagged").match(F("flagged").contains(issue))
        field = f"{issue}_score"
        ds.save_view(f"flagged-{issue}", view.sort_by(field, reverse=True) if field in schema
                     else view, description=f"samples flagged for {issue}, highest score first",
                     overwrite=True)
    if "neighbour_loss_ratio" in schema and "split" in schema:
        gap = ds.match((F("split") == "val") & (F("neighbour_loss_ratio") >= C.OVERFIT_RATIO))
        ds.save_view("generalisation-gap", gap.sort_by("neighbour_loss_ratio", reverse=True),
                     description=f"val images with a loss >= {C.OVERFIT_RATIO:g}x that of their "
                     f"{C.GAP_NEIGHBOURS} nearest train images", overwrite=True)


LEAK_VIEW = "leaks"  # saved view: the images of every train/val near-copy pair


def save_leak_view(ds: fo.Dataset, insights: list[dict]) -> int:
    """Save (or drop, when there is none) the ``leaks`` view: both images of every near-copy
    pair across splits that a ``leak`` insight names (:mod:`audit.leaks`), in its order.

    Returns:
        The number of samples in the view (0 when dropped).
    """
    ids = list(dict.fromkeys(str(i) for item in insights if item.get("kind") == "leak"
                             for i in item.get("sample_ids") or []))
    if not ids:
        if ds.has_saved_view(LEAK_VIEW):
            ds.delete_saved_view(LEAK_VIEW)
        return 0
    view = ds.select(ids, ordered=True).filter_labels(
        "predictions", F("confidence") >= C.APP_MIN_CONFIDENCE, only_matches=False)
    ds.save_view(LEAK_VIEW, view, overwrite=True, description="train/val near-copies: each val "
                 f"image, then its train twin (predictions below {C.APP_MIN_CONFIDENCE:g} hidden)")
    return len(ids)


def _register_projections(ds: fo.Dataset, projections: dict[str, NDArray[np.float64]],
                          ids: list[str]) -> list[str]:
    """Register each 2-D projection as a FiftyOne Brain visualization ``latent_<method>``."""
    import fiftyone.brain as fob

    keys = []
    for method, xy in projections.items():
        key = f"latent_{method}"
        if ds.has_brain_run(key):
            ds.delete_brain_run(key)
        ok = np.isfinite(xy).all(axis=1)
        if not ok.any():
            continue
        try:
            fob.compute_visualization(ds.select([i for i, k in zip(ids, ok, strict=True) if k],
                                                ordered=True), points=xy[ok], brain_key=key,
                                      method="manual", progress=False)
            keys.append(key)
        except Exception as exc:  # the App's map is a convenience; scores are already stored
            warnings.warn(f"could not register projection {method!r} with FiftyOne Brain: {exc}",
                          stacklevel=3)
    return keys


def write_audit_result(ds: fo.Dataset, result: Any) -> None:
    """Store an :class:`audit.pipeline.AuditResult` in the dataset, in bulk.

    Sample fields ``<issue>_score``, ``cluster``, ``mistakenness``, ``neighbour_loss_ratio``,
    ``flagged`` (list of issue names), ``proj_<method>`` ([x, y]); detection attributes
    ``<issue>_score`` and ``suggested_label`` (higher score = more likely wrong, None = does not
    apply); ``info["audit"]``: ``insights``, ``clusters``, ``classes``, ``timings``,
    ``competence`` (:meth:`audit.competence.Competence.to_dict`), ``scored_at``; saved views
    ``flagged`` / ``flagged-<issue>`` and ``leaks`` (:func:`save_leak_view`); Brain
    visualizations ``latent_<method>``.

    Args:
        ds: the ingested dataset.
        result: has ``samples`` (frame indexed by sample id), ``boxes`` (frame with ``box_id``),
            ``insights`` (objects with ``to_dict()`` or dicts), optional ``clusters``,
            ``classes`` (frames), ``timings`` (dict) and ``competence``.
    """
    samples = result.samples
    unknown = set(map(str, samples.index)) - set(ds.values("id"))
    if unknown:
        raise ValueError(f"result has {len(unknown)} sample id(s) not in dataset {ds.name!r}, "
                         f"e.g. {sorted(unknown)[0]}")
    projections = _write_samples(ds, samples)
    _write_boxes(ds, result.boxes)
    issues = sorted({str(i) for v in samples.get("flagged", []) for i in (v or [])})
    _save_flag_views(ds, issues)
    keys = _register_projections(ds, projections, [str(i) for i in samples.index])
    insights = [_cell_tree(i.to_dict() if hasattr(i, "to_dict") else dict(i))
                for i in getattr(result, "insights", []) or []]
    save_leak_view(ds, insights)
    update_audit_info(
        ds, insights=insights,
        clusters=_records(getattr(result, "clusters", None)),
        classes=_records(getattr(result, "classes", None)),
        timings=_cell_tree(dict(getattr(result, "timings", {}) or {})),
        competence=_competence(getattr(result, "competence", None)),
        brain_keys=keys, scored_at=now_iso())


def _cell_tree(value: Any) -> Any:
    """Nested dicts/lists with numpy values made JSON/MongoDB friendly."""
    if isinstance(value, dict):
        return {str(k): _cell_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_cell_tree(v) for v in value]
    return plain_value(value)


def _competence(competence: Any) -> dict[str, Any] | None:
    """``Competence.to_dict()`` (per-class records, overall figures, warnings), None if absent."""
    return None if competence is None else _cell_tree(competence.to_dict())


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """A small frame as a list of row dicts (index kept as a column), [] for None."""
    if frame is None or not isinstance(frame, pd.DataFrame):
        return []
    return _cell_tree(frame.reset_index().to_dict(orient="records"))


