"""Export: corrected labels as COCO JSON / YOLO txt, the relabel list, a saved FiftyOne view."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from audit import constants as C
from audit.ui.common import require_dataset, shown_errors

FORMATS = {  # button label -> exports.export format
    "COCO JSON": "coco",
    "YOLO txt": "yolo",
    "Relabel CSV": "relabel-csv",
}
WRITTEN_KEY = "export_written"  # list of (what, path) written in this session


def check_folder(text: str) -> Path:
    """The output folder typed by the user; ValueError when it cannot be one."""
    if not text.strip():
        raise ValueError("type an output folder")
    folder = Path(text.strip()).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder")
    return folder


def _export(name: str, fmt: str, folder_text: str, split: str | None) -> None:
    """Run one export, say what it wrote (and left out) and remember the written path."""
    from audit.data.exports import run_export

    with shown_errors(f"Export to {fmt}"), st.spinner(f"Writing {fmt}…"):
        result = run_export(name, fmt, check_folder(folder_text), split=split)
        st.session_state.setdefault(WRITTEN_KEY, []).append((fmt, str(result.path)))
        st.success(result.summary)


def _save_view(name: str, view_name: str) -> None:
    """Save the flagged samples as a named FiftyOne view."""
    from audit.data.exports import save_flagged_view

    with shown_errors("Saving the view"):
        saved = save_flagged_view(name, view_name)
        st.session_state.setdefault(WRITTEN_KEY, []).append(("fiftyone view", str(saved)))


name = require_dataset()
st.title("Export")
st.write("Labels are exported **with the review decisions applied** (fixed classes, deleted "
         "boxes, accepted predictions); the relabel CSV lists the images marked for relabelling "
         "(with the reviewer's note, name, decision and its time) and the flagged boxes not yet "
         "reviewed.")
default_folder = str(C.AUDIT_HOME / name / "exports")
folder = st.text_input("Output folder", value=default_folder, key="export_folder")
split_choice = st.selectbox("Split", ["(all)", *C.SPLITS], key="export_split")
split = None if split_choice == "(all)" else split_choice
cols = st.columns(len(FORMATS))
for col, (label, fmt) in zip(cols, FORMATS.items(), strict=True):
    if col.button(label, key=f"export_{fmt}", width="stretch"):
        _export(name, fmt, folder, split)
st.subheader("FiftyOne App")
st.caption("Scoring already saved the views flagged, flagged-<issue> and generalisation-gap; "
           "save the flagged samples (most mistaken first) under another name here.")
left, right = st.columns([3, 1], vertical_alignment="bottom")
view_name = left.text_input("Saved view name", value="flagged", key="export_view_name")
if right.button("Save the view", key="export_view", width="stretch"):
    _save_view(name, view_name)
written = st.session_state.get(WRITTEN_KEY) or []
if written:
    st.subheader("Written")
    for what, path in reversed(written):
        st.markdown(f"- **{what}**: `{path}`")
