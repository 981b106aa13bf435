"""A scoring run is committed as a whole or marked incomplete; datasets a split or a box short of
the usual score whole (issue 17, cases 9 and 21).

A run killed or failed mid-write leaves the dataset marked ``incomplete``: the relabel CSV, the
flagged view and a re-flag refuse it, naming the dataset and the command that fixes it, and the
next ``score`` runs every audit again. A val-only, a one-image and a zero-box dataset score
without FiftyOne's "Cannot infer ... type" halfway through the write.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import pytest

from tests.data.coco_world import dump, load, write_coco_world

pytest.importorskip("fiftyone")


def _ingested(root: Path, checkpoint: Path, splits: dict[str, list[int]], *,
              boxes: bool = True) -> str:
    """Ingest a small world under a fresh name; ``boxes=False`` drops every annotation."""
    from audit.data.ingest import ingest

    world = write_coco_world(root, splits)
    if not boxes:
        for split in splits:
            data = load(world / f"{split}.json")
            data["annotations"] = []
            dump(world / f"{split}.json", data)
    name = f"partial-{uuid.uuid4().hex[:8]}"
    ingest(name, images=world / "images", model=checkpoint, imgsz=320, progress=False,
           **{f"{split}_json": world / f"{split}.json" for split in splits})
    return name


@pytest.mark.parametrize(("splits", "boxes"), [
    ({"val": [4, 5, 7]}, True),  # val only: no train image to compare a val image with
    ({"train": [0]}, True),  # one image
    ({"train": [0, 1, 2], "val": [4]}, False),  # no box at all
], ids=["val-only", "one-image", "zero-box"])
def test_a_small_dataset_scores_whole(splits: dict[str, list[int]], boxes: bool,
                                      tmp_path: Path, tiny_checkpoint: Path) -> None:
    from audit.data import store
    from audit.data.scoring import score_dataset

    name = _ingested(tmp_path / "w", tiny_checkpoint, splits, boxes=boxes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no val split, too few labels: said, not tested here
            score_dataset(name, projections=("pca",), progress=False)
        ds = store.load_dataset(name)
        assert store.score_state(ds) == "scored"
        schema = ds.get_field_schema()
        for field in ("flagged", "cluster", "mistakenness_score", "neighbour_loss_ratio"):
            assert field in schema, field
        assert len(ds.exists("flagged")) == len(ds)
        if "train" not in splits:  # no train image: the local gap does not apply anywhere
            assert set(ds.values("neighbour_loss_ratio")) == {None}
    finally:
        store.load_dataset(name).delete()


@pytest.fixture
def half_scored(tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    """A scored dataset whose re-score failed after the sample fields were written."""
    from audit.data import store, store_write
    from audit.data.scoring import score_dataset

    name = _ingested(tmp_path / "w", tiny_checkpoint, {"train": [0, 1, 2, 3], "val": [4, 5]})
    score_dataset(name, projections=("pca",), n_clusters=2, progress=False)

    def killed(*_args, **_kwargs):
        raise RuntimeError("killed mid-write")

    with monkeypatch.context() as patch:
        patch.setattr(store_write, "_write_boxes", killed)
        with pytest.raises(RuntimeError, match="killed mid-write"):
            score_dataset(name, projections=("pca",), n_clusters=3, progress=False)
    yield name
    store.load_dataset(name).delete()


def test_a_scoring_cut_short_is_marked_and_readers_refuse_it(half_scored: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture
                                                             ) -> None:
    from audit.__main__ import main
    from audit.config import ScoringConfig
    from audit.data import store
    from audit.data.exports import export, save_flagged_view
    from audit.data.scoring import reflag_dataset

    ds = store.load_dataset(half_scored)
    assert store.score_state(ds) == "incomplete"
    assert store.dataset_summary(ds)["scored_at"] is None
    assert "did not finish" in store.dataset_summary(ds)["score_incomplete"]
    info_before = dict(ds.info)
    for refused in (lambda: export(half_scored, "relabel-csv", tmp_path / "out"),
                    lambda: save_flagged_view(half_scored),
                    lambda: reflag_dataset(half_scored, ScoringConfig(wrong_class_flag=0.3))):
        with pytest.raises(ValueError, match="did not finish") as err:
            refused()
        assert repr(half_scored) in str(err.value)
        assert f"python -m audit score --name {half_scored}" in str(err.value)
    assert main(["export", "--name", half_scored, "--format", "relabel-csv",
                 "--out", str(tmp_path / "out")]) == 2
    assert "did not finish" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    ds.reload()
    assert ds.info == info_before  # the refusals changed nothing stored


def test_the_next_score_runs_every_audit_and_commits(half_scored: str) -> None:
    from audit.config import ScoringConfig
    from audit.data import store
    from audit.data.scoring import score_dataset

    # a flag-only change would re-flag a finished scoring; a half-written one is scored again
    result = score_dataset(half_scored, config=ScoringConfig(wrong_class_flag=0.3,
                                                             projections=("pca",), n_clusters=3),
                           progress=False)
    assert not hasattr(result, "per_issue")  # an AuditResult, not a ReflagResult
    ds = store.load_dataset(half_scored)
    assert store.score_state(ds) == "scored" and ds.info["audit"]["scored_at"]
    assert store.INCOMPLETE_KEY not in ds.info["audit"]
    assert set(ds.values("cluster")) == {0, 1, 2}
