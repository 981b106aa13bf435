"""Triage: flagged samples most-suspicious first; confirm, fix, delete, accept, relabel, undo."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from audit.data import views
from audit.ui import cache, competence, decide
from audit.ui.common import draw_sample, require_dataset, shown_errors
from audit.ui.state import TriageFilter, get_state

ALL = "(all)"
DEFAULT_ORDER = "(the issue filter's score, else overall)"  # order_by None


def _order(options: list[str], current: str | None, container) -> str | None:
    """The "Order by" selectbox: an issue whose score orders the queue, or None."""
    values = [DEFAULT_ORDER, *sorted(set(options) | ({current} if current else set()))]
    picked = container.selectbox("Order by", values, key="triage_order",
                                 index=values.index(current) if current in values else 0)
    return None if picked == DEFAULT_ORDER else picked


def _choice(label: str, options: list, current, key: str, container):
    """A selectbox over ``[ALL, *options]`` starting at ``current``; returns None for ALL."""
    values = [ALL, *options]
    index = values.index(current) if current in values else 0
    picked = container.selectbox(label, values, index=index, key=key)
    return None if picked == ALL else picked


def _filters(name: str) -> TriageFilter:
    """Filter widgets; a change resets the queue position."""
    state = get_state()
    opts, flt = cache.facets(name), state.triage
    c = st.columns(5)
    new = replace(flt, issue=_choice("Issue", opts["issues"], flt.issue, "triage_issue", c[0]),
                  label=_choice("Class", opts["labels"], flt.label, "triage_class", c[1]),
                  split=_choice("Split", opts["splits"], flt.split, "triage_split", c[2]),
                  cluster=_choice("Cluster", opts["clusters"], flt.cluster, "triage_cluster",
                                  c[3]),
                  order_by=_order(opts["issues"], flt.order_by, c[4]))
    unreviewed = st.toggle("Unreviewed only", value=flt.skip_ids is not None,
                           key="triage_unreviewed",
                           help="Leave out the samples reviewed so far (as of turning this on)")
    if unreviewed != (flt.skip_ids is not None):
        new = replace(new, skip_ids=cache.reviewed_ids(name) if unreviewed else None)
    if flt.sample_ids is not None:
        st.info(f"Showing the {len(flt.sample_ids):,} samples of: {flt.source or 'a selection'}")
        if st.button("Show every flagged sample", key="triage_clear_source"):
            new = replace(new, sample_ids=None, source="", box_ids=None)
    if new != flt:
        state.set_triage(new)
    return state.triage


def _progress(name: str) -> None:
    """Reviewed / flagged counter of the whole dataset."""
    from audit.data.review_store import review_progress

    reviewed, total = review_progress(cache.dataset(name))
    st.progress(reviewed / total if total else 0.0,
                text=f"Reviewed {reviewed:,} of {total:,} flagged samples")


def _navigation(queue: pd.DataFrame) -> str:
    """Previous / next buttons; returns the current sample id."""
    state = get_state()
    n = len(queue)
    state.triage_position = min(max(state.triage_position, 0), n - 1)
    c = st.columns([1, 1, 4])
    c[0].button("◀ Previous", key="triage_prev", on_click=decide.step, args=(-1, n),
                disabled=state.triage_position == 0, width="stretch")
    c[1].button("Next ▶", key="triage_next", on_click=decide.step, args=(1, n),
                disabled=state.triage_position >= n - 1, width="stretch")
    sid = str(queue.index[state.triage_position])
    row = queue.iloc[state.triage_position]
    c[2].markdown(f"**{state.triage_position + 1} / {n}** · `{sid}` · {row['split']} · "
                  f"cluster {row['cluster']} · score {row['score']:.2f} · "
                  f"{', '.join(row['flagged']) or 'not flagged'}")
    return sid


HINTS = {"spurious": " → delete?", "bad_box": " → the model's box?",
         "group_box": " → one box per object?", "missing": " → add a label?"}  # wrong_class: class


def _box_caption(row: pd.Series) -> str:
    """One line naming a box, its issue and what the issue suggests doing."""
    if not isinstance(row["flagged_issue"], str):  # a box of a selection, not flagged
        conf = f" ({row['confidence']:.2f})" if row["source"] == "pred" else ""
        status = f" [{row['review_status']}]" if isinstance(row["review_status"], str) else ""
        return f"{row['source']} '{row['label']}'{conf}{status}"
    if row["flagged_issue"] == "wrong_class" or row["flagged_issue"] not in HINTS:
        hint = f" → {row['suggested_label']}" if isinstance(row["suggested_label"], str) else ""
    else:
        hint = HINTS[row["flagged_issue"]]
    status = f" [{row['review_status']}]" if isinstance(row["review_status"], str) else ""
    conf = f" ({row['confidence']:.2f})" if row["source"] == "pred" else ""
    return (f"{row['flagged_issue']} {row['flag_score']:.2f}: {row['source']} "
            f"'{row['label']}'{conf}{hint}{status}")


def _box_actions(name: str, sid: str, revision: int, boxes: pd.DataFrame, row: pd.Series,
                 classes: list[str]) -> None:
    """Buttons for one flagged box."""
    box_id = row["box_id"]
    common = {"args": (name, sid, revision)}
    if row["source"] == "pred":  # a possibly missing object: accept it as a new label
        label = st.selectbox("Class of the new label", classes,
                             key=f"triage_accept_class_{box_id}",  # per box: its own default
                             index=classes.index(row["label"]) if row["label"] in classes else 0)
        done = row["review_status"] if row["review_status"] in ("accepted", "dismissed") else None
        st.button("Accept the model's box as a new label", key="triage_accept", type="primary",
                  on_click=decide.record, **common, disabled=done == "accepted",
                  kwargs={"action": "accept_prediction", "box_id": box_id, "new_label": label})
        st.button("Dismiss (not an object)", key="triage_dismiss", on_click=decide.record,
                  **common, kwargs={"action": "dismiss", "box_id": box_id},
                  disabled=done is not None)
        if done:
            st.caption(f"This prediction is {done}; undo to decide again.")
        return
    issue = row["flagged_issue"]
    primary = lambda wanted: "primary" if issue == wanted else "secondary"  # noqa: E731
    c = st.columns(2)
    c[0].button("Confirm label", key="triage_confirm", on_click=decide.record, **common,
                kwargs={"action": "confirm", "box_id": box_id})
    c[1].button("Delete box", key="triage_delete", on_click=decide.record, **common,
                kwargs={"action": "delete", "box_id": box_id}, type=primary("spurious"))
    # the suggested class is the wrong-class evidence: offered first only for that issue
    suggested = row["suggested_label"] if issue == "wrong_class" else row["label"]
    new_label = st.selectbox("Correct class", classes, key=f"triage_fix_class_{box_id}",
                             index=classes.index(suggested) if suggested in classes else 0)
    st.button("Fix class", key="triage_fix", on_click=decide.record, **common,
              kwargs={"action": "fix_class", "box_id": box_id, "new_label": new_label},
              disabled=new_label == row["label"], type=primary("wrong_class"))
    pred = decide.best_prediction(boxes, row)
    if pred is not None:
        xyxy = tuple(float(v) for v in pred[["x1", "y1", "x2", "y2"]])
        st.button(f"Use the model's box ({pred['label']} {pred['confidence']:.2f})",
                  key="triage_accept_box", on_click=decide.record, **common,
                  kwargs={"action": "accept_prediction", "box_id": box_id, "box": xyxy},
                  type=primary("bad_box"))


def _image_actions(name: str, sid: str, revision: int) -> None:
    """Image-level relabel request and undo."""
    st.text_input("Note for the relabelling team (kept with every decision on this image)",
                  key=decide.note_key(sid))
    st.button("Mark image for relabelling", key="triage_relabel", on_click=decide.record,
              args=(name, sid, revision), kwargs={"action": "relabel"})
    st.button("Undo the last decision on this image", key="triage_undo", on_click=decide.record,
              args=(name, sid, revision), kwargs={"action": "undo"}, disabled=revision == 0)


def _message() -> None:
    """Show (once) the outcome of the last decision."""
    kind, text = st.session_state.pop(decide.MESSAGE_KEY, (None, ""))
    if kind == "success":
        st.success(text)
    elif kind == "conflict":
        st.warning(f"Conflict: {text}")
    elif kind == "error":
        st.error(text)


def _facts(row: pd.Series) -> str:
    """Loss, and loss against the train look-alikes, of one queue row as one line (split and
    cluster are in the queue line above)."""
    parts = []
    if pd.notna(row.get("loss")):
        parts.append(f"loss {row['loss']:.2f}")
    if pd.notna(row.get("neighbour_loss_ratio")):
        parts.append(f"{row['neighbour_loss_ratio']:.1f}x the loss of its nearest train images")
    return " · ".join(parts)


def _sample(name: str, sid: str, row: pd.Series) -> None:
    """Image with boxes on the left, decisions on the right (``row``: its queue row)."""
    ds = cache.dataset(name)
    review = views.sample_review(ds, sid)
    boxes = views.sample_boxes(ds, sid)
    chosen = get_state().triage.box_ids  # a selection's boxes (a matrix cell), else the flagged
    keep = boxes["box_id"].isin(chosen) if chosen is not None else boxes["flagged_issue"].notna()
    flagged = boxes[keep].set_index("box_id", drop=False)
    order = get_state().triage.order_by or get_state().triage.issue
    if order:  # the boxes of the issue the reviewer came for first, the first one picked
        flagged = flagged.sort_values("flagged_issue", key=lambda s: s != order, kind="stable")
    classes = cache.overview(name, cache.version(name))["classes"]
    left, right = st.columns([3, 2])
    with right:
        st.markdown(f"Review status: **{review['status']}** (revision {review['revision']})")
        st.caption(_facts(row))
        picked = None
        if flagged.empty:
            st.caption("No box of this sample is over a flag threshold." if chosen is None
                       else "No box of this sample is in the selection.")
        else:
            captions = {bid: _box_caption(row) for bid, row in flagged.iterrows()}
            if st.session_state.get("triage_box") in captions:
                # a decision changes the captions; setting the kept value again makes the
                # browser show it selected (it matches the choice by caption)
                st.session_state["triage_box"] = st.session_state["triage_box"]
            box_id = st.radio("Flagged boxes" if chosen is None else "Boxes of the selection",
                              list(captions), key="triage_box",
                              format_func=lambda bid: captions.get(bid, str(bid)))
            picked = flagged.loc[box_id if box_id in flagged.index else flagged.index[0]]
            _box_actions(name, sid, review["revision"], boxes, picked, classes)
        st.divider()
        _image_actions(name, sid, review["revision"])
    with left:
        show_pred = st.toggle("Show predictions", value=True, key="triage_show_pred")
        image = draw_sample(row["filepath"], boxes, highlight_box=None if picked is None
                            else picked["box_id"], show_pred=show_pred, min_confidence=0.25)
        st.image(image, caption="green: labels · orange dashed: predictions · red: flagged box",
                 width="stretch")


name = require_dataset()
state = get_state()
st.title("Triage")
if not state.reviewer:
    st.caption("Tip: put your name in the sidebar so your decisions carry it.")
with shown_errors("Reading the review progress"):
    _progress(name)
flt = _filters(name)
with shown_errors("Reading the model's competence"):
    competence.show_warnings(name, label=flt.label)
queue = cache.triage_queue(name, flt)
_message()
if queue.empty:
    st.info("No flagged sample matches these filters.")
    st.stop()
sample_id = _navigation(queue)
state.analysis_sample = sample_id
with shown_errors(f"Showing sample {sample_id}"):
    _sample(name, sample_id, queue.loc[sample_id])
