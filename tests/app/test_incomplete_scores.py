"""The app on a dataset whose last scoring was cut short (issue 17, case 9): the Start page says
so and offers a full re-score, every other page warns that its scores may be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.conftest import build_app_dataset, start_on

pytest.importorskip("fiftyone")



def test_a_scoring_cut_short_is_shown_as_such(tmp_path: Path) -> None:
    from audit.data import store

    name = "app-test-half-scored"
    build_app_dataset(tmp_path / "images", name)
    ds = store.load_dataset(name)
    with pytest.raises(KeyboardInterrupt), store.scoring_run(ds):
        ds.set_values("mistakenness_score", [0.0] * len(ds))  # part of the new scores ...
        raise KeyboardInterrupt  # ... then the process is stopped
    try:
        at = start_on(name)
        assert not at.exception, at.exception
        assert any("did not finish" in e.value and name in e.value for e in at.error)
        assert not any("Scored at" in s.value for s in at.success)
        assert at.button(key="start_rescore")
        at.switch_page("pages/triage.py").run()
        assert not at.exception, at.exception
        assert any("did not finish" in w.value for w in at.warning)
    finally:
        ds.delete()
