"""Calibration: decoys planted in the data, evidence turned into P(label wrong)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from audit import calibration as K
from audit import decoys as D
from audit.boxes import containment
from audit.inconsistency import score_inconsistency
from audit.mistakenness import score_boxes
from tests.builders import boxes_frame, empty_boxes, gt, pred, random_scene, samples_frame


def _world(seed: int = 0, n: int = 60, model_recall: float = 0.95):
    """``n`` images of a few labels each; the model finds ``model_recall`` of them."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        for _ in range(4):
            w, h = rng.uniform(30, 80, 2)
            x, y = rng.uniform(0, 500), rng.uniform(0, 380)
            label = str(rng.choice(["car", "dog"]))
            rows.append(gt(f"s{s}", (x, y, x + w, y + h), label))
            if rng.random() < model_recall:
                rows.append(pred(f"s{s}", (x + 1, y + 1, x + w + 1, y + h), label,
                                 float(rng.uniform(0.6, 0.95))))
        rows.append(pred(f"s{s}", (0, 0, 20, 20), "car", float(rng.uniform(0.01, 0.1))))
    boxes = boxes_frame(rows)
    return boxes, samples_frame([f"s{s}" for s in range(n)])


def test_no_labels_no_decoys():
    world = D.plant_decoys(empty_boxes(), None, samples_frame([]))
    assert world.boxes.empty and world.truth.empty


def test_decoys_are_planted_on_copies_one_per_image():
    boxes, samples = _world()
    world = D.plant_decoys(boxes, None, samples, per_type=40, seed=1)
    assert set(world.truth) == {"spurious", "bad_box", "wrong_class", "missing", "group_box"}
    assert world.truth.index.isin(world.boxes["box_id"]).all()
    assert world.boxes["sample_id"].str.endswith("~decoy").all()
    assert world.samples.index.is_unique and set(world.boxes["sample_id"]) <= set(
        world.samples.index)
    assert len(boxes) == len(_world()[0])  # the input is not touched
    spawned = world.boxes[world.boxes["box_id"].isin(world.truth.index[world.truth == "spurious"])]
    assert ((spawned[["x1", "y1"]] >= 0).all(axis=None)
            and (spawned["x2"] <= 640).all() and (spawned["y2"] <= 480).all())


def test_one_class_plants_no_flip():
    boxes, samples = _world()
    boxes["label"] = "car"
    world = D.plant_decoys(boxes, None, samples, per_type=40)
    assert "wrong_class" not in set(world.truth)


def test_crowd_labels_are_never_decoys():
    boxes, samples = _world(n=10)
    boxes.loc[boxes["source"] == "gt", "iscrowd"] = True
    world = D.plant_decoys(boxes, None, samples, per_type=40)
    assert world.truth.empty


@functools.cache
def _calibrated(model_recall: float, seed: int = 0):
    boxes, samples = _world(seed, n=120, model_recall=model_recall)
    raw, _ = score_boxes(boxes, None, samples)
    raw = raw.join(score_inconsistency(boxes).boxes[["group_box_score"]])
    world = D.plant_decoys(boxes, None, samples, per_type=120, seed=seed)
    dec, _ = score_boxes(world.boxes, world.features, world.samples)
    dec = dec.join(score_inconsistency(world.boxes).boxes[["group_box_score"]])
    return raw, K.calibrate_scores(raw, dec, world.truth, prior=0.02)


def test_a_strong_model_makes_an_unsupported_label_likely_wrong():
    raw, (cal, summary) = _calibrated(model_recall=0.99)
    unsupported = raw["spurious_score"] > 0.8
    assert unsupported.any()
    assert (cal.loc[unsupported, "spurious_score"] > 0.5).mean() > 0.5
    row = summary.table.query("issue == 'spurious'")
    assert (row["auroc"] > 0.8).all(), row


def test_a_weak_model_makes_the_same_evidence_weak():
    _, (strong, strong_summary) = _calibrated(model_recall=0.99)
    raw, (weak, summary) = _calibrated(model_recall=0.5)
    # the planted spurious labels are harder to tell from the model's misses: the summary says so
    auroc = {s: t.query("issue == 'spurious'")["auroc"].mean()
             for s, t in (("strong", strong_summary.table), ("weak", summary.table))}
    assert auroc["weak"] < auroc["strong"], auroc
    unsupported = raw["spurious_score"] > 0.8
    assert unsupported.sum() > 20  # half the labels have no prediction
    # the model's own misses are no longer called spurious
    assert (weak.loc[unsupported, "spurious_score"] < 0.5).mean() > 0.9
    assert weak["spurious_score"].max() < strong["spurious_score"].max()


@pytest.mark.parametrize("recall", [0.99, 0.5])
def test_order_within_an_issue_and_class_is_kept(recall):
    raw, (cal, _) = _calibrated(model_recall=recall)
    for issue in ("spurious", "bad_box", "wrong_class", "missing"):
        for _, part in cal.groupby("label"):
            r = raw.loc[part.index, f"{issue}_score"].to_numpy(float)
            c = part[f"{issue}_score"].to_numpy(float)
            ok = np.isfinite(r)
            if ok.sum() > 2 and np.ptp(r[ok]) > 0:
                # strictly monotone: a higher evidence never gets a lower probability
                order = np.argsort(r[ok], kind="stable")
                assert (np.diff(c[ok][order]) >= -1e-12).all(), issue
                assert spearmanr(r[ok], c[ok]).statistic > 0.99, issue


def test_probabilities_stay_in_range_and_evidence_is_kept():
    raw, (cal, _) = _calibrated(model_recall=0.8)
    for issue in K.CALIBRATED_ISSUES:
        col = cal[f"{issue}_score"].dropna()
        assert ((col >= 0) & (col <= 1)).all()
        pd.testing.assert_series_equal(cal[f"{issue}_evidence"], raw[f"{issue}_score"],
                                       check_names=False)


def test_ties_at_full_evidence_are_broken_by_look_alike_distance():
    raw = pd.DataFrame({"label": "car", "source": "gt", "spurious_score": [1.0, 1.0, 1.0],
                        "knn_distance": [0.2, 0.9, 0.5]}, index=["a", "b", "c"])
    dec = pd.DataFrame({"label": "car", "source": "gt",
                        "spurious_score": np.r_[np.full(40, 0.95), np.full(40, 0.1)]},
                       index=[f"d{i}" for i in range(80)])
    truth = pd.Series("spurious", index=[f"d{i}" for i in range(40)])
    cal, _ = K.calibrate_scores(raw, dec, truth, min_fit=10)
    assert list(cal["spurious_score"].sort_values(ascending=False).index) == ["b", "c", "a"]


def test_the_scene_builder_runs_end_to_end():
    boxes = random_scene(3, n_samples=8)
    samples = samples_frame([f"s{i}" for i in range(8)])
    world = D.plant_decoys(boxes, None, samples, per_type=16)
    dec, _ = score_boxes(world.boxes, None, world.samples)
    raw, _ = score_boxes(boxes, None, samples)
    cal, summary = K.calibrate_scores(raw, dec, world.truth)
    assert set(summary.table["issue"]) <= set(K.CALIBRATED_ISSUES)
    assert cal.index.equals(raw.index)


def test_background_probes_sit_on_background_inside_the_image():
    labels = np.array([[10, 10, 60, 60], [200, 100, 260, 180.0]])
    probes = D.background_probes(labels, 640, 480, k=5, seed="image-a.jpg")
    assert probes.shape == (5, 4)
    assert (probes[:, :2] >= 0).all()
    assert (probes[:, 2] <= 640).all() and (probes[:, 3] <= 480).all()
    assert (containment(labels, probes) <= 0.05).all()  # at most 5 % of a probe on a label
    np.testing.assert_array_equal(probes, D.background_probes(labels, 640, 480, k=5,
                                                              seed="image-a.jpg"))
    assert not np.array_equal(probes, D.background_probes(labels, 640, 480, k=5, seed="b.jpg"))
    assert D.background_probes(np.zeros((0, 4)), 100, 80, k=1, seed=3).shape == (1, 4)


def test_spawn_decoys_go_on_the_probes_with_their_features():
    boxes, samples = _world(n=20)
    feats = np.random.default_rng(0).normal(size=(len(boxes), 8)).astype(np.float32)
    probe_rows = boxes_frame([gt(f"s{s}", (600, 440, 630, 470), "background",
                                 box_id=f"p{s}") for s in range(20)])
    probe_feats = np.full((20, 8), 7.0, np.float32)
    world = D.plant_decoys(boxes, feats, samples, per_type=20, probes=(probe_rows, probe_feats))
    spawned = world.truth.index[world.truth == "spurious"]
    rows = world.boxes.set_index("box_id").loc[spawned]
    assert len(rows) == 20 and (rows["x1"] == 600).all()
    at = world.boxes["box_id"].isin(spawned).to_numpy()
    assert (world.features[at] == 7.0).all()


def test_background_likeness_tells_background_from_an_unusual_object():
    from audit.neighbours import background_likeness, l2_normalise

    rng = np.random.default_rng(0)
    background = l2_normalise(rng.normal([0, 5, 0], 1, (40, 3)))  # probes of 40 images
    on_background = l2_normalise(rng.normal([0, 5, 0], 1, (1, 3)))
    odd_object = l2_normalise(rng.normal([3, 0, 3], 1, (1, 3)))  # unlike labels and background
    far_from_labels = np.array([0.6])  # both look unlike the labelled objects alike
    args = (np.arange(40), far_from_labels)
    bg = background_likeness(on_background, np.array([99]), background, *args, k=5)
    obj = background_likeness(odd_object, np.array([99]), background, *args, k=5)
    assert bg[0] > 0.8 > 0.5 > obj[0]
    # probes of the box's own image never vote: with only those, nothing is known
    alone = background_likeness(on_background, np.array([0]), background[:1], np.array([0]),
                                far_from_labels, k=5)
    assert np.isnan(alone).all()


def test_ties_at_the_cap_are_ordered_by_the_evidence_not_the_rows():
    lr = np.array([3.0, 5.0, 4.0, 4.0, np.nan])
    ev = np.array([0.9, 0.9, 0.8, 0.95, np.nan])
    rank = K._tie_rank(lr, ev, np.zeros(5))
    assert list(np.argsort(rank)) == [4, 0, 2, 3, 1]
    same = K._tie_rank(np.ones(3), np.ones(3), np.zeros(3))
    assert len(set(same)) == 1  # equal evidence: one rank, whatever the row order


def test_a_label_on_background_outranks_an_object_the_model_misses():
    """Both have no prediction; the background label's feature sits among the probes, the
    missed object's among the labelled objects' (a dead tree still looks like a tree more than
    like bare ground). With probes, the calibration puts the background label first."""
    rng = np.random.default_rng(3)
    boxes, samples = _world(model_recall=0.9)
    n = len(boxes)
    feats = np.where((boxes["source"] == "gt").to_numpy()[:, None],
                     rng.normal([5, 0, 0, 0], 0.7, (n, 4)), rng.normal([5, 0, 0, 0], 0.7, (n, 4)))
    probe_rows = [gt(f"s{s}", (560, 400, 600, 440), "car") for s in range(60)]
    probe_frame = boxes_frame(probe_rows).assign(source="probe")
    probe_feats = rng.normal([0, 5, 0, 0], 0.7, (60, 4))
    unsupported = boxes.index[(boxes["source"] == "gt").to_numpy()][:2]
    bg_id, obj_id = boxes.loc[unsupported, "box_id"]
    feats[unsupported[0]] = rng.normal([0, 5, 0, 0], 0.7)  # drawn on background
    keep = ~boxes["box_id"].isin([bg_id, obj_id]) | (boxes["source"] == "gt")
    sids = boxes.loc[unsupported, "sample_id"]
    keep &= ~((boxes["source"] == "pred") & boxes["sample_id"].isin(sids)
              & (boxes["confidence"] > 0.5))  # no prediction supports either label
    boxes, feats = boxes[keep.to_numpy()].reset_index(drop=True), feats[keep.to_numpy()]
    raw, _ = score_boxes(boxes, feats, samples)
    cal, _ = K.calibrated_box_scores(boxes, feats, samples, raw, per_type=120,
                                     probes=(probe_frame, probe_feats))
    assert "background_evidence" in cal
    assert cal.loc[bg_id, "background_evidence"] > cal.loc[obj_id, "background_evidence"]
    assert cal.loc[bg_id, "spurious_score"] > cal.loc[obj_id, "spurious_score"]


def test_a_merge_decoy_is_the_box_around_two_neighbours_of_one_class():
    rows = [gt(f"s{s}", (80 * i, 0, 80 * i + 60, 60), "car") for s in range(12)
            for i in range(4)]
    rows += [pred(r["sample_id"], (r["x1"], r["y1"], r["x2"], r["y2"]), "car", 0.9)
             for r in list(rows)]
    boxes = boxes_frame(rows)
    world = D.plant_decoys(boxes, None, samples_frame([f"s{s}" for s in range(12)]),
                           per_type=24, seed=2)
    merged = world.truth.index[world.truth == "group_box"]
    assert len(merged) > 0
    wb = world.boxes.set_index("box_id")
    for bid in merged:
        box = wb.loc[bid, ["x1", "y1", "x2", "y2"]].to_numpy(float)
        orig = boxes.set_index("box_id").loc[bid.removesuffix("~decoy"),
                                             ["x1", "y1", "x2", "y2"]].to_numpy(float)
        assert box[2] - box[0] == pytest.approx(140)  # two 60 px labels 20 px apart, as one
        assert (box[:2] <= orig[:2]).all() and (box[2:] >= orig[2:]).all()
        sid = wb.loc[bid, "sample_id"]
        copy = world.boxes[(world.boxes["sample_id"] == sid) & (world.boxes["source"] == "gt")]
        kept = copy["box_id"].str.endswith("~decoy")  # not a spawned decoy
        assert kept.sum() <= 3  # the absorbed label is gone from the copy
    # the group-box score of the merged copies: both predictions now lie inside one label
    scores = score_inconsistency(world.boxes).boxes["group_box_score"]
    assert (scores.reindex(merged) > 0.5).all()
