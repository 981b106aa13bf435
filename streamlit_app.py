"""YOLO label auditor: entry point (typed session state, dataset picker, navigation).

Run with ``streamlit run streamlit_app.py``. The Start page lives here; every other page is one
file under ``pages/``.
"""

from __future__ import annotations

import streamlit as st

from audit import constants as C
from audit.data import views
from audit.ui import cache, competence, session, settings
from audit.ui.common import shown_errors
from audit.ui.state import get_state

PAGES = {  # file -> (title, icon)
    "pages/overview.py": ("Overview", ":material/monitoring:"),
    "pages/latent_space.py": ("Latent space", ":material/scatter_plot:"),
    "pages/insights.py": ("Insights", ":material/lightbulb:"),
    "pages/triage.py": ("Triage", ":material/fact_check:"),
    "pages/sample_analysis.py": ("Sample analysis", ":material/local_fire_department:"),
    "pages/export.py": ("Export", ":material/download:"),
}


def _progress_callback(bar):
    """A ``fn(fraction, message)`` that drives a ``st.progress`` bar."""

    def update(fraction: float, message: str = "") -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or None)

    return update


def _build_demo() -> None:
    """Build (or reuse) the demo dataset with a progress bar, then select it."""
    from audit.data.demo import build_demo

    bar = st.progress(0.0, text="Building the demo world…")
    with shown_errors("Building the demo"):
        build_demo(C.DEMO_DATASET_NAME, progress_callback=_progress_callback(bar))
        cache.clear()
        get_state().dataset = C.DEMO_DATASET_NAME
        st.rerun()


def _score_now(name: str, *, full: bool = False) -> None:
    """Score dataset ``name`` with a progress bar (``full``: every audit, never a re-flag)."""
    from audit.data.scoring import score_dataset

    bar = st.progress(0.0, text="Scoring…")
    with shown_errors("Scoring"):
        score_dataset(name, full=full, progress_callback=_progress_callback(bar))
        cache.clear()
        st.rerun()


def _dataset_facts(name: str) -> None:
    """Size, splits, classes and scoring time of the chosen dataset."""
    facts = cache.overview(name, cache.version(name))
    cols = st.columns(3)
    cols[0].metric("Samples", f"{facts['n_samples']:,}")
    cols[1].metric("Splits", " / ".join(f"{k} {v:,}" for k, v in facts["splits"].items()) or "-")
    cols[2].metric("Classes", len(facts["classes"]))
    st.caption("Classes: " + ", ".join(map(str, facts["classes"])))
    if facts.get("orphaned_reviews"):
        _orphaned_reviews(name, facts["orphaned_reviews"])
    if facts.get("score_incomplete"):  # a scoring killed or failed mid-write
        st.error(f"{facts['score_incomplete']}. The audit pages would show a mix of old and "
                 "new scores.")
        if st.button("Score again", key="start_rescore", type="primary"):
            _score_now(name, full=True)
    elif facts.get("scored_at"):
        st.success(f"Scored at {str(facts['scored_at'])[:16].replace('T', ' ')} (UTC).")
        competence.show_warnings(name)  # a weak model, said before any finding
        _stands_out(name)
        settings.show_stored(name)
        settings.settings_panel(name)
    else:
        st.warning("This dataset has not been scored yet: the audit pages need scores.")
        if st.button("Score now", key="start_score", type="primary"):
            _score_now(name)


def _orphaned_reviews(name: str, n: int) -> None:
    """Say that the review log holds decisions on samples no longer in the dataset (it was
    deleted and ingested again), and offer to re-apply them by file path and box."""
    st.warning(f"The review log holds {n} decision(s) on samples no longer in this dataset "
               "(it was deleted and ingested again). They can be re-applied to the same images "
               "and boxes; a box that changed since is left as it is.")
    if st.button("Re-apply them", key="start_reapply"):
        with shown_errors("Re-applying the decisions"):
            st.success(views.reapply_reviews(name))
            cache.clear()


def _stands_out(name: str, top: int = 3) -> None:
    """The most severe insights, and the way to the pages that hold the rest."""
    items = cache.insights(name, cache.version(name))
    if items:
        st.subheader("What stands out")
        for item in items[:top]:
            st.markdown(f"- **{item.get('title', '')}**: {item.get('sentence', '')}")
    left, right = st.columns(2)
    left.page_link("pages/insights.py", label=f"All {len(items)} insights, with their evidence",
                   icon=":material/lightbulb:")
    right.page_link("pages/triage.py", label="Review the flagged samples in triage",
                    icon=":material/fact_check:")


def start_page() -> None:
    """Pick an ingested dataset or build the demo; show what the chosen dataset holds."""
    state = get_state()
    st.title("YOLO label auditor")
    st.write("Find wrong, missing and inconsistent labels with the detector's own eyes.")
    names: list[str] = []
    with shown_errors("Listing datasets"):
        names = views.list_datasets()
    if names:
        current = state.dataset if state.dataset in names else session.last_dataset()
        index = names.index(current) if current in names else 0
        choice = st.selectbox("Dataset", names, index=index, key="start_dataset")
        state.dataset = choice
        session.remember_dataset(choice)
        session.keep(state)
    else:
        st.info("No ingested dataset yet. Build the demo, or ingest your own with "
                "`python -m audit ingest`.")
    if st.button("Build demo", key="start_build_demo"):
        _build_demo()
    if state.dataset:
        with shown_errors("Reading the dataset"):
            _dataset_facts(state.dataset)


def main() -> None:
    """Set up the page, the shared state and the navigation, then run the chosen page."""
    st.set_page_config(page_title="YOLO label auditor", page_icon=":material/fact_check:",
                       layout="wide")
    state = get_state()
    with shown_errors("Reading the dataset and reviewer from the address"):
        session.restore(state, views.list_datasets)
    pages = [st.Page(start_page, title="Start", icon=":material/home:", default=True,
                     url_path="start")]
    pages += [st.Page(path, title=title, icon=icon) for path, (title, icon) in PAGES.items()]
    page = st.navigation(pages)
    with st.sidebar:
        state.reviewer = st.text_input("Reviewer", value=state.reviewer, key="app_reviewer",
                                       placeholder="your name").strip()
        if state.dataset:
            st.caption(f"Dataset: **{state.dataset}**")
    session.keep(state)  # the URL then brings both back after a reload
    page.run()


main()
