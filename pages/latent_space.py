"""Latent space: the 2-D map of the detector's embeddings, coloured by any field; select to see."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audit import constants as C
from audit.ui import cache, charts
from audit.ui.common import draw_sample, require_dataset, shown_errors
from audit.ui.state import TriageFilter, get_state

GALLERY_MAX = 12  # images shown for a selection


def _field_options(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(colour fields, numeric size fields) available in the table."""
    numeric = [c for c in ("loss", "loss_box", "loss_cls", "loss_dfl", "neighbour_loss_ratio",
                           "mistakenness", "median_box_area", "n_objects", "occlusion_mean_iou")
               if c in table]
    numeric += [c for c in table.columns if c.startswith("count_")]
    numeric += [c for c in table.columns if c.endswith("_score")]
    return ["split", "cluster", *numeric], numeric


def _gallery(name: str, table: pd.DataFrame, ids: list[str]) -> None:
    """Images of the selected samples with their boxes, and a hand-off to triage."""
    st.subheader(f"Selection: {len(ids):,} samples")
    if st.button("Review the selection in triage", key="latent_to_triage"):
        get_state().set_triage(TriageFilter(sample_ids=tuple(ids), source="latent-space selection"))
        st.switch_page("pages/triage.py")
    if len(ids) > GALLERY_MAX:
        st.caption(f"Showing the {GALLERY_MAX} with the highest mistakenness.")
        ids = table.loc[ids].sort_values("mistakenness", ascending=False).index[:GALLERY_MAX]
    token = cache.version(name)
    cols = st.columns(4)
    for i, sid in enumerate(ids):
        with cols[i % 4], shown_errors(f"Drawing sample {sid}"):
            row = table.loc[sid]
            image = draw_sample(row["filepath"], cache.sample_boxes(name, sid, token),
                                min_confidence=0.25)
            st.image(image, caption=f"{row['split']} · cluster {row['cluster']} · "
                     f"loss {row.get('loss', float('nan')):.2f}", width="stretch")


name = require_dataset()
st.title("Latent space")
table = cache.table(name)
methods = [m for m in C.PROJECTION_METHODS if f"{m}_x" in table]
if not methods:
    st.warning("No 2-D projection is stored: score the dataset first (Start page).")
    st.stop()
colour_fields, size_fields = _field_options(table)
c1, c2, c3, c4 = st.columns(4)
method = c1.selectbox("Projection", methods, key="latent_method")
color = c2.selectbox("Colour by", colour_fields, key="latent_color",
                     index=colour_fields.index("loss") if "loss" in colour_fields else 0)
size = c3.selectbox("Size by", ["(none)", *size_fields], key="latent_size")
splits = c4.multiselect("Splits", sorted(table["split"].dropna().unique()), key="latent_split",
                        default=sorted(table["split"].dropna().unique()))
outlines = st.toggle("Cluster outlines", value=True, key="latent_outlines")

shown = table[table["split"].isin(splits)]
x, y = f"{method}_x", f"{method}_y"
result = charts.latent_scatter(shown, x=x, y=y, color=color,
                               size=None if size == "(none)" else size, outlines=outlines)
if result.n_drawn < result.n_points:
    st.caption(f"Drawing a random {result.n_drawn:,} of {result.n_points:,} points for speed; "
               "a box selection still covers every point inside it.")
else:
    st.caption(f"{result.n_points:,} points. Drag to select a region, click to pick a point.")
event = st.altair_chart(result.chart, on_select="rerun", key="latent_chart",
                        selection_mode=[charts.SELECTION, charts.POINT_SELECTION],
                        width="stretch")
selected = charts.selected_ids(shown, (event or {}).get("selection"), x=x, y=y)
if selected:
    _gallery(name, table, selected)
