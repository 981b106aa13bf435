"""What outlives a reload: the chosen dataset and the reviewer's name in the page's URL.

A browser reload starts a new Streamlit session with empty session state; the URL's query
parameters (``?dataset=...&reviewer=...``) survive it, so every run writes the two into
``st.query_params`` and a new session reads them back once. The dataset last picked on this
machine is kept in ``<AUDIT_HOME>/last_dataset`` for a session that opens without one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from audit import constants as C
from audit.reviews import MAX_NAME_CHARS
from audit.ui.state import AppState

PARAMS = ("dataset", "reviewer")  # query parameters kept in the URL
RESTORED_KEY = "app_restored"  # session flag: the URL was read back once
LAST_DATASET = "last_dataset"  # file in AUDIT_HOME naming the dataset picked last


def restore(state: AppState, known: Callable[[], list[str]]) -> None:
    """On a session's first run, take the dataset and reviewer from the URL.

    Args:
        state: this session's state (filled in place where still empty).
        known: the audit datasets; a dataset in the URL that is not one of them is ignored.
    """
    if st.session_state.get(RESTORED_KEY):
        return
    st.session_state[RESTORED_KEY] = True
    params = st.query_params
    reviewer = (params.get("reviewer") or "").strip()[:MAX_NAME_CHARS]
    if reviewer and not state.reviewer:
        state.reviewer = reviewer
    dataset = params.get("dataset")
    if dataset and state.dataset is None and dataset in known():
        state.dataset = dataset


def keep(state: AppState) -> None:
    """Write the dataset and reviewer into the URL (dropping the empty ones)."""
    for key, value in (("dataset", state.dataset), ("reviewer", state.reviewer)):
        if value and st.query_params.get(key) != value:
            st.query_params[key] = value
        elif not value and key in st.query_params:
            del st.query_params[key]


def _last_path() -> Path:
    """The file naming the dataset picked last."""
    return Path(C.AUDIT_HOME) / LAST_DATASET


def last_dataset() -> str | None:
    """The dataset picked last on this machine, or None."""
    try:
        return _last_path().read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def remember_dataset(name: str) -> None:
    """Keep ``name`` as the dataset picked last (written atomically; failures ignored: it is a
    convenience, never a reason for a page to fail)."""
    if name == last_dataset():
        return
    path = _last_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{LAST_DATASET}.{uuid.uuid4().hex}")
        tmp.write_text(name, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
