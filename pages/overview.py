"""Overview: detector quality (mAP, per-class AP), flagged samples per issue, worst classes, and
the evaluation drill-down per split (TP / FP / FN, confusion matrix, PR curves)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audit.ui import cache, charts, competence, evaluation
from audit.ui.common import require_dataset, shown_errors
from audit.ui.state import get_state

name = require_dataset()
st.title("Overview")
token = cache.version(name)
table = cache.table(name)

st.subheader("Detector quality")
with shown_errors("Evaluating the predictions"):
    ev = cache.evaluation(name, token)
    cols = st.columns(3)
    cols[0].metric("mAP50", f"{ev.get('mAP50', float('nan')):.3f}")
    cols[1].metric("mAP50-95", f"{ev.get('mAP', float('nan')):.3f}")
    per_class = {str(k): float(v) for k, v in (ev.get("per_class_AP") or ev.get("per_class")
                                                or {}).items()}
    cols[2].metric("Classes evaluated", len(per_class))
    if per_class:
        left, right = st.columns([2, 1])
        left.altair_chart(charts.ap_bars(per_class), width="stretch")
        worst = sorted(per_class.items(), key=lambda kv: kv[1])[:5]
        right.markdown("**Worst classes**")
        right.dataframe(pd.DataFrame(worst, columns=["class", "AP"]), hide_index=True,
                        key="overview_worst")

st.subheader("Model competence per class")
with shown_errors("Reading the model's competence"):
    competence.show_table(name)

st.subheader("Flagged samples per issue")
flags = table["flagged"].explode().dropna()
n_flagged = int(table["flagged"].map(bool).sum())
st.metric("Flagged samples", f"{n_flagged:,} of {len(table):,}")
if flags.empty:
    st.info("No sample is flagged (or the dataset is not scored yet).")
else:
    counts = flags.value_counts().rename_axis("issue").reset_index(name="samples")
    st.altair_chart(charts.bar_chart(counts, x="issue", y="samples"), width="stretch")
    by_split = (table.loc[table["flagged"].map(bool)].explode("flagged")
                .groupby(["flagged", "split"]).size().unstack(fill_value=0))
    st.dataframe(by_split, key="overview_by_split")


MATRIX_INDEX_PX, MATRIX_CELL_PX, MATRIX_ROW_PX = 150, 110, 35  # the matrix's fixed layout


def _pick_cell(rows: list[str]) -> None:
    """A click on a matrix cell chooses that cell in the selectboxes below the matrix."""
    cells = st.session_state["overview_matrix"]["selection"]["cells"]
    if cells:
        row, column = cells[0]
        st.session_state["overview_cell_true"] = rows[int(row)]
        st.session_state["overview_cell_pred"] = str(column)


def _cell_pickers(ev) -> tuple[str, str]:
    """The chosen cell (defaults to the commonest error)."""
    rows, columns = list(map(str, ev.matrix.index)), list(map(str, ev.matrix.columns))
    worst = evaluation.worst_cell(ev.matrix)
    for key, options, default in (("overview_cell_true", rows, worst[0]),
                                  ("overview_cell_pred", columns, worst[1])):
        if st.session_state.get(key) not in options:
            st.session_state[key] = default
    c = st.columns(3)
    true = c[0].selectbox("True class (row)", rows, key="overview_cell_true")
    pred = c[1].selectbox("Predicted class (column)", columns, key="overview_cell_pred")
    return true, pred


def _matrix(name: str, split: str, ev) -> None:
    """The confusion matrix; a cell leads to the boxes behind it in triage."""
    rows = list(map(str, ev.matrix.index))
    widths = {"_index": st.column_config.TextColumn("true \\ predicted", width=MATRIX_INDEX_PX),
              **{str(c): st.column_config.NumberColumn(width=MATRIX_CELL_PX)
                 for c in ev.matrix.columns}}
    st.dataframe(ev.matrix, key="overview_matrix", on_select=lambda: _pick_cell(rows),
                 selection_mode="single-cell", column_config=widths, width="content",
                 row_height=MATRIX_ROW_PX)
    st.caption("Rows: the label's class; columns: the predicted class; (background): no box on "
               "the other side (a missed label, or a prediction on background). Click a cell "
               "or pick it below to review its boxes.")
    true, pred = _cell_pickers(ev)
    n = len(ev.cell_boxes(true, pred))
    if st.button(f"Review these {n} boxes in triage", key="overview_cell_triage", disabled=not n):
        get_state().set_triage(evaluation.cell_filter(ev, true, pred, split))
        st.switch_page("pages/triage.py")


def _drilldown(name: str, token: str) -> None:
    """Per split: TP / FP / FN per class, the confusion matrix and the PR curves."""
    splits = [*cache.overview(name, token)["splits"], evaluation.ALL_SPLITS]
    c = st.columns(3)
    split = c[0].selectbox("Split", splits, key="overview_eval_split",
                           index=splits.index("val") if "val" in splits else 0)
    iou = c[1].slider("IoU a match needs", 0.05, 0.95, 0.5, 0.05, key="overview_eval_iou")
    conf = c[2].slider("Confidence at least", 0.0, 0.95, 0.25, 0.05, key="overview_eval_conf")
    ev = evaluation.box_evaluation(name, token, split, iou, conf)
    counts = ev.counts()
    totals = counts[["TP", "FP", "FN"]].sum()
    m = st.columns(3)
    for i, what in enumerate(("TP", "FP", "FN")):
        m[i].metric(f"{what} ({split})", f"{int(totals[what]):,}")
    st.dataframe(counts.style.format({"precision": "{:.2f}", "recall": "{:.2f}"}, na_rep="-"),
                 key="overview_counts")
    _matrix(name, split, ev)
    if st.toggle("PR curve per class", value=True, key="overview_show_pr"):
        st.altair_chart(evaluation.pr_chart(evaluation.curves(name, token, split, iou), conf),
                        width="stretch")
        st.caption(f"Large dots: each class at confidence {conf:g}. A point of a curve is the "
                   "class at one confidence: set 'Confidence at least' to it, and the class's "
                   "row and column of the matrix hold the boxes behind it.")
    if st.button("Store as a FiftyOne evaluation run", key="overview_store_run"):
        with st.spinner("Evaluating with FiftyOne…"):
            key = evaluation.store_run(name, split, iou, conf)
        st.success(f"Stored evaluation run `{key}`: the FiftyOne App's Model Evaluation panel "
                   f"shows it; each evaluated box carries `{key}` = tp / fp / fn.")


st.subheader("Evaluation drill-down")
with shown_errors("Evaluating per box"):
    _drilldown(name, token)
