"""audit.correlations: metadata effect sizes per cluster and loss-vs-metadata curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.correlations import (
    curve_insights,
    effect_sizes,
    loss_curve,
    metadata_columns,
    metadata_insights,
)
from tests.builders import samples_frame


def _metadata_frame(seed: int = 0, n_per: int = 30, occluded_cluster: int | None = 2):
    """Three clusters alike in everything but occlusion, which is high in one of them (if any)."""
    rng = np.random.default_rng(seed)
    n = 3 * n_per
    labels = np.repeat(np.arange(3), n_per)
    occlusion = rng.uniform(0.0, 0.1, n)
    if occluded_cluster is not None:
        occlusion[labels == occluded_cluster] += 0.5
    samples = samples_frame(
        [f"s{i}" for i in range(n)],
        split=np.where(rng.random(n) < 0.5, "train", "val"),
        loss=rng.lognormal(0, 0.3, n),
        n_objects=rng.integers(1, 8, n),
        median_box_area=rng.uniform(0.01, 0.1, n),
        occlusion_mean_iou=occlusion,
        count_car=rng.integers(0, 4, n),
    )
    return samples, labels


def _curve_frame(seed: int = 0, n: int = 120, rho_sign: int = -1):
    """Loss that rises as median_box_area falls (``rho_sign=-1``); n_objects unrelated."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(0.001, 0.2, n)
    loss = (0.05 / area) ** (-rho_sign) * rng.lognormal(0, 0.2, n)
    return samples_frame(
        [f"s{i}" for i in range(n)],
        split=np.where(np.arange(n) % 2 == 0, "train", "val"),
        loss=loss,
        median_box_area=area,
        n_objects=rng.integers(1, 8, n),
    )


# --- metadata columns and effect sizes ----------------------------------------------------------


def test_metadata_columns_are_numeric_metadata_then_counts():
    samples = samples_frame(["a"], count_dog=[1], count_car=[2], occlusion_max_ios=[0.1],
                            n_objects=[3], count_text=["x"], other=[1.0])
    assert metadata_columns(samples) == ["n_objects", "occlusion_max_ios", "count_car",
                                         "count_dog"]
    assert metadata_columns(samples_frame([])) == []


def test_effect_sizes_worked_example():
    samples = samples_frame(["a", "b", "c", "d", "e"], n_objects=[1, 3, 5, 7, 9],
                            crowd_fraction=[0.0, np.nan, 0.5, 0.5, 0.5])
    eff = effect_sizes(samples, [1, 1, 0, 0, 0], 1)
    # in: 1, 3 (mean 2, var 2); out: 5, 7, 9 (mean 7, var 4); pooled sd sqrt((2 + 8) / 3)
    assert eff.loc["n_objects", "mean_in"] == 2.0 and eff.loc["n_objects", "mean_out"] == 7.0
    assert eff.loc["n_objects", "d"] == pytest.approx(-5 / np.sqrt(10 / 3))
    # one finite value inside and no spread: no effect size
    assert np.isnan(eff.loc["crowd_fraction", "d"])


def test_effect_sizes_rejects_misaligned_labels():
    with pytest.raises(ValueError, match=r"labels: expected shape \(2,\), got \(3,\)"):
        effect_sizes(samples_frame(["a", "b"]), [0, 1, 1], 0)


# --- metadata insights --------------------------------------------------------------------------


def test_metadata_insight_names_the_column_that_differs():
    samples, labels = _metadata_frame()
    (ins,) = metadata_insights(samples, labels, [2])
    assert ins.kind == "metadata" and ins.cluster == 2
    assert "Cluster 2 differs" in ins.sentence
    assert "more occlusion (mean IoU between boxes)" in ins.sentence
    assert "objects per image" not in ins.sentence  # n_objects does not differ
    (effect,) = ins.stats["effect_sizes"]
    assert effect["column"] == "occlusion_mean_iou" and effect["d"] > 3
    (bar,) = ins.evidence["data"]  # the plot shows d, comparable across columns' scales
    assert ins.evidence["y"] == "cohens_d" and bar["cohens_d"] == pytest.approx(effect["d"])
    assert bar["mean in cluster 2"] > bar["mean in the rest"]
    assert ins.severity == 1.0
    assert set(ins.sample_ids) == set(samples.index[labels == 2])
    json.dumps(ins.to_dict())


def test_metadata_insight_says_less_when_the_cluster_has_less():
    samples, labels = _metadata_frame()
    samples["occlusion_mean_iou"] = 0.6 - samples["occlusion_mean_iou"]
    (ins,) = metadata_insights(samples, labels, [2])
    assert "less occlusion" in ins.sentence and ins.stats["effect_sizes"][0]["d"] < 0


@pytest.mark.parametrize("clusters", [[], [0], [1], np.array([0, 1, 2, 2])])
def test_alike_clusters_give_no_metadata_insight(clusters):
    samples, labels = _metadata_frame(occluded_cluster=None)
    assert metadata_insights(samples, labels, clusters) == []


def test_metadata_insights_only_for_the_clusters_asked_about():
    samples, labels = _metadata_frame()
    assert metadata_insights(samples, labels, []) == []
    found = metadata_insights(samples, labels, np.array([2, 0, 2]))
    assert [i.cluster for i in found] == [0, 2]  # 0 has less occlusion than the rest


def test_metadata_insights_on_empty_frame():
    assert metadata_insights(samples_frame([]), np.zeros(0), [0]) == []


# --- loss curves --------------------------------------------------------------------------------


def test_loss_curve_bins_per_split():
    samples = _curve_frame(n=40)
    curve = loss_curve(samples, "median_box_area", bins=4)
    assert list(curve.columns) == ["split", "bin", "median_box_area", "median_loss", "n"]
    assert sorted(curve["split"].unique()) == ["train", "val"]
    assert curve.groupby("split")["n"].sum().tolist() == [20, 20]
    assert curve.groupby("split").size().tolist() == [4, 4]
    for _, part in curve.groupby("split"):  # bins in order of the column
        assert np.all(np.diff(part["median_box_area"].to_numpy()) > 0)



def test_loss_curve_puts_equal_values_in_one_bin():
    counts = [0] * 12 + [1] * 4 + [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    samples = samples_frame([f"s{i}" for i in range(len(counts))], median_box_area=counts,
                            loss=np.arange(len(counts), dtype=float))
    curve = loss_curve(samples.assign(split="val"), "median_box_area", bins=5)
    x = curve["median_box_area"].to_numpy()
    assert np.all(np.diff(x) > 0)  # no two points at the same x
    assert curve["n"].iloc[0] >= 12 and curve["n"].sum() == len(counts)  # every 0 in bin 0
    few = loss_curve(samples.assign(split="val", median_box_area=np.array(counts) % 3),
                     "median_box_area", bins=5)
    assert few["median_box_area"].tolist() == [0, 1, 2]  # a bin per value

@pytest.mark.parametrize(
    ("samples", "expected_rows"),
    [
        (samples_frame([], median_box_area=[]), 0),
        (samples_frame(["a", "b"], median_box_area=[np.nan, np.nan]), 0),
        (samples_frame(["a", "b", "c"], median_box_area=[0.1, 0.1, 0.1]), 0),  # no spread
        (samples_frame(["a", "b", "c"], median_box_area=[0.1, 0.2, 0.3]), 3),
    ],
)
def test_loss_curve_degenerate_input(samples, expected_rows):
    curve = loss_curve(samples, "median_box_area")
    assert len(curve) == expected_rows
    assert list(curve.columns) == ["split", "bin", "median_box_area", "median_loss", "n"]


def test_loss_curve_rejects_a_missing_column():
    with pytest.raises(ValueError, match=r"samples: missing columns \['occlusion_max_ios'\]"):
        loss_curve(samples_frame(["a"]), "occlusion_max_ios")


# --- curve insights -----------------------------------------------------------------------------


def test_loss_rising_as_boxes_shrink_gives_a_curve_insight_with_negative_rho():
    samples = _curve_frame()
    (ins,) = curve_insights(samples)
    assert ins.kind == "curve" and ins.title == "Loss vs median box area"
    assert ins.stats["rho"] < -0.3 and ins.stats["split"] == "val" and ins.stats["n"] == 60
    assert ins.sentence.startswith("Loss rises with smaller median box area")
    assert "Small objects are the weak spot" in ins.sentence
    assert ins.severity == pytest.approx(abs(ins.stats["rho"]))
    # the smallest boxes first
    areas = samples.loc[list(ins.sample_ids), "median_box_area"].to_numpy()
    assert np.all(np.diff(areas) >= 0)
    assert {row["split"] for row in ins.evidence["data"]} == {"train", "val"}
    json.dumps(ins.to_dict())


def test_loss_rising_with_a_class_count_names_the_class():
    rng = np.random.default_rng(1)
    n = 80
    people = rng.integers(0, 10, n)
    samples = samples_frame([f"s{i}" for i in range(n)], split="val",
                            loss=(1 + people) * rng.lognormal(0, 0.2, n), count_person=people,
                            median_box_area=rng.uniform(0.01, 0.1, n))
    (ins,) = curve_insights(samples)
    assert ins.label == "person" and ins.stats["rho"] > 0.3
    assert "more person objects per image" in ins.sentence and "Crowded" in ins.sentence


def test_a_trend_on_train_only_is_reported_on_train_with_vals_rho():
    """Val shows no trend (a few large-box val images fail for another reason); train does: the
    card is measured on train and quotes val's rho."""
    rng = np.random.default_rng(3)
    n_train, n_val = 200, 60
    area = rng.uniform(0.001, 0.2, n_train + n_val)
    loss = (0.05 / area) * rng.lognormal(0, 0.2, n_train + n_val)
    loss[n_train:] = rng.permutation(loss[n_train:])  # val: loss unrelated to area
    samples = samples_frame([f"s{i}" for i in range(n_train + n_val)],
                            split=["train"] * n_train + ["val"] * n_val, loss=loss,
                            median_box_area=area)
    (ins,) = curve_insights(samples)
    assert ins.stats["split"] == "train" and ins.stats["n"] == n_train
    assert ins.stats["rho"] < -0.3 and abs(ins.stats["val_rho"]) < 0.3
    assert f"on train images (n = {n_train}," in ins.sentence
    assert f"on val rho = {ins.stats['val_rho']:+.2f} (n = {n_val})" in ins.sentence


def test_val_trend_is_preferred_to_a_stronger_train_trend():
    samples = _curve_frame(n=200)
    train = (samples["split"] == "train").to_numpy()
    sharper = samples["loss"].where(~train, (0.05 / samples["median_box_area"]) ** 2)
    (ins,) = curve_insights(samples.assign(loss=sharper))
    assert ins.stats["split"] == "val" and ins.stats["val_rho"] is None
    assert "on val rho" not in ins.sentence


def test_loss_rising_with_fewer_objects_of_a_class_is_not_called_crowded():
    rng = np.random.default_rng(2)
    n = 80
    rings = rng.integers(0, 10, n)
    samples = samples_frame([f"s{i}" for i in range(n)], split="val",
                            loss=(10 - rings) * rng.lognormal(0, 0.2, n), count_ring=rings)
    (ins,) = curve_insights(samples)
    assert ins.stats["rho"] < -0.3 and "fewer ring objects per image" in ins.sentence
    assert "Crowded" not in ins.sentence
    assert "Images with few ring objects are the weak spot" in ins.sentence


def test_small_val_split_measures_on_all_samples():
    samples = _curve_frame(n=60)  # 30 val: at the limit
    assert curve_insights(samples)[0].stats["split"] == "val"
    assert curve_insights(samples, min_samples=31)[0].stats["split"] == "all"


@pytest.mark.parametrize(
    "samples",
    [
        samples_frame([], median_box_area=[]),
        samples_frame(["a", "b", "c"], median_box_area=[0.1, 0.2, 0.3], loss=[3.0, 2.0, 1.0]),
        samples_frame([f"s{i}" for i in range(50)], median_box_area=np.linspace(0.01, 0.2, 50),
                      loss=1.0),  # flat loss
        samples_frame([f"s{i}" for i in range(50)], loss=np.linspace(1, 2, 50)),  # no metadata
    ],
)
def test_degenerate_frames_give_no_curve_insight(samples):
    assert curve_insights(samples) == []


def test_unrelated_metadata_gives_no_curve_insight():
    rng = np.random.default_rng(5)
    n = 200
    samples = samples_frame([f"s{i}" for i in range(n)], split="val",
                            loss=rng.lognormal(0, 0.3, n), median_box_area=rng.uniform(0, 1, n),
                            n_objects=rng.integers(1, 9, n))
    assert curve_insights(samples) == []


def test_curve_insights_rejects_missing_columns():
    with pytest.raises(ValueError, match=r"samples: missing columns \['loss'\]"):
        curve_insights(pd.DataFrame({"split": ["val"]}))
