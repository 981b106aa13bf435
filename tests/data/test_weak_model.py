"""A deliberately weak (untrained) model: scoring says so plainly, and still flags boxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.coco_world import write_coco_world

NAME = "weak-model-test"
SEEDS = {"train": [0, 1, 2, 3, 10, 12], "val": [4, 5, 6, 7, 8, 9, 11, 13]}  # 24 val labels


@pytest.fixture(scope="module")
def weak_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> str:
    """A 14-image world ingested with the tiny untrained checkpoint (not scored yet)."""
    import fiftyone as fo

    from audit.data.ingest import ingest

    world = write_coco_world(tmp_path_factory.mktemp("weak") / "w", SEEDS)
    ingest(NAME, images=world / "images", train_json=world / "train.json",
           val_json=world / "val.json", model=tiny_checkpoint, imgsz=320, progress=False)
    yield NAME
    fo.load_dataset(NAME).delete()


def test_scoring_a_weak_model_warns_and_still_flags(weak_dataset, capsys) -> None:
    import fiftyone as fo

    from audit.__main__ import main
    from audit.data import views

    assert main(["score", "--name", weak_dataset, "--projection", "pca", "--clusters", "2"]) == 0
    err = capsys.readouterr().err
    ds = fo.load_dataset(weak_dataset)
    stored = ds.info["audit"]["competence"]
    assert stored["split"] == "val" and stored["overall"]["n_gt"] == 3 * len(SEEDS["val"])
    assert stored["overall"]["verdict"] == "weak"
    assert stored["warnings"][0].startswith("The model is weak on this data")
    for sentence in stored["warnings"]:  # every sentence reaches the command line
        assert f"warning: {sentence}" in err
    read = views.model_competence(ds)
    assert read["warnings"] == stored["warnings"] and read["split"] == "val"
    assert set(read["classes"].index) <= {"ball", "crate", "book"}
    assert read["classes"]["n_gt"].sum() == stored["overall"]["n_gt"]
    # the warning does not silence the audit: boxes are still flagged for review (as triage
    # reads them)
    boxes = [views.sample_boxes(ds, sid) for sid in ds.values("id")]
    assert sum(int(b["flagged_issue"].notna().sum()) for b in boxes) >= 1
    assert any(ds.values("flagged"))
