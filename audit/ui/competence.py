"""The model's competence on the pages: a warning per weak class, and the per-class table.

What :mod:`audit.competence` measured at scoring time (read with
``audit.data.views.model_competence``): the Start and Triage pages say plainly where the model is
too weak for its disagreement with the labels to mean much; the Overview page shows the figures.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audit import constants as C
from audit.competence import class_sentence
from audit.data import views
from audit.ui import cache

TABLE_COLUMNS = {  # competence column -> table heading
    "verdict": "verdict", "weak_on": "weak on", "n_gt": "labels", "n_pred": "detections",
    "recall": "recall", "precision": "precision", "ap50": "AP50", "median_iou": "median IoU"}


@st.cache_data(max_entries=4, show_spinner=False)
def _stored(name: str, token: str) -> dict:
    """``views.model_competence`` of one dataset version."""
    del token  # cache key only
    return views.model_competence(cache.dataset(name))


def stored(name: str) -> dict:
    """What the last scoring measured (``views.model_competence``) for dataset ``name``."""
    return _stored(name, cache.version(name))


def relevant_warnings(competence: dict, label: str | None = None) -> list[str]:
    """The stored sentences; with ``label``, the other weak classes' sentences left out."""
    frame, sentences = competence["classes"], competence["warnings"]
    if label is None or frame.empty:
        return list(sentences)
    conf = float(competence.get("conf") or C.COMPETENCE_CONF)
    split = str(competence.get("split") or "val")
    weak = frame[(frame["verdict"] == "weak") & (frame.index.astype(str) != str(label))]
    others = {class_sentence(str(lab), row, conf=conf, split=split) for lab, row in weak.iterrows()}
    return [s for s in sentences if s not in others]


def show_warnings(name: str, *, label: str | None = None) -> None:
    """One ``st.warning`` per sentence (no val split, weak model, each weak class, too few
    labels); nothing when the model is reliable or the dataset unscored."""
    for sentence in relevant_warnings(stored(name), label):
        st.warning(sentence, icon=":material/warning:")


def competence_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-class frame as shown: weak classes first, shares rounded, readable headings."""
    if frame.empty:
        return pd.DataFrame(columns=["class", *TABLE_COLUMNS.values()])
    order = frame["verdict"].map({"weak": 0, "reliable": 1}).fillna(2)
    shown = frame.assign(_order=order).sort_values(["_order", "recall"], kind="stable")
    shown = shown[list(TABLE_COLUMNS)].round({"recall": 2, "precision": 2, "ap50": 3,
                                              "median_iou": 2})
    return shown.rename(columns=TABLE_COLUMNS).rename_axis("class").reset_index()


def show_table(name: str) -> None:
    """The per-class competence table with a caption saying what was measured and how."""
    competence = stored(name)
    if competence["classes"].empty:
        st.info("The model's competence has not been measured yet: score the dataset again.")
        return
    split = "the val split" if competence["split"] == "val" else "every image (no val split)"
    conf = float(competence.get("conf") or C.COMPETENCE_CONF)
    knob = {"min_recall": C.COMPETENCE_MIN_RECALL, "min_precision": C.COMPETENCE_MIN_PRECISION,
            "min_iou": C.COMPETENCE_MIN_IOU, "min_boxes": C.COMPETENCE_MIN_BOXES,
            **competence.get("thresholds", {})}
    st.caption(f"Measured on {split}: recall and precision at confidence {conf:g}, AP50 over "
               f"every prediction. A class is weak at recall <= {knob['min_recall']:g}, "
               f"precision <= {knob['min_precision']:g} or median IoU <= {knob['min_iou']:g} "
               f"(its flags then need more care), unjudged under {knob['min_boxes']:g} labels.")
    st.dataframe(competence_table(competence["classes"]), hide_index=True,
                 key="overview_competence")
