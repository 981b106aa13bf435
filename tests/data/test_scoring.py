"""Scoring an ingested dataset: what ``score_dataset`` writes back, and that re-scoring works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.coco_world import write_coco_world

NAME = "scoring-test"
SEEDS = {"train": [0, 1, 2, 3, 6, 8, 10, 12], "val": [4, 5, 7, 9]}


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """A 12-image world ingested with the tiny checkpoint and scored once (PCA only, k = 2)."""
    import fiftyone as fo

    from audit.data.ingest import ingest
    from audit.data.scoring import score_dataset

    world = write_coco_world(tmp_path_factory.mktemp("scoring") / "w", SEEDS)
    ingest(NAME, images=world / "images", train_json=world / "train.json",
           val_json=world / "val.json", model=tiny_checkpoint, imgsz=320, progress=False)
    steps: list[tuple[float, str]] = []
    result = score_dataset(NAME, projections=("pca",), n_clusters=2, progress=False,
                           progress_callback=lambda f, m: steps.append((f, m)))
    yield fo.load_dataset(NAME), result, steps
    fo.load_dataset(NAME).delete()


def test_sample_fields_are_written_for_every_sample(scored) -> None:
    ds, result, _ = scored
    n = len(ds)
    for field in ("cluster", "mistakenness_score", "wrong_class_score", "proj_pca", "flagged"):
        assert len(ds.exists(field)) == n, field
    ids, clusters = ds.values(["id", "cluster"])
    assert set(clusters) == {0, 1}
    expected = result.samples["cluster"].reindex(ids).to_numpy()
    np.testing.assert_array_equal(clusters, expected)
    scores = np.array(ds.values("mistakenness_score"), dtype=float)
    assert np.nanmin(scores) >= 0 and np.nanmax(scores) <= 1


def test_box_scores_land_on_the_right_source(scored) -> None:
    ds, result, _ = scored
    gt_ids = [i for row in ds.values("ground_truth.detections.id") for i in row]
    wrong = [v for row in ds.values("ground_truth.detections.wrong_class_score") for v in row]
    expected = result.boxes.set_index("box_id").loc[gt_ids, "wrong_class_score"].to_numpy(float)
    np.testing.assert_allclose(np.array(wrong, dtype=float), expected, equal_nan=True)
    missing = [v for row in ds.values("predictions.detections.missing_score") for v in row]
    assert missing and all(v is None or 0 <= v <= 1 for v in missing)
    schema = ds.get_field_schema(flat=True)
    assert "ground_truth.detections.missing_score" not in schema  # does not apply to labels
    assert "predictions.detections.wrong_class_score" not in schema


def test_info_views_and_progress(scored) -> None:
    ds, _, steps = scored
    info = ds.info["audit"]
    assert info["scored_at"] and isinstance(info["insights"], list)
    assert {"mistakenness_s", "clusters_s", "read_s", "write_s"} <= set(info["timings"])
    assert "flagged" in ds.list_saved_views()
    fractions = [f for f, _ in steps]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_rescoring_replaces_the_scores(scored) -> None:
    from audit.data.scoring import score_dataset

    ds, _, _ = scored
    before = ds.info["audit"]["scored_at"]
    result = score_dataset(NAME, projections=("pca",), n_clusters=3, progress=False)
    ds.reload()
    assert set(ds.values("cluster")) == set(result.samples["cluster"]) == {0, 1, 2}
    assert ds.info["audit"]["scored_at"] >= before


def test_saved_views_list_the_worst_first(scored) -> None:
    from audit import constants as C

    ds, _, _ = scored
    views = set(ds.list_saved_views())
    for name, field in [("flagged", "mistakenness_score"),
                        *((v, f"{v.removeprefix('flagged-')}_score") for v in views
                          if v.startswith("flagged-") and v != "flagged-test")]:
        scores = np.array(ds.load_saved_view(name).values(field), dtype=float)
        assert len(scores) and np.all(np.diff(scores[np.isfinite(scores)]) <= 0), name
    assert "generalisation-gap" in views
    gap = ds.load_saved_view("generalisation-gap")
    ratio = np.array(gap.values("neighbour_loss_ratio"), dtype=float)
    assert set(gap.values("split")) <= {"val"} and np.all(ratio >= C.OVERFIT_RATIO)
    assert np.all(np.diff(ratio) <= 0)
    everywhere = np.array(ds.values("neighbour_loss_ratio"), dtype=float)
    split = np.array(ds.values("split"))
    assert len(gap) == int(np.sum((split == "val") & (everywhere >= C.OVERFIT_RATIO))) > 0


def test_flagged_view_lists_the_most_mistaken_first(scored) -> None:
    from audit.data.exports import save_flagged_view

    ds, _, _ = scored
    view = ds.load_saved_view(save_flagged_view(ds, "flagged-test"))
    scores = np.array(view.values("mistakenness_score"), dtype=float)
    assert len(view) and all(len(f) for f in view.values("flagged"))
    assert np.all(np.diff(scores[np.isfinite(scores)]) <= 0)


def test_ingest_stores_background_probes_and_scoring_calibrates_on_them(scored) -> None:
    from audit.boxes import iou_matrix
    from audit.data import store

    ds, result, _ = scored
    probes, feats = store.probes_frame(ds)
    assert len(probes) >= len(ds)  # up to two per image; these images have room for both
    assert feats is not None and np.isfinite(feats).all()
    boxes, box_feats = store.boxes_frame(ds)
    assert feats.shape[1] == box_feats.shape[1]  # the same feature space as the boxes
    gt = boxes[boxes["source"] == "gt"]
    for sid, part in probes.groupby("sample_id"):
        labels = gt[gt["sample_id"] == sid][["x1", "y1", "x2", "y2"]].to_numpy(float)
        xy = part[["x1", "y1", "x2", "y2"]].to_numpy(float)
        if len(labels):
            assert (iou_matrix(xy, labels) < 0.1).all(), sid  # on background, not on a label
    table = result.calibration.table
    assert set(table["issue"]) >= {"spurious", "bad_box", "missing"}
    assert (table["n_decoys"] > 0).any()
    stored = ds.info["audit"]["scoring_config"]
    assert stored["prior_error_rate"] == result.config.prior_error_rate
