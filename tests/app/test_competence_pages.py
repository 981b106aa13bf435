"""The model's competence on the pages: warnings on Start and Triage, the table on Overview."""

from __future__ import annotations

import itertools

import pytest

from tests.app.conftest import build_app_dataset, start_on
from tests.builders import boxes_frame, gt, pred, samples_frame

pytest.importorskip("fiftyone")
from streamlit.testing.v1 import AppTest

from audit.competence import model_competence

_names = itertools.count()


def _competence():
    """Competence of a model that finds every cup and one book in three (book: weak recall)."""
    rows, ids = [], [f"s{i}" for i in range(30)]
    for i, sid in enumerate(ids):
        cup, book = (10.0, 10.0, 60.0, 60.0), (100.0, 10.0, 150.0, 60.0)
        rows += [gt(sid, cup, "cup"), pred(sid, cup, "cup", 0.9), gt(sid, book, "book")]
        if i % 3 == 0:
            rows.append(pred(sid, book, "book", 0.8))
    return model_competence(boxes_frame(rows), samples_frame(ids, split="val"))


@pytest.fixture
def weak_dataset(tmp_path) -> tuple[str, list[str]]:
    """A scored app dataset whose stored competence says the model is weak on books."""
    from audit.data import store
    from audit.data.store_write import _competence as stored_form

    name = f"app-test-competence-{next(_names)}"
    ds = build_app_dataset(tmp_path / "images", name)
    res = _competence()
    store.update_audit_info(ds, competence=stored_form(res))
    return name, res.warnings


def _open(dataset: str, page: str | None = None) -> AppTest:
    """Run the app, pick ``dataset`` and switch to ``page``."""
    at = start_on(dataset)
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _book_sentences(at: AppTest) -> list[str]:
    """The shown warnings about books."""
    return [w.value for w in at.warning if "weak on book" in w.value]


def test_start_warns_once_per_weak_class(weak_dataset):
    name, sentences = weak_dataset
    at = _open(name)
    shown = [w.value for w in at.warning]
    assert sentences and all(shown.count(s) == 1 for s in sentences)
    assert len(_book_sentences(at)) == 1 and "'spurious' flags on book" in _book_sentences(at)[0]
    assert not any("weak on cup" in s for s in shown)


def test_triage_warns_and_keeps_to_the_filtered_class(weak_dataset):
    name, _ = weak_dataset
    at = _open(name, "pages/triage.py")
    assert len(_book_sentences(at)) == 1
    at.selectbox(key="triage_class").set_value("cup").run()
    assert not at.exception, at.exception
    assert _book_sentences(at) == []  # another class's weakness is not this queue's concern


def test_overview_shows_the_competence_table(weak_dataset):
    name, _ = weak_dataset
    at = _open(name, "pages/overview.py")
    tables = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    assert len(tables) == 1
    table = tables[0].set_index("class")
    assert table.loc["book", "verdict"] == "weak" and table.loc["book", "weak on"] == "recall"
    assert table.loc["cup", "verdict"] == "reliable"
    assert table.index[0] == "book"  # weak classes first
    assert any("val split" in c.value for c in at.caption)


def test_unmeasured_dataset_shows_no_warning_and_says_so(app_dataset):
    at = _open(app_dataset)
    assert not [w for w in at.warning if "weak" in w.value]
    at.switch_page("pages/overview.py").run()
    assert not at.exception, at.exception
    assert any("competence has not been measured" in i.value for i in at.info)
