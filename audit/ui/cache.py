"""Cached access to the data layer for the pages.

``st.cache_resource`` holds the dataset handle and the model; ``st.cache_data`` holds frames,
keyed by the dataset name and a version token that changes when the dataset is re-scored, so a
new score never shows stale frames. Pages call these, never ``audit.data.views`` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from audit.data import views
from audit.ui import queue
from audit.ui.state import TriageFilter


@st.cache_resource(max_entries=4, show_spinner="Opening the dataset…")
def dataset(name: str) -> Any:
    """The FiftyOne dataset handle (one per name per server process)."""
    return views.open_dataset(name)


def version(name: str) -> str:
    """Current version token of dataset ``name`` (see ``views.dataset_version``)."""
    return views.dataset_version(dataset(name))


@st.cache_data(max_entries=4, show_spinner="Reading the samples…")
def _table(name: str, token: str) -> pd.DataFrame:
    """Samples table of one dataset version."""
    del token  # cache key only
    return views.samples_table(dataset(name))


def table(name: str) -> pd.DataFrame:
    """The samples table (``views.samples_table``) of the dataset's current version."""
    return _table(name, version(name))


@st.cache_data(max_entries=32, show_spinner=False)
def _queue(name: str, token: str, flt: TriageFilter) -> pd.DataFrame:
    """Triage queue of one dataset version and filter."""
    return queue.build_queue(_table(name, token), flt)


def triage_queue(name: str, flt: TriageFilter) -> pd.DataFrame:
    """The filtered, ordered triage queue (``queue.build_queue``)."""
    return _queue(name, version(name), flt)


def reviewed_ids(name: str) -> tuple[str, ...]:
    """Samples reviewed so far (``views.reviewed_ids``), read fresh: decisions change it."""
    return views.reviewed_ids(dataset(name))


@st.cache_data(max_entries=8, show_spinner=False)
def _facets(name: str, token: str) -> dict[str, list]:
    """Filter options of one dataset version."""
    return queue.facets(_table(name, token))


def facets(name: str) -> dict[str, list]:
    """Options for the triage filters (``queue.facets``)."""
    return _facets(name, version(name))


@st.cache_data(max_entries=512, show_spinner=False)
def sample_boxes(name: str, sample_id: str, token: str) -> pd.DataFrame:
    """Boxes of one sample (``views.sample_boxes``) for one dataset version."""
    del token
    return views.sample_boxes(dataset(name), sample_id)


@st.cache_data(max_entries=4, show_spinner="Summarising the dataset…")
def overview(name: str, token: str) -> dict:
    """``views.dataset_overview`` of one dataset version."""
    del token
    return views.dataset_overview(dataset(name))


@st.cache_data(max_entries=4, show_spinner="Evaluating the predictions…")
def evaluation(name: str, token: str) -> dict:
    """``views.evaluation`` (mAP, per-class AP) of one dataset version."""
    del token
    return views.evaluation(dataset(name))


@st.cache_data(max_entries=4, show_spinner=False)
def insights(name: str, token: str) -> list[dict]:
    """``views.insights`` of one dataset version."""
    del token
    return views.insights(dataset(name))


def detector(name: str, path: str, sha: str | None) -> Any:
    """The YOLO11 detector dataset ``name`` was ingested with, refused (ValueError) when the file
    at ``path`` no longer has the digest ``sha`` recorded at ingest; checked on every call, so a
    file replaced while the app runs is caught too
    (``audit.data.checkpoint.load_ingested_detector``)."""
    from audit.data.checkpoint import file_digest, load_ingested_detector

    if sha and Path(path).is_file() and file_digest(path) == sha:
        return _detector(name, path, sha)  # the file is the one ingested: the cached model is it
    return load_ingested_detector(path, sha, dataset=name)  # raises, naming what changed


@st.cache_resource(max_entries=2, show_spinner="Loading the model…")
def _detector(name: str, path: str, sha: str) -> Any:
    """The detector of dataset ``name`` at ``path`` whose file digest is ``sha`` (cache key)."""
    from audit.data.checkpoint import load_ingested_detector

    return load_ingested_detector(path, sha, dataset=name)


def clear() -> None:
    """Drop every cached frame (after building or scoring a dataset)."""
    st.cache_data.clear()
