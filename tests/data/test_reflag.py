"""Scoring configs stored with the scores, re-flagging from them, and flags read at view time."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

from audit import issues as I
from audit.config import ScoringConfig
from tests.data.coco_world import write_coco_world

NAME = "reflag-test"
SEEDS = {"train": [0, 1, 2, 3, 6, 8, 10, 12], "val": [4, 5, 7, 9]}
QUICK = {"projections": ("pca",), "n_clusters": 2}  # the run settings every scoring here uses


def _score(**kw):
    """``score_dataset`` on the test dataset, quietly (the untrained model warns)."""
    from audit.data.scoring import score_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return score_dataset(NAME, progress=False, **kw)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """A 12-image world ingested with the tiny checkpoint and scored with the defaults."""
    import fiftyone as fo

    from audit.data.ingest import ingest

    world = write_coco_world(tmp_path_factory.mktemp("reflag") / "w", SEEDS)
    ingest(NAME, images=world / "images", train_json=world / "train.json",
           val_json=world / "val.json", model=tiny_checkpoint, imgsz=320, progress=False)
    result = _score(config=ScoringConfig(**QUICK))
    yield fo.load_dataset(NAME), result
    fo.load_dataset(NAME).delete()


def _scores(ds) -> dict[str, list]:
    """Every stored ``*_score``: sample fields and detection attributes."""
    schema = ds.get_field_schema(flat=True)
    paths = sorted(p for p in schema if p.endswith("_score"))
    return dict(zip(paths, ds.values(paths), strict=True))


# the lowest flag-only thresholds: the defaults are stricter on each of them
LENIENT = ScoringConfig(**QUICK, wrong_class_flag=0.01, bad_box_flag=0.01, spurious_flag=0.01,
                        missing_flag=0.01, partial_labels_flag=0.01, missing_flag_conf=0.0)


def test_the_config_is_stored_with_the_scores(scored):
    from audit.data import store

    ds, result = scored
    ds.reload()
    assert ds.info["audit"]["scoring_config"] == ScoringConfig(**QUICK).to_dict()
    assert store.scoring_config(ds) == result.config == ScoringConfig(**QUICK)


def test_reflag_matches_a_full_rescore_and_keeps_every_score(scored):
    from audit.data import store
    from audit.data.store_flags import ReflagResult

    ds, _ = scored
    assert not isinstance(_score(config=LENIENT, full=True), ReflagResult)
    ds.reload()
    before_flags, before_scores = ds.values("flagged"), _scores(ds)
    strict = ScoringConfig(**QUICK)
    reflagged = _score(config=strict)  # a flag-only change: taken as a re-flag
    assert isinstance(reflagged, ReflagResult)
    ds.reload()
    flags = ds.values("flagged")
    assert flags != before_flags  # the stricter thresholds unflagged something
    assert _scores(ds) == before_scores
    assert store.scoring_config(ds) == strict
    assert reflagged.n_flagged == sum(map(bool, flags))
    views = set(ds.list_saved_views())
    for issue in I.NAMES:
        assert (f"flagged-{issue}" in views) == any(issue in f for f in flags), issue
    full = _score(config=strict, full=True)
    ds.reload()
    assert not isinstance(full, ReflagResult)
    assert ds.values("flagged") == flags
    assert full.samples["flagged"].reindex(ds.values("id")).tolist() == flags


def test_views_and_exports_flag_at_the_stored_thresholds(scored):
    from audit.data import views
    from audit.data.exports import relabel_frame
    from audit.data.scoring import reflag_dataset

    ds, _ = scored

    def flagged_boxes(config: ScoringConfig) -> int:
        """Box rows of the relabel list and flagged boxes of the sample views, after checking
        that each one reaches the stored threshold of its issue."""
        reflag_dataset(NAME, config)
        ds.reload()
        thresholds = config.flag_thresholds()
        rows = relabel_frame(ds)
        rows = rows[rows["box_id"].notna()]
        assert all(s >= thresholds[i] for s, i in zip(rows["score"], rows["issue"], strict=True))
        n_view = 0
        for sample_id in ds.values("id"):
            table = views.sample_boxes(ds, sample_id).dropna(subset=["flagged_issue"])
            assert all(s >= thresholds[i] for s, i in zip(
                table["flag_score"], table["flagged_issue"], strict=True))
            n_view += len(table)
        assert n_view == len(rows)  # the same boxes, by the same rule
        return len(rows)

    at_defaults = flagged_boxes(ScoringConfig(**QUICK))
    lenient = flagged_boxes(ScoringConfig(**QUICK, wrong_class_flag=0.01, bad_box_flag=0.01,
                                          spurious_flag=0.01, missing_flag=0.01,
                                          missing_flag_conf=0.0))
    strict = flagged_boxes(ScoringConfig(**QUICK, wrong_class_flag=1.0, bad_box_flag=1.0,
                                         spurious_flag=1.0, missing_flag=1.0))
    assert strict <= at_defaults < lenient  # the stored thresholds, not the constants
    reflag_dataset(NAME, ScoringConfig(**QUICK))


def test_reflag_refuses_a_score_change_and_an_unscored_dataset(scored):
    import fiftyone as fo

    from audit.data.scoring import reflag_dataset

    with pytest.raises(ValueError, match=r"k change.*re-score instead"):
        reflag_dataset(NAME, ScoringConfig(**QUICK, k=3))
    fresh = fo.Dataset("reflag-test-unscored", persistent=True)
    try:
        with pytest.raises(ValueError, match="not scored yet"):
            reflag_dataset(fresh.name, ScoringConfig())
    finally:
        fresh.delete()


def test_same_config_or_a_score_change_rescores(scored):
    from audit.data.store_flags import ReflagResult

    ds, _ = scored
    before = ds.info["audit"]["scored_at"]
    again = _score(config=ScoringConfig(**QUICK))  # asking again re-scores (code may have changed)
    assert not isinstance(again, ReflagResult)
    changed = _score(config=ScoringConfig(**QUICK, loss_boost=0.0))
    assert not isinstance(changed, ReflagResult) and changed.config.loss_boost == 0.0
    ds.reload()
    assert ds.info["audit"]["scored_at"] >= before
    assert ds.info["audit"]["scoring_config"]["loss_boost"] == 0.0
    np.testing.assert_array_equal(ds.values("cluster"),
                                  changed.samples["cluster"].reindex(ds.values("id")))
    _score(config=ScoringConfig(**QUICK))


def test_cli_reflags_and_shows_the_stored_config(scored, capsys):
    from audit.__main__ import main

    quick = ["--set", "projections=pca", "--set", "n_clusters=2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["score", "--name", NAME, *quick, "--set", "wrong_class_flag=0.9"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"{NAME}: re-flagged from its stored scores in ")
    assert "with config from defaults + --set projections=pca, n_clusters=2, " \
           "wrong_class_flag=0.9;" in out[-1]
    assert main(["config", "--show", "--name", NAME]) == 0
    shown = capsys.readouterr().out
    assert f"scoring settings of dataset {NAME!r}: the settings it was scored with" in shown
    assert ScoringConfig.from_dict(tomllib.loads(shown)) == ScoringConfig(
        **QUICK, wrong_class_flag=0.9)
    _score(config=ScoringConfig(**QUICK))
