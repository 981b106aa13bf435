"""Sample analysis: per-layer Grad-CAM heatmaps of one box, side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from audit.ui import cache, draw
from audit.ui.common import draw_sample, load_image, require_dataset, shown_errors
from audit.ui.state import get_state

PICK_TOP = 200  # most suspicious samples offered in the picker


def _pick_sample(name: str, table: pd.DataFrame) -> str | None:
    """Sample chosen by id or among the most suspicious ones (defaults to the triage sample)."""
    state = get_state()
    top = table.sort_values("mistakenness", ascending=False, na_position="last").index[:PICK_TOP]
    options = list(dict.fromkeys([*([state.analysis_sample] if state.analysis_sample in table.index
                                    else []), *top]))
    typed = st.text_input("Sample id (optional)", key="analysis_sample_id").strip()
    if typed:
        if typed not in table.index:
            st.error(f"Dataset {name!r} has no sample {typed!r}.")
            return None
        return typed
    if not options:
        return None
    return st.selectbox("Sample (most suspicious first)", options, key="analysis_sample")


def _box_caption(row: pd.Series) -> str:
    """One line naming a box by source, class, confidence and place, and its worst issue."""
    issue = row["flagged_issue"]
    flag = f" · {issue} {row['flag_score']:.2f}" if isinstance(issue, str) else ""
    source = "label" if row["source"] == "gt" else f"prediction {row['confidence']:.2f}"
    x1, y1, x2, y2 = (float(row[c]) for c in ("x1", "y1", "x2", "y2"))
    return f"{source} · {row['label']} · at ({x1:.0f}, {y1:.0f})-({x2:.0f}, {y2:.0f}){flag}"


def _network_order() -> None:
    """Keep the chosen layers in network order, whatever order they were clicked in."""
    chosen = st.session_state.get("analysis_layers") or []
    st.session_state["analysis_layers"] = sorted(chosen, key=lambda n: int(n.split(":")[0]))


def _heatmaps(detector, image, box: pd.Series, class_name: str, layers: list[int]) -> dict:
    """Compute the heatmaps (cached per sample/box/class/layers in session state)."""
    from audit.data.gradcam import layer_heatmaps

    xyxy = box[["x1", "y1", "x2", "y2"]].to_numpy(dtype=np.float32)
    class_id = detector.class_names.index(class_name)
    return layer_heatmaps(detector, np.asarray(image), xyxy, class_id, layers=layers)


name = require_dataset()
st.title("Sample analysis")
table = cache.table(name)
token = cache.version(name)
sid = _pick_sample(name, table)
if sid is None:
    st.stop()
boxes = cache.sample_boxes(name, sid, token)
boxes = boxes[(boxes["source"] == "gt") | (boxes["confidence"] >= 0.25)].reset_index(drop=True)
if boxes.empty:
    st.info("This sample has no box to explain.")
    st.stop()
box_index = st.selectbox("Box", boxes.index, format_func=lambda i: _box_caption(boxes.loc[i]),
                         key="analysis_box")
box = boxes.loc[box_index]
path = table.loc[sid, "filepath"]
st.image(draw_sample(path, boxes, highlight_box=box["box_id"]), width=480)

facts = cache.overview(name, token)
model_path = facts.get("model")
if not model_path:
    st.warning("The dataset does not record its model checkpoint: heatmaps need it.")
    st.stop()
detector = None
with shown_errors("Loading the model"):  # refused when the file is not the one ingested
    detector = cache.detector(name, str(model_path), facts.get("model_sha"))
if detector is None:
    st.stop()
# the suggested class is wrong-class evidence: explain it first only for that issue
default_class = box["suggested_label"] if box["flagged_issue"] == "wrong_class" \
    and box["suggested_label"] in detector.class_names else box["label"]
if st.session_state.get("analysis_class_box") != (sid, box["box_id"]):  # a new box: its class
    st.session_state["analysis_class_box"] = (sid, box["box_id"])
    st.session_state["analysis_class"] = default_class if default_class in detector.class_names \
        else detector.class_names[0]
class_name = st.selectbox("Explain the class", detector.class_names, key="analysis_class")
names = detector.layer_names()[:-1]  # the Detect head cannot be hooked
default = [n for n in names if n.split(":")[0] in {"4", "16", str(len(names) - 1)}]
chosen = st.multiselect("Layers (network order)", names, default=default, key="analysis_layers",
                        on_change=_network_order)
alpha = st.slider("Heat opacity", 0.0, 1.0, 0.5, 0.05, key="analysis_alpha")
if st.button("Compute heatmaps", key="analysis_compute", type="primary", disabled=not chosen):
    layers = sorted(int(n.split(":")[0]) for n in chosen)
    with shown_errors("Grad-CAM"), st.spinner(f"Back-propagating through {len(layers)} layers…"):
        image = load_image(path)
        st.session_state["analysis_maps"] = (sid, box["box_id"], class_name, _heatmaps(
            detector, image, box, class_name, layers))
stored = st.session_state.get("analysis_maps")
if stored and stored[:3] == (sid, box["box_id"], class_name):
    maps = stored[3]
    image = load_image(path)
    st.image(draw.colour_bar(), width=256)
    st.caption("Colour scale of each map: blue = its lowest heat, red = its highest (each map is "
               "scaled to its own range).")
    cols = st.columns(min(4, len(maps)))
    for i, (layer, heat) in enumerate(sorted(maps.items())):
        overlay = draw.draw_boxes(draw.heat_overlay(image, heat, alpha=alpha),
                                  [box[["x1", "y1", "x2", "y2"]].to_numpy(dtype=float)], [""])
        cols[i % len(cols)].image(overlay, caption=f"layer {names[layer]}",
                                  width="stretch")
