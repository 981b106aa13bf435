"""Altair chart builders for the pages (pure pandas / numpy / scipy / altair, no Streamlit).

Every builder takes a frame and returns an ``alt.Chart`` (or layered chart); the latent-space
scatter also reports how many points it drew, since it downsamples beyond ``max_points``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
from scipy.spatial import ConvexHull, QhullError

CATEGORICAL = ("split", "cluster", "flagged_first")  # always coloured as categories
MAX_DRAWN_POINTS = 20_000  # the scatter draws a seeded random subsample beyond this
POINT_SIZES = ((1_000, 60), (5_000, 30))  # (up to this many points, marker area px^2); else 14
SELECTION = "latent_brush"  # name of the scatter's interval selection
POINT_SELECTION = "latent_pick"  # name of the scatter's click selection


@dataclass(frozen=True)
class ScatterResult:
    """A latent-space chart and what it shows.

    Attributes:
        chart: the layered Altair chart (points, cluster hulls, centroid labels).
        n_points: points in the input frame after filtering.
        n_drawn: points actually drawn (``< n_points`` when downsampled).
    """

    chart: alt.LayerChart | alt.Chart
    n_points: int
    n_drawn: int


def is_categorical(frame: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` should be coloured by category rather than by a continuous scale."""
    if column in CATEGORICAL:
        return True
    return not pd.api.types.is_numeric_dtype(frame[column])


def downsample(frame: pd.DataFrame, max_points: int, *, seed: int = 0) -> pd.DataFrame:
    """Seeded random subsample of at most ``max_points`` rows (the frame itself if smaller)."""
    if len(frame) <= max_points:
        return frame
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(frame), size=max_points, replace=False))
    return frame.iloc[keep]


def cluster_hulls(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Closed convex-hull outlines of each cluster.

    Args:
        frame: rows with ``cluster`` (int, -1 = none) and coordinates ``x``, ``y``.

    Returns:
        Frame with ``cluster``, ``x``, ``y``, ``order`` (vertex order; first vertex repeated last).
        Clusters with fewer than 3 distinct points or collinear points get no outline.
    """
    parts = []
    for cluster, group in frame[frame["cluster"] >= 0].groupby("cluster"):
        pts = group[[x, y]].dropna().to_numpy(dtype=float)
        if len(np.unique(pts, axis=0)) < 3:
            continue
        try:
            hull = ConvexHull(pts)
        except QhullError:
            continue
        ring = pts[np.append(hull.vertices, hull.vertices[0])]
        parts.append(pd.DataFrame({"cluster": cluster, "x": ring[:, 0], "y": ring[:, 1],
                                   "order": np.arange(len(ring))}))
    if not parts:
        return pd.DataFrame(columns=["cluster", "x", "y", "order"])
    return pd.concat(parts, ignore_index=True)


def point_size(n: int) -> int:
    """Marker area for a scatter of ``n`` points: large for a few hundred, small for 20,000."""
    return next((size for limit, size in POINT_SIZES if n <= limit), 14)


def latent_scatter(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    color: str,
    size: str | None = None,
    outlines: bool = True,
    max_points: int = MAX_DRAWN_POINTS,
    seed: int = 0,
) -> ScatterResult:
    """Scatter of a 2-D projection with selections, cluster hulls and centroid labels.

    Args:
        frame: one row per sample, index ``sample_id``, columns ``x``, ``y``, ``color``,
            ``size`` (if given) and ``cluster``.
        x, y: projection coordinate columns (e.g. ``umap_x``, ``umap_y``).
        color: column coloured by (categorical or continuous, see ``is_categorical``).
        size: numeric column mapped to point size, or None.
        outlines: draw convex hulls and centroid labels of clusters (computed on all points).
        max_points: draw at most this many points (seeded random subsample).

    Returns:
        ``ScatterResult``; selections are ``SELECTION`` (interval) and ``POINT_SELECTION``
        (click, field ``sample_id``).
    """
    for col in (x, y, color, *([size] if size else [])):
        if col not in frame.columns:
            raise ValueError(f"latent_scatter: column {col!r} not in frame {list(frame.columns)}")
    full = frame.dropna(subset=[x, y])
    cols = list(dict.fromkeys([x, y, color, *([size] if size else []), "cluster"]))
    drawn = downsample(full, max_points, seed=seed)[cols].reset_index(names="sample_id")
    if is_categorical(drawn, color):
        drawn[color] = drawn[color].astype(str)
    enc_color = alt.Color(f"{color}:N", title=color) if is_categorical(drawn, color) else \
        alt.Color(f"{color}:Q", title=color, scale=alt.Scale(scheme="viridis"))  # no white end
    brush = alt.selection_interval(name=SELECTION, encodings=["x", "y"])
    pick = alt.selection_point(name=POINT_SELECTION, fields=["sample_id"])
    enc = {"x": alt.X(f"{x}:Q", title=x), "y": alt.Y(f"{y}:Q", title=y), "color": enc_color,
           "tooltip": ["sample_id", color, "cluster"],
           "opacity": alt.condition(brush, alt.value(0.8), alt.value(0.25))}
    if size:
        enc["size"] = alt.Size(f"{size}:Q", title=size, scale=alt.Scale(range=[8, 160]))
    points = alt.Chart(drawn).mark_circle(size=point_size(len(drawn))).encode(**enc) \
        .add_params(brush, pick)
    layers: list[alt.Chart] = [points]
    if outlines and "cluster" in full.columns:
        layers.extend(_outline_layers(full, x, y))
    chart = alt.layer(*layers).properties(height=520) if len(layers) > 1 else points
    return ScatterResult(chart=chart, n_points=len(full), n_drawn=len(drawn))


def _outline_layers(frame: pd.DataFrame, x: str, y: str) -> list[alt.Chart]:
    """Hull lines and centroid labels of the clusters."""
    hulls = cluster_hulls(frame, x, y)
    centroids = (frame[frame["cluster"] >= 0].groupby("cluster")[[x, y]].median()
                 .reset_index().rename(columns={x: "x", y: "y"}))
    centroids["name"] = "c" + centroids["cluster"].astype(str)
    lines = alt.Chart(hulls).mark_line(color="#444", strokeDash=[4, 3], strokeWidth=1).encode(
        x="x:Q", y="y:Q", detail="cluster:N", order="order:Q")
    labels = alt.Chart(centroids).mark_text(fontWeight="bold", fontSize=13, color="#111").encode(
        x="x:Q", y="y:Q", text="name:N")
    return [lines, labels]


def selected_ids(frame: pd.DataFrame, selection: dict | None, *, x: str, y: str) -> list[str]:
    """Sample ids picked by the scatter's selections.

    Args:
        frame: the frame the chart was drawn from (index ``sample_id``).
        selection: ``event.selection`` of ``st.altair_chart(on_select="rerun")``: an interval
            ``{x: [lo, hi], y: [lo, hi]}`` under ``SELECTION`` and/or a list of
            ``{"sample_id": ...}`` under ``POINT_SELECTION``.

    Returns:
        Ids in the frame's order: all points of the frame inside the interval (not only the drawn
        subsample) plus clicked points.
    """
    if not selection:
        return []
    keep = pd.Series(False, index=frame.index)
    box = selection.get(SELECTION) or {}
    if x in box and y in box:
        (x0, x1), (y0, y1) = sorted(box[x]), sorted(box[y])
        keep |= frame[x].between(x0, x1) & frame[y].between(y0, y1)
    picked = {p.get("sample_id") for p in selection.get(POINT_SELECTION) or [] if p}
    keep |= frame.index.isin(picked)
    return [str(i) for i in frame.index[keep.to_numpy()]]


def bar_chart(data: pd.DataFrame, *, x: str, y: str, color: str | None = None,
              title: str = "", keep_order: bool = False) -> alt.Chart:
    """Grouped bar chart (e.g. train vs val counts per cluster); ``keep_order``: categories in
    the data's order (upright labels) instead of sorted."""
    axis = alt.X(f"{x}:N", title=x, sort=None, axis=alt.Axis(labelAngle=0)) if keep_order \
        else alt.X(f"{x}:N", title=x)
    enc = {"x": axis, "y": alt.Y(f"{y}:Q", title=y), "tooltip": list(data)}
    if color:
        enc["color"] = alt.Color(f"{color}:N", title=color)
        enc["xOffset"] = alt.XOffset(f"{color}:N")
    return alt.Chart(data).mark_bar().encode(**enc).properties(title=title, height=260)


def line_chart(data: pd.DataFrame, *, x: str, y: str, color: str | None = None,
               title: str = "") -> alt.Chart:
    """Line with points (e.g. mean loss per quantile bin of median box area)."""
    enc = {"x": alt.X(f"{x}:Q", title=x), "y": alt.Y(f"{y}:Q", title=y), "tooltip": list(data)}
    if color:
        enc["color"] = alt.Color(f"{color}:N", title=color)
    return alt.Chart(data).mark_line(point=True).encode(**enc).properties(title=title, height=260)


def ap_bars(per_class: dict[str, float] | Sequence[tuple[str, float]]) -> alt.Chart:
    """Horizontal bars of per-class AP, worst class on top."""
    items = per_class.items() if isinstance(per_class, dict) else per_class
    data = pd.DataFrame(list(items), columns=["class", "AP"]).sort_values("AP")
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("AP:Q", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("class:N", sort=list(data["class"])), tooltip=["class", "AP"],
    ).properties(height=alt.Step(26))  # a fixed height was not kept in the page: 26 px a class
