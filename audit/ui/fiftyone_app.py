"""The "Open in FiftyOne App" button: the link, or why not, right below it, at once.

The App is started in the background when a page shows the button
(:func:`audit.data.app_launch.start_app`), so a click usually only points it at the view.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from audit import constants as C
from audit.data import app_launch
from audit.ui.common import shown_errors
from audit.ui.state import get_state


def warm_up(name: str) -> None:
    """Start the App in the background when ``C.APP_WARM_UP`` (a failure is reported by the
    next click)."""
    if C.APP_WARM_UP:
        with shown_errors("Starting the FiftyOne App"):
            app_launch.start_app(name)


def open_button(name: str, sample_ids: Sequence[str], key: str, container=None) -> None:
    """An "Open in FiftyOne App" button; a click shows the App's link (or the reason it cannot
    open) right below the button, in the same run."""
    box = container if container is not None else st
    if not box.button("Open in FiftyOne App", key=key, disabled=not sample_ids):
        return
    with box:
        with shown_errors("Opening the FiftyOne App"):
            spinner = "Starting the FiftyOne App…" if app_launch.app_status()[0] != "running" \
                else "Opening the view…"
            with st.spinner(spinner):
                url = app_launch.launch_app(name, sample_ids=list(sample_ids))
            get_state().fiftyone_url = url
            st.link_button("Go to the FiftyOne App ↗", url, type="primary")
            st.caption(f"{url} shows these {len(sample_ids):,} samples; predictions below "
                       f"confidence {C.APP_MIN_CONFIDENCE:g} are hidden (a filter in the App's "
                       "view bar: remove it to see them).")
