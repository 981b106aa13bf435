"""Triage decisions from widget callbacks: build a ``Decision``, record it, remember the outcome.

The outcome (success, conflict, error) is kept in ``st.session_state[MESSAGE_KEY]`` and shown by
the triage page on the rerun that follows the callback.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from audit.boxes import iou_matrix
from audit.ui import cache
from audit.ui.state import get_state

MESSAGE_KEY = "triage_message"  # (kind, text) of the last decision, kind in success|conflict|error
ACTION_WORDS = {"confirm": "Confirmed", "fix_class": "Fixed the class of", "delete": "Deleted",
                "accept_prediction": "Accepted the model's box for", "dismiss": "Dismissed",
                "relabel": "Marked", "undo": "Undid the last decision on"}


def note_key(sample_id: str) -> str:
    """Session key of the note typed for one sample (a note never carries over to the next)."""
    return f"triage_note_{sample_id}"



def record(name: str, sample_id: str, revision: int, action: str, *, box_id: str | None = None,
           new_label: str | None = None, box: tuple[float, ...] | None = None) -> None:
    """Record one decision through the review store (a widget callback; never raises).

    Args:
        name: dataset name.
        sample_id: the sample decided on.
        revision: the sample's review revision the reviewer saw (the decision's base).
        action: one of ``constants.REVIEW_ACTIONS``.
        box_id: the ground-truth box, or the prediction for ``accept_prediction``.
        new_label: the class for ``fix_class`` / ``accept_prediction``.
        box: absolute pixel ``xyxy`` replacement box for ``accept_prediction`` on a gt box.

    The decision carries the note typed for this sample (``note_key``), whatever its action.
    """
    from audit.data.review_store import ReviewConflict, record_decision
    from audit.reviews import Decision

    state = get_state()
    note = str(st.session_state.get(note_key(sample_id)) or "").strip()
    try:
        decision = Decision(dataset=name, sample_id=sample_id, box_id=box_id, action=action,
                            new_label=new_label, box=box, note=note, reviewer=state.reviewer,
                            base_revision=int(revision))
        outcome = record_decision(cache.dataset(name), decision)
    except ReviewConflict as exc:
        st.session_state[MESSAGE_KEY] = ("conflict", str(exc))
        return
    except (ValueError, OSError) as exc:
        st.session_state[MESSAGE_KEY] = ("error", f"The decision was not recorded: {exc}")
        return
    what = ("the image" if box_id is None else
            "the model's box" if action == "dismiss" else "the box")
    st.session_state[MESSAGE_KEY] = (
        "success", f"{ACTION_WORDS[action]} {what} (revision {outcome.revision}, sample "
        f"{outcome.sample_status}).")


def best_prediction(boxes: pd.DataFrame, gt_row: pd.Series, *, min_confidence: float = 0.25
                    ) -> pd.Series | None:
    """The prediction overlapping a ground-truth box most (IoU > 0), or None.

    Args:
        boxes: ``views.sample_boxes`` frame of the sample (absolute pixel xyxy).
        gt_row: one of its ``source == "gt"`` rows.
        min_confidence: predictions below this are ignored.
    """
    preds = boxes[(boxes["source"] == "pred") & (boxes["confidence"] >= min_confidence)]
    if preds.empty:
        return None
    cols = ["x1", "y1", "x2", "y2"]
    iou = iou_matrix(gt_row[cols].to_numpy(dtype=float)[None, :], preds[cols].to_numpy(float))[0]
    best = int(np.argmax(iou))
    return preds.iloc[best] if iou[best] > 0 else None


def step(delta: int, length: int) -> None:
    """Move the triage position by ``delta`` within ``[0, length)`` (a button callback)."""
    state = get_state()
    state.triage_position = int(min(max(state.triage_position + delta, 0), max(length - 1, 0)))
