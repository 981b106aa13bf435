"""Insights: one card per finding with its evidence plot and hand-offs to triage / FiftyOne."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audit import constants as C
from audit.correlations import LOSS_NAMES, loss_curve, metadata_columns
from audit.generalisation import gap_by_cluster
from audit.ui import cache, charts, fiftyone_app
from audit.ui.common import load_image, require_dataset, shown_errors
from audit.ui.state import TriageFilter, get_state

SEVERITY_ICON = ((0.66, ":red[●] high"), (0.33, ":orange[●] medium"), (0.0, ":blue[●] low"))


def _severity(value) -> str:
    """Coloured severity word for a severity in [0, 1] (higher = more severe)."""
    v = float(value or 0.0)
    return next(word for bound, word in SEVERITY_ICON if v >= bound)


def evidence_frame(evidence: dict) -> pd.DataFrame | None:
    """The plot data of an insight's evidence as a frame (records or columns), or None."""
    data = evidence.get("data")
    if data is None:
        columns = {k: v for k, v in evidence.items() if isinstance(v, list) and k != "sample_ids"}
        lengths = {len(v) for v in columns.values()}
        data = columns if columns and len(lengths) == 1 else None
    if data is None:
        return None
    frame = pd.DataFrame(data)
    return frame if not frame.empty else None


def _evidence_chart(evidence: dict):
    """An Altair chart for the evidence, or None when it holds no plottable data."""
    frame = evidence_frame(evidence)
    if frame is None:
        return None
    kind = str(evidence.get("plot", ""))
    x = evidence.get("x") or frame.columns[0]
    y = evidence.get("y") or next(c for c in frame.columns if c != x and pd.api.types
                                  .is_numeric_dtype(frame[c]))
    color = evidence.get("color") or ("split" if "split" in frame and x != "split" else None)
    if "count" in kind or "bar" in kind or not pd.api.types.is_numeric_dtype(frame[x]):
        return charts.bar_chart(frame, x=x, y=y, color=color, keep_order=True)  # as ordered
    return charts.line_chart(frame, x=x, y=y, color=color)


PAIRS_SHOWN = 6  # near-duplicate pairs drawn on a leak card


def _pairs(name: str, evidence: dict) -> None:
    """Both images of each near-duplicate pair, side by side, closest pairs first."""
    pairs = evidence.get("pairs") or []
    paths = cache.table(name)["filepath"]
    for pair in pairs[:PAIRS_SHOWN]:
        a, b = str(pair.get("sample_a")), str(pair.get("sample_b"))
        if a not in paths.index or b not in paths.index:
            continue
        left, right = st.columns(2)
        left.image(load_image(paths[a]), width="stretch",
                   caption=f"{pair.get('split_a')} · {a} · distance {pair.get('distance', 0):.3g}")
        right.image(load_image(paths[b]), width="stretch", caption=f"{pair.get('split_b')} · {b}")
    if len(pairs) > PAIRS_SHOWN:
        st.caption(f"{len(pairs) - PAIRS_SHOWN} more pairs in triage (closest first).")


def _card(name: str, i: int, item: dict) -> None:
    """One insight card."""
    with st.container(border=True):
        st.markdown(f"#### {item.get('title', 'Insight')}")
        st.markdown(f"{_severity(item.get('severity'))} · {item.get('kind', '')}"
                    + (f" · cluster {item['cluster']}" if item.get("cluster") is not None else "")
                    + (f" · class {item['label']}" if item.get("label") else ""))
        st.write(item.get("sentence", ""))
        evidence = item.get("evidence") or {}
        with shown_errors("Drawing the evidence"):
            if evidence.get("plot") == "pairs":
                _pairs(name, evidence)
            elif (chart := _evidence_chart(evidence)) is not None:
                st.altair_chart(chart, width="stretch")
        ids = [str(s) for s in item.get("sample_ids") or []]
        c = st.columns(3)
        c[0].caption(f"{len(ids):,} samples")
        if c[1].button("Review in triage", key=f"insights_triage_{i}", disabled=not ids):
            get_state().set_triage(TriageFilter(  # most affected by the card's issue first
                sample_ids=tuple(ids), source=item.get("title", "an insight"),
                order_by=item.get("issue")))
            st.switch_page("pages/triage.py")
        fiftyone_app.open_button(name, ids, key=f"insights_fiftyone_{i}", container=c[2])


def _curve_losses(items: list[dict]) -> dict[str, str]:
    """Metadata column -> the loss its curve card found the trend on."""
    out = {}
    for item in items:
        evidence = item.get("evidence") if item.get("kind") == "curve" else None
        if isinstance(evidence, dict) and evidence.get("column") and evidence.get("loss"):
            out.setdefault(str(evidence["column"]), str(evidence["loss"]))
    return out


def _curves(name: str) -> None:
    """Loss vs any metadata column, per split, in quantile bins, with Spearman's rho."""
    table = cache.table(name)
    columns = metadata_columns(table)
    losses = [c for c in LOSS_NAMES if c in table.columns]
    if not columns or not losses or "split" not in table:
        st.info("The dataset has no metadata or losses to plot.")
        return
    left, right = st.columns(2)
    default = columns.index("median_box_area") if "median_box_area" in columns else 0
    column = left.selectbox("Metadata", columns, index=default, key="insights_curve_column")
    found = _curve_losses(cache.insights(name, cache.version(name)))  # the loss a card names
    loss = right.selectbox("Loss", losses, format_func=LOSS_NAMES.get, key="insights_curve_loss",
                           index=losses.index(found[column]) if found.get(column) in losses
                           else 0)
    with shown_errors("Drawing the curve"):
        curve = loss_curve(table, column, loss=loss)
        if curve.empty:
            st.info(f"{column} does not vary: no curve to draw.")
            return
        st.altair_chart(charts.line_chart(curve, x=column, y="median_loss", color="split"),
                        width="stretch")
        rho = {s: table.loc[table["split"] == s, [column, loss]].corr("spearman").iloc[0, 1]
               for s in sorted(table["split"].astype(str).unique())}
        st.caption("Median loss per quantile bin of " + column + "; Spearman rho: "
                   + ", ".join(f"{s} {r:+.2f}" for s, r in rho.items()))


def _gap(name: str) -> None:
    """Per cluster, val images' loss against their nearest train images', and a hand-off."""
    table = cache.table(name)
    per_cluster = gap_by_cluster(table)
    if per_cluster.empty:
        st.info("No image has a neighbour loss ratio: score the dataset (python -m audit score).")
        return
    with shown_errors("Drawing the generalisation gap"):
        st.altair_chart(charts.bar_chart(per_cluster, x="cluster", y="median_ratio",
                                         color="split", keep_order=True), width="stretch")
        val = table[(table["split"] == "val") & table["neighbour_loss_ratio"].notna()]
        st.caption(
            f"Median of each image's loss over the median loss of its {C.GAP_NEIGHBOURS} nearest "
            "train images in the embedding, per cluster (clusters by their val median, highest "
            "first). 1.0: the model does as well as on its look-alikes in train; a cluster whose "
            "val images sit well above its train images is one the model fits better than it "
            f"generalises to. All val: median {val['neighbour_loss_ratio'].median():.2f}.")
        limit = st.number_input("Val images at least this many times their look-alikes' loss",
                                min_value=1.0, value=float(C.OVERFIT_RATIO), step=0.25,
                                key="insights_gap_limit")
        ids = tuple(val.index[val["neighbour_loss_ratio"] >= limit].astype(str))
        if st.button(f"Review these {len(ids)} val images in triage", key="insights_gap_triage",
                     disabled=not ids):
            get_state().set_triage(TriageFilter(
                sample_ids=ids, source=f"val images >= {limit:g}x their train look-alikes' loss"))
            st.switch_page("pages/triage.py")


name = require_dataset()
st.title("Insights")
if st.toggle("Loss vs metadata (box area, objects per image, ...)", value=True,
             key="insights_show_curves"):
    _curves(name)
if st.toggle("Generalisation gap per cluster (val vs train look-alikes)", value=True,
             key="insights_show_gap"):
    _gap(name)
items = cache.insights(name, cache.version(name))
url = get_state().fiftyone_url
if url:
    st.success(f"FiftyOne App: [{url}]({url})")
if not items:
    st.info("No insight: the dataset is not scored yet, or nothing stands out.")
    st.stop()
fiftyone_app.warm_up(name)  # the cards' "Open in FiftyOne App" then answers at once
kinds = sorted({str(d.get("kind", "")) for d in items})
chosen = st.multiselect("Kinds", kinds, default=kinds, key="insights_kinds")
for index, insight in enumerate(items):
    if str(insight.get("kind", "")) in chosen:
        _card(name, index, insight)
