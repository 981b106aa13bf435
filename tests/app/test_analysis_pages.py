"""Sample analysis: the box picker names each box, the class follows the chosen box, the layers
keep network order, and the heat maps come with their colour scale."""

from __future__ import annotations

import itertools

import pytest

from tests.app.conftest import build_app_dataset, start_on

pytest.importorskip("fiftyone")
from streamlit.testing.v1 import AppTest

from tests.app.test_pages import _checkpoint, _record_model

_names = itertools.count()


@pytest.fixture
def analysis(tmp_path) -> AppTest:
    """The Sample analysis page on a fresh dataset whose model is a tiny checkpoint."""
    import fiftyone as fo

    name = f"app-test-analysis-{next(_names)}"
    build_app_dataset(tmp_path / "images", name)
    _record_model(name, _checkpoint(tmp_path / "tiny.pt"))
    at = start_on(name)
    at.switch_page("pages/sample_analysis.py").run()
    assert not at.exception, at.exception
    yield at
    fo.delete_dataset(name)


def _captions(at: AppTest) -> list[str]:
    return list(at.selectbox(key="analysis_box").options)  # as shown: formatted


def _pick(at: AppTest, caption: str) -> None:
    """Choose the box shown as ``caption`` (the picker's values are row positions)."""
    at.selectbox(key="analysis_box").set_value(_captions(at).index(caption)).run()


def test_box_picker_names_source_class_confidence_and_place(analysis):
    captions = _captions(analysis)
    assert captions[0] == "label · cup · at (20, 30)-(120, 110) · wrong_class 0.95"
    assert "prediction 0.90 · book · at (20, 30)-(120, 110)" in captions
    assert "label · cup · at (180, 120)-(260, 200)" in captions
    assert not any("nan" in c for c in captions)
    assert len(set(captions)) == len(captions)


def test_explained_class_follows_the_chosen_box(analysis):
    at = analysis
    assert at.selectbox(key="analysis_class").value == "book"  # the flagged box's suggestion
    _pick(at, "label · cup · at (180, 120)-(260, 200)")
    assert at.selectbox(key="analysis_class").value == "cup"  # not the previous box's book
    at.selectbox(key="analysis_class").set_value("person").run()  # a choice for this box holds
    assert at.selectbox(key="analysis_class").value == "person"
    _pick(at, "prediction 0.90 · book · at (20, 30)-(120, 110)")
    assert at.selectbox(key="analysis_class").value == "book"


def test_layers_in_network_order_and_a_colour_scale(analysis):
    at = analysis
    layers = at.multiselect(key="analysis_layers")
    picked = [layers.options[-1], layers.options[0]]  # clicked deepest first
    layers.set_value(picked).run()
    assert at.multiselect(key="analysis_layers").value == picked[::-1]
    assert not at.warning  # no "default value also set via Session State" warning
    at.button(key="analysis_compute").click().run()
    assert not at.exception and not at.error
    captions = [c for img in at.get("image") for c in img.captions]
    shown = [c for c in captions if c.startswith("layer ")]
    assert shown == [f"layer {picked[1]}", f"layer {picked[0]}"]
    assert any("Colour scale" in c.value for c in at.caption)
    assert len(at.get("image")) == 2 + len(shown)  # the sample, the colour bar, the maps
