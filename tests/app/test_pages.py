"""Every page through ``streamlit.testing.v1.AppTest`` on a small scored dataset."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.app.conftest import APP, CLASSES, N_SAMPLES, build_app_dataset

pytest.importorskip("fiftyone")
from streamlit.testing.v1 import AppTest

_names = itertools.count()


def _open(dataset: str, page: str | None = None, reviewer: str = "tester") -> AppTest:
    """Run the app once, pick ``dataset``, and switch to ``page`` (e.g. "pages/triage.py")."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    at.selectbox(key="start_dataset").set_value(dataset).run()
    at.text_input(key="app_reviewer").set_value(reviewer).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def fresh_dataset(tmp_path) -> str:
    """A new scored dataset for tests that record review decisions."""
    name = f"app-test-fresh-{next(_names)}"
    build_app_dataset(tmp_path / "images", name)
    return name


def test_start_lists_dataset_and_shows_facts(app_dataset):
    at = _open(app_dataset)
    assert app_dataset in at.selectbox(key="start_dataset").options
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Samples"] == str(N_SAMPLES)
    assert metrics["Classes"] == str(len(CLASSES))
    assert any("Scored at 2026-01-01 00:00 (UTC)" in s.value for s in at.success)
    assert not at.button(key="start_build_demo").disabled



def test_start_names_the_most_severe_insights(fresh_dataset):
    import fiftyone as fo

    ds = fo.load_dataset(fresh_dataset)
    info = ds.info
    info["audit"]["insights"] = [
        {"kind": "imbalance", "title": f"Finding {i}", "severity": 1 - i / 10,
         "sentence": f"Sentence {i}.", "cluster": None, "label": None, "sample_ids": [],
         "stats": {}, "evidence": {}} for i in range(5)]
    ds.info = info
    ds.save()
    at = _open(fresh_dataset)
    shown = [m.value for m in at.markdown if m.value.startswith("- **Finding")]
    assert shown == [f"- **Finding {i}**: Sentence {i}." for i in range(3)]

def test_pages_without_dataset_ask_for_one():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.session_state["app_state"].dataset = None
    at.switch_page("pages/triage.py").run()
    assert not at.exception
    assert any("Start" in i.value for i in at.info)


def test_overview_shows_map_and_flag_counts(app_dataset):
    at = _open(app_dataset, "pages/overview.py")
    metrics = {m.label: m.value for m in at.metric}
    assert 0.0 <= float(metrics["mAP50"]) <= 1.0
    assert 0.0 <= float(metrics["mAP50-95"]) <= float(metrics["mAP50"])
    assert metrics["Flagged samples"] == f"{N_SAMPLES} of {N_SAMPLES}"
    assert not at.error


def test_latent_space_widgets(app_dataset):
    at = _open(app_dataset, "pages/latent_space.py")
    assert at.selectbox(key="latent_method").options == ["pca", "umap"]
    at.selectbox(key="latent_method").set_value("umap").run()
    at.selectbox(key="latent_color").set_value("split").run()
    at.selectbox(key="latent_size").set_value("loss").run()
    at.multiselect(key="latent_split").set_value(["val"]).run()
    assert not at.exception
    assert any(f"{N_SAMPLES // 3} points" in c.value for c in at.caption)
    at.toggle(key="latent_outlines").set_value(False).run()
    assert not at.exception


def test_latent_space_selection_shows_gallery(app_dataset):
    at = _open(app_dataset, "pages/latent_space.py")
    at.session_state["latent_chart"] = {"selection": {"latent_brush": {
        "pca_x": [-100.0, 100.0], "pca_y": [-100.0, 0.0]}}}
    at.run()
    assert not at.exception
    header = next(s.value for s in at.subheader if s.value.startswith("Selection"))
    n_selected = int(header.split(":")[1].split()[0])
    assert 0 < n_selected < N_SAMPLES
    assert len(at.get("image")) >= 1


def test_insight_card_hands_off_to_triage(fresh_dataset):
    import fiftyone as fo

    ds = fo.load_dataset(fresh_dataset)
    ids = ds.values("id")[:5]
    info = ds.info
    info["audit"]["insights"] = [{
        "kind": "cluster_imbalance", "title": "Cluster 1 is rare in val", "severity": 0.9,
        "sentence": "Cluster 1 holds 16 train images but 8 val images.", "cluster": 1,
        "label": None, "sample_ids": ids, "stats": {},
        "evidence": {"plot": "train_val_counts", "data": [
            {"cluster": "0", "split": "train", "count": 8},
            {"cluster": "0", "split": "val", "count": 4}]}}]
    ds.info = info
    ds.save()
    at = _open(fresh_dataset, "pages/insights.py")
    assert any("Cluster 1 is rare" in m.value for m in at.markdown)
    at.button(key="insights_triage_0").click().run()
    assert not at.exception
    state = at.session_state["app_state"]
    assert state.triage.sample_ids == tuple(ids)
    assert any("Cluster 1 is rare" in i.value for i in at.info)  # now on the triage page
    assert at.button(key="triage_next") is not None


def test_insights_loss_curve_section(app_dataset):
    at = _open(app_dataset, "pages/insights.py")
    column = at.selectbox(key="insights_curve_column")
    assert column.value == "median_box_area"
    assert "loss" in at.selectbox(key="insights_curve_loss").options
    assert any("Spearman rho" in c.value for c in at.caption)
    column.set_value("n_objects").run()  # does not vary in this dataset
    assert not at.exception
    assert any("does not vary" in i.value for i in at.info)
    at.selectbox(key="insights_curve_column").set_value("median_box_area").run()
    at.selectbox(key="insights_curve_loss").set_value("loss_cls").run()
    assert not at.exception and any("Spearman rho" in c.value for c in at.caption)




def test_insights_curve_opens_on_the_loss_its_card_found(fresh_dataset):
    import fiftyone as fo

    ds = fo.load_dataset(fresh_dataset)
    info = ds.info
    info["audit"]["insights"] = [{
        "kind": "curve", "title": "Box loss vs median box area", "severity": 0.4,
        "sentence": "Box loss rises with smaller median box area.", "cluster": None,
        "label": None, "sample_ids": [], "stats": {},
        "evidence": {"plot": "loss_curve", "column": "median_box_area", "loss": "loss_box",
                     "data": []}}]
    ds.info = info
    ds.save()
    at = _open(fresh_dataset, "pages/insights.py")
    assert at.selectbox(key="insights_curve_column").value == "median_box_area"
    assert at.selectbox(key="insights_curve_loss").value == "loss_box"

def test_insights_generalisation_gap_section_hands_val_images_to_triage(app_dataset):
    at = _open(app_dataset, "pages/insights.py")
    assert any("nearest train images" in c.value for c in at.caption)
    at.number_input(key="insights_gap_limit").set_value(1.0).run()
    button = at.button(key="insights_gap_triage")
    assert not button.disabled
    button.click().run()
    assert not at.exception
    state = at.session_state["app_state"]
    assert state.triage.sample_ids and "look-alikes" in state.triage.source


def test_insights_gap_section_without_ratios_says_so(fresh_dataset):
    import fiftyone as fo

    fo.load_dataset(fresh_dataset).delete_sample_field("neighbour_loss_ratio")
    at = _open(fresh_dataset, "pages/insights.py")
    assert not at.exception
    assert any("No image has a neighbour loss ratio" in i.value for i in at.info)

def _current_boxes(at: AppTest, dataset: str):
    """Boxes of the sample the triage page shows."""
    from audit.data import store, views

    state = at.session_state["app_state"]
    return views.sample_boxes(store.load_dataset(dataset), state.analysis_sample)


def test_triage_queue_order_and_navigation(fresh_dataset):
    import fiftyone as fo

    ds = fo.load_dataset(fresh_dataset)
    by_score = sorted(zip(ds.values("mistakenness"), ds.values("id"), strict=True), reverse=True)
    at = _open(fresh_dataset, "pages/triage.py")
    assert at.session_state["app_state"].analysis_sample == by_score[0][1]
    sample = ds[by_score[0][1]]  # its facts, with the loss against its train look-alikes
    assert any(c.value == f"loss {sample.loss:.2f} · {sample.neighbour_loss_ratio:.1f}x the loss "
               "of its nearest train images"
               for c in at.caption), [c.value for c in at.caption]
    at.button(key="triage_next").click().run()
    assert at.session_state["app_state"].analysis_sample == by_score[1][1]
    at.button(key="triage_prev").click().run()
    assert at.session_state["app_state"].analysis_sample == by_score[0][1]
    at.selectbox(key="triage_issue").set_value("missing").run()
    assert not at.exception
    assert any(f"1 / {N_SAMPLES // 4}**" in m.value for m in at.markdown)
    at.selectbox(key="triage_split").set_value("val").run()
    assert not at.exception


def test_triage_fix_class_then_undo(fresh_dataset):
    at = _open(fresh_dataset, "pages/triage.py")
    assert "Reviewed 0 of" in at.get("progress")[0].proto.text
    flagged = _current_boxes(at, fresh_dataset)
    book = flagged.iloc[0]
    assert (book["flagged_issue"], book["label"]) == ("wrong_class", "cup")
    fix_class = at.selectbox(key=f"triage_fix_class_{book['box_id']}")
    assert fix_class.value == "book"  # the model's suggestion
    at.button(key="triage_fix").click().run()
    assert not at.exception
    assert any("Fixed the class" in s.value for s in at.success)
    after = _current_boxes(at, fresh_dataset).set_index("box_id")
    assert after.loc[book["box_id"], "label"] == "book"
    assert after.loc[book["box_id"], "review_status"] == "fixed"
    assert "Reviewed 1 of" in at.get("progress")[0].proto.text
    at.button(key="triage_undo").click().run()
    assert any("Undid" in s.value for s in at.success)
    assert _current_boxes(at, fresh_dataset).set_index("box_id").loc[book["box_id"],
                                                                        "label"] == "cup"



def test_triage_spurious_box_suggests_deleting_not_another_class(fresh_dataset):
    import fiftyone as fo

    ds = fo.load_dataset(fresh_dataset)
    sample = ds.first()  # its book labelled 'cup' (suggested 'book') becomes a spurious label
    det = sample.ground_truth.detections[0]
    det["wrong_class_score"], det["spurious_score"] = 0.1, 0.99
    sample["flagged"] = ["spurious"]
    sample.save()
    at = _open(fresh_dataset, "pages/triage.py")
    at.selectbox(key="triage_issue").set_value("spurious").run()
    flagged = _current_boxes(at, fresh_dataset)
    box = flagged.iloc[0]
    assert (box["flagged_issue"], box["label"]) == ("spurious", "cup")
    caption = at.radio(key="triage_box").format_func(box["box_id"])
    assert caption.endswith("gt 'cup' → delete?"), caption
    assert at.selectbox(key=f"triage_fix_class_{box['box_id']}").value == "cup"
    assert at.button(key="triage_delete").proto.type == "primary"
    assert at.button(key="triage_fix").proto.type != "primary"

def test_triage_delete_accept_and_relabel(fresh_dataset):
    at = _open(fresh_dataset, "pages/triage.py")
    at.button(key="triage_delete").click().run()
    assert any("Deleted" in s.value for s in at.success)
    boxes = _current_boxes(at, fresh_dataset)
    assert (boxes["source"] == "gt").sum() == 1
    # the first sample also has a possibly missing person: accept it as a label
    person = boxes[(boxes["source"] == "pred") & (boxes["label"] == "person")].iloc[0]
    at.radio(key="triage_box").set_value(person["box_id"]).run()
    at.button(key="triage_accept").click().run()
    assert not at.exception
    boxes = _current_boxes(at, fresh_dataset)
    assert "person" in set(boxes.loc[boxes["source"] == "gt", "label"])
    at.text_input(key=f"triage_note_{at.session_state['app_state'].analysis_sample}").set_value(
        "shelf half cut off").run()
    at.button(key="triage_relabel").click().run()
    assert any("Marked the image" in s.value for s in at.success)
    assert "status: **relabel**" in " ".join(m.value for m in at.markdown)


def test_triage_reports_conflict(fresh_dataset):
    from audit.data import review_store, store
    from audit.reviews import Decision

    at = _open(fresh_dataset, "pages/triage.py")
    sid = at.session_state["app_state"].analysis_sample
    book = _current_boxes(at, fresh_dataset).iloc[0]
    other = Decision(dataset=fresh_dataset, sample_id=sid, box_id=book["box_id"],
                     action="fix_class", new_label="person", reviewer="bob", base_revision=0)
    review_store.record_decision(store.load_dataset(fresh_dataset), other)
    at.button(key="triage_confirm").click().run()  # the page still shows revision 0
    assert not at.exception
    assert any("Conflict" in w.value and "bob" in w.value for w in at.warning)
    assert not at.success
    boxes = _current_boxes(at, fresh_dataset).set_index("box_id")
    assert boxes.loc[book["box_id"], "label"] == "person"  # bob's fix, not overwritten


def test_triage_stale_page_on_another_box_still_lands(fresh_dataset):
    from audit.data import review_store, store
    from audit.reviews import Decision

    at = _open(fresh_dataset, "pages/triage.py")
    sid = at.session_state["app_state"].analysis_sample
    other = Decision(dataset=fresh_dataset, sample_id=sid, action="relabel", reviewer="bob",
                     note="image-level", base_revision=0)
    review_store.record_decision(store.load_dataset(fresh_dataset), other)
    at.button(key="triage_fix").click().run()  # the page still shows revision 0
    assert not at.exception and not at.warning
    assert any("Fixed the class" in s.value and "revision 2" in s.value for s in at.success)
    assert "status: **relabel** (revision 2)" in " ".join(m.value for m in at.markdown)


def _checkpoint(path: Path, *, epochs: int = 0) -> Path:
    """Save a tiny untrained detector (seeded) at ``path``; ``epochs`` only changes the file."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=len(CLASSES), verbose=False).eval()
    model.names = dict(enumerate(CLASSES))
    torch.save({"model": model, "train_args": {"task": "detect", "imgsz": 320,
                                               "epochs": epochs}}, path)
    return path


def _record_model(name: str, checkpoint: Path) -> str:
    """Record ``checkpoint`` (path and digest) as dataset ``name``'s model, as ingest does."""
    import fiftyone as fo

    from audit.data.checkpoint import file_digest

    ds = fo.load_dataset(name)
    info = ds.info
    info["audit"].update(model=str(checkpoint), model_sha=file_digest(checkpoint))
    ds.info = info
    ds.save()
    return info["audit"]["model_sha"]


def test_sample_analysis_heatmaps(fresh_dataset, tmp_path):
    _record_model(fresh_dataset, _checkpoint(tmp_path / "tiny.pt"))
    at = _open(fresh_dataset, "pages/sample_analysis.py")
    assert at.selectbox(key="analysis_class").value == "book"  # the flagged box's suggestion
    layers = at.multiselect(key="analysis_layers")
    layers.set_value(layers.options[:1] + layers.options[-1:]).run()
    at.button(key="analysis_compute").click().run()
    assert not at.exception and not at.error
    captions = [c for img in at.get("image") for c in img.captions]
    assert sum(c.startswith("layer ") for c in captions) == 2


def test_sample_analysis_refuses_a_checkpoint_replaced_since_ingest(fresh_dataset, tmp_path):
    checkpoint = _checkpoint(tmp_path / "tiny.pt")
    sha = _record_model(fresh_dataset, checkpoint)
    _checkpoint(checkpoint, epochs=1)  # another file at the recorded path
    at = _open(fresh_dataset, "pages/sample_analysis.py")
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "changed since dataset" in errors and str(checkpoint) in errors and sha in errors
    assert not any(b.key == "analysis_compute" for b in at.button)  # no model, no heatmaps


def test_export_rejects_a_file_as_folder(app_dataset, tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    at = _open(app_dataset, "pages/export.py")
    at.text_input(key="export_folder").set_value(str(a_file)).run()
    at.button(key="export_coco").click().run()
    assert not at.exception
    assert any("is a file" in e.value for e in at.error)


def test_export_writes_coco(fresh_dataset, tmp_path):
    pytest.importorskip("audit.data.exports")
    at = _open(fresh_dataset, "pages/export.py")
    at.text_input(key="export_folder").set_value(str(tmp_path / "out")).run()
    at.button(key="export_coco").click().run()
    assert not at.exception and not at.error
    written = at.session_state["export_written"]
    assert written[0][0] == "coco" and Path(written[0][1]).exists()


def test_export_saves_a_named_fiftyone_view(fresh_dataset):
    import fiftyone as fo

    at = _open(fresh_dataset, "pages/export.py")
    at.text_input(key="export_view_name").set_value("to-review").run()
    at.button(key="export_view").click().run()
    assert not at.exception and not at.error
    assert ("fiftyone view", "to-review") in at.session_state["export_written"]
    view = fo.load_dataset(fresh_dataset).load_saved_view("to-review")
    assert len(view) and all(view.values("flagged"))
