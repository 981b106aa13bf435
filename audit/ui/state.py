"""The one typed object the pages share through ``st.session_state``.

Only cross-page state lives here (the chosen dataset, the reviewer, the triage filter that the
insights page hands to the triage page, the sample the analysis page looks at). Page-local widget
state uses keys prefixed with the page name (``triage_issue``, ``latent_method``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

STATE_KEY = "app_state"


@dataclass
class TriageFilter:
    """What the triage queue shows.

    Attributes:
        sample_ids: restrict the queue to these samples (e.g. an insight's evidence); None = all.
        issue: one issue name (``wrong_class``, ``bad_box``, ...) or None for any flagged issue.
        label: a class name present in the sample's ground truth, or None.
        split: ``"train"``, ``"val"`` or None.
        cluster: a cluster id or None.
        source: a human-readable reason shown above the queue (e.g. the insight's title).
        box_ids: boxes to show on each sample instead of its flagged ones (e.g. the boxes
            behind a confusion-matrix cell); None = the flagged boxes.
        order_by: the issue whose score orders the queue (the issue an insight is about, or
            the reviewer's choice) without filtering on it; None = by ``issue`` when one is
            chosen, else by overall mistakenness.
        skip_ids: samples left out of the queue: with the "unreviewed only" filter, those
            reviewed when it was turned on (a snapshot, so the queue holds still while the
            reviewer works through it; turning it on again takes a new one).
    """

    sample_ids: tuple[str, ...] | None = None
    issue: str | None = None
    label: str | None = None
    split: str | None = None
    cluster: int | None = None
    source: str = ""
    box_ids: tuple[str, ...] | None = None
    order_by: str | None = None
    skip_ids: tuple[str, ...] | None = None


@dataclass
class AppState:
    """Cross-page state of one browser session.

    Attributes:
        dataset: name of the FiftyOne dataset being audited, or None before one is picked.
        reviewer: the name stamped on review decisions.
        triage: the triage queue's filter.
        triage_position: index of the current sample in the filtered queue.
        analysis_sample: sample id the "Sample analysis" page opens on, or None.
        fiftyone_url: URL of the FiftyOne App launched by this process, once launched.
    """

    dataset: str | None = None
    reviewer: str = ""
    triage: TriageFilter = field(default_factory=TriageFilter)
    triage_position: int = 0
    analysis_sample: str | None = None
    fiftyone_url: str | None = None

    def set_triage(self, new_filter: TriageFilter) -> None:
        """Replace the triage filter and go back to the top of the queue."""
        self.triage = new_filter
        self.triage_position = 0


def get_state() -> AppState:
    """Return this session's ``AppState``, creating it on first use."""
    state = st.session_state.get(STATE_KEY)
    if not isinstance(state, AppState):
        state = AppState()
        st.session_state[STATE_KEY] = state
    return state
