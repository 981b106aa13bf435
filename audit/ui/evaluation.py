"""Cached evaluation drill-down for the Overview page (:mod:`audit.evaluation`).

The boxes of a split are read once per dataset version and split; the matrix and the outcomes
per IoU and confidence, the PR curves per IoU. A matrix cell is handed to triage as a
:class:`audit.ui.state.TriageFilter` holding the cell's samples and boxes.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from audit.evaluation import BACKGROUND, BoxEvaluation, evaluate_boxes, pr_curves
from audit.ui import cache
from audit.ui.state import TriageFilter

ALL_SPLITS = "all"  # the split choice that evaluates every sample (audit.data.eval_runs)


@st.cache_data(max_entries=6, show_spinner="Reading the boxes…")
def split_boxes(name: str, token: str, split: str) -> pd.DataFrame:
    """Boxes frame of one split (``audit.data.eval_runs.split_boxes``) of one dataset version."""
    from audit.data.eval_runs import split_boxes as read

    del token  # cache key only
    return read(cache.dataset(name), split)


@st.cache_data(max_entries=16, show_spinner="Matching the boxes…")
def box_evaluation(name: str, token: str, split: str, iou: float, conf: float) -> BoxEvaluation:
    """:func:`audit.evaluation.evaluate_boxes` of one split."""
    return evaluate_boxes(split_boxes(name, token, split), iou=iou, conf=conf)


@st.cache_data(max_entries=8, show_spinner="Drawing the PR curves…")
def curves(name: str, token: str, split: str, iou: float) -> pd.DataFrame:
    """:func:`audit.evaluation.pr_curves` of one split."""
    return pr_curves(split_boxes(name, token, split), iou=iou)


def worst_cell(matrix: pd.DataFrame) -> tuple[str, str]:
    """The largest off-diagonal cell (the commonest error), or the first cell if none."""
    best, cell = -1, (str(matrix.index[0]), str(matrix.columns[0]))
    for true in matrix.index:
        for pred in matrix.columns:
            if true != pred and matrix.loc[true, pred] > best:
                best, cell = int(matrix.loc[true, pred]), (str(true), str(pred))
    return cell


def cell_filter(ev: BoxEvaluation, true: str, pred: str, split: str) -> TriageFilter:
    """The triage filter of one matrix cell: its samples (most boxes first) and its boxes."""
    boxes = ev.cell_boxes(true, pred)
    order = boxes["sample_id"].value_counts(sort=True).index
    what = ("found as " + pred) if true == pred else (
        f"{pred} predicted on background" if true == BACKGROUND else
        f"{true} missed" if pred == BACKGROUND else f"{true} labelled, {pred} predicted")
    return TriageFilter(sample_ids=tuple(map(str, order)), box_ids=tuple(boxes["box_id"]),
                        split=None, source=f"{split}: {what} (IoU {ev.iou:g}, confidence "
                        f"{ev.conf:g}), {len(boxes)} boxes")


def operating_points(frame: pd.DataFrame, conf: float) -> pd.DataFrame:
    """Per class, the curve's point at the working confidence (its last prediction at or above
    ``conf``): the precision and recall the matrix's boxes give."""
    kept = frame[frame["confidence"] >= conf]
    return kept.groupby("label", sort=True).tail(1).reset_index(drop=True)


def pr_chart(frame: pd.DataFrame, conf: float | None = None) -> alt.Chart:
    """Precision against recall per class, with the confidence in the tooltip; with ``conf``,
    each class's point at that confidence drawn large."""
    chart = _pr_lines(frame)
    if conf is None:
        return chart
    points = alt.Chart(operating_points(frame, conf)).mark_point(size=120, filled=True).encode(
        x="recall:Q", y="precision:Q", color=alt.Color("label:N", title="class"),
        tooltip=["label", alt.Tooltip("confidence:Q", format=".3f"),
                 alt.Tooltip("precision:Q", format=".3f"), alt.Tooltip("recall:Q", format=".3f")])
    return chart + points


def _pr_lines(frame: pd.DataFrame) -> alt.Chart:
    """The PR curves as lines."""
    return alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=12)).encode(
        x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("label:N", title="class"),
        tooltip=["label", alt.Tooltip("confidence:Q", format=".3f"),
                 alt.Tooltip("precision:Q", format=".3f"), alt.Tooltip("recall:Q", format=".3f")])


def store_run(name: str, split: str, iou: float, conf: float) -> str:
    """Store the evaluation as a FiftyOne evaluation run (``eval_runs.store_evaluation_run``);
    returns its key."""
    from audit.data.eval_runs import store_evaluation_run

    return store_evaluation_run(cache.dataset(name), split, iou=iou, conf=conf)
