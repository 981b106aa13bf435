"""The scoring settings on the Start page: the stored config, and a panel to change it.

The panel offers the flag thresholds and a few evidence weights (:data:`PANEL_FIELDS`); its
button re-flags the stored scores when only flag-only settings changed (seconds,
:func:`audit.data.scoring.reflag_dataset`) and re-scores otherwise
(:func:`audit.data.scoring.score_dataset`). Every other setting is reachable from the command
line (``python -m audit score --config FILE --set KEY=VALUE``).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from audit import issues as I
from audit.config import DEFAULT, FIELD_HELP, FLAG_ONLY_FIELDS, ScoringConfig
from audit.data import views
from audit.ui import cache
from audit.ui.common import shown_errors

# the settings the panel offers: every flag threshold, then the main evidence weights
PANEL_FIELDS = (*(i.threshold_field for i in I.REGISTRY), "missing_flag_conf",
                "class_knn_weight", "gt_knn_weight", "atypical_weight", "look_weight",
                "loss_boost")


def stored_config(name: str) -> ScoringConfig:
    """The config dataset ``name`` was scored with (the defaults when none is stored)."""
    cache.version(name)  # reloads the dataset, so a re-flag elsewhere shows
    return views.scoring_config(cache.dataset(name))


def config_table(config: ScoringConfig) -> pd.DataFrame:
    """One row per setting: ``value``, ``default``, ``kind`` (flag-only / score), ``changed``,
    ``meaning``; indexed by setting name."""
    rows = [{"setting": n, "value": str(v), "default": str(getattr(DEFAULT, n)),
             "kind": "flag-only" if n in FLAG_ONLY_FIELDS else "score",
             "changed": v != getattr(DEFAULT, n), "meaning": FIELD_HELP[n]}
            for n, v in ((n, getattr(config, n)) for n in FIELD_HELP)]
    return pd.DataFrame(rows).set_index("setting")


def widget_key(name: str, field: str) -> str:
    """Session key of the panel's input for ``field`` on dataset ``name``."""
    return f"start_setting_{name}_{field}"


def show_stored(name: str) -> None:
    """An expander with the stored config; the values that differ from the defaults first."""
    config = stored_config(name)
    changed = config.non_default()
    with st.expander(f"Scoring config ({len(changed)} setting(s) changed from the defaults)"):
        for field, value in changed.items():
            st.markdown(f"- **{field} = {value}** (default {getattr(DEFAULT, field)}): "
                        f"{FIELD_HELP[field]}")
        if not changed:
            st.caption("Every setting at its default.")
        st.dataframe(config_table(config), key="start_config_table")
        st.caption("`python -m audit config --show --name <dataset>` prints it as a TOML file.")


def settings_panel(name: str) -> None:
    """Number inputs for :data:`PANEL_FIELDS` and a Re-flag / Re-score button."""
    current = stored_config(name)
    with st.expander("Scoring settings"):
        cols = st.columns(3)
        values = {}
        for k, field in enumerate(PANEL_FIELDS):
            values[field] = cols[k % 3].number_input(
                field, min_value=0.0, max_value=1.0, value=float(getattr(current, field)),
                step=0.01, format="%.3f", help=FIELD_HELP[field], key=widget_key(name, field))
        try:
            wanted = replace(current, **values)
        except ValueError as exc:
            st.error(str(exc))
            return
        changed = wanted.differences(current)
        flag_only = wanted.score_fields_equal(current)
        label = "Re-flag" if flag_only else "Re-score"
        what = f"Changed: {', '.join(changed)}. " if changed else "No change. "
        how = ("Re-flagging applies the thresholds to the stored scores in seconds."
               if flag_only else "A score setting changed: every audit runs again (minutes).")
        st.caption(what + how)
        if st.button(label, key="start_apply_settings", type="primary", disabled=not changed):
            _apply(name, wanted, flag_only=flag_only, label=label)


def _apply(name: str, config: ScoringConfig, *, flag_only: bool, label: str) -> None:
    """Re-flag or re-score dataset ``name`` with a progress bar, then rerun the page."""
    from audit.data.scoring import reflag_dataset, score_dataset

    bar = st.progress(0.0, text=f"{label}…")

    def report(fraction: float, message: str = "") -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or None)

    with shown_errors(label):
        if flag_only:
            reflag_dataset(name, config, progress_callback=report)
        else:
            score_dataset(name, config=config, full=True, progress=False,
                          progress_callback=report)
        cache.clear()
        st.rerun()
