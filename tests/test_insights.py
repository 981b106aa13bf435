"""audit.insights: the Insight record, imbalance, overfitting and low-performance clusters."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit import constants as C
from audit.insights import (
    Insight,
    imbalance_insights,
    low_performance_insights,
    overfit_insights,
)
from tests.builders import samples_frame

CLUSTER_FUNCS = (imbalance_insights, overfit_insights, low_performance_insights)


def _clustered(
    sizes: list[int],
    train_share: list[float],
    train_loss: list[float],
    val_loss: list[float],
    *,
    seed: int = 0,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Samples in clusters with a given train share and median losses (lognormal noise 0.1)."""
    rng = np.random.default_rng(seed)
    split, loss, labels = [], [], []
    for c, n in enumerate(sizes):
        n_train = round(n * train_share[c])
        split += ["train"] * n_train + ["val"] * (n - n_train)
        loss += list(train_loss[c] * rng.lognormal(0, 0.1, n_train))
        loss += list(val_loss[c] * rng.lognormal(0, 0.1, n - n_train))
        labels += [c] * n
    ids = [f"s{i}" for i in range(len(split))]
    return samples_frame(ids, split=split, loss=loss), np.asarray(labels)


def _balanced(seed: int = 0):
    """Four alike clusters: nothing to report."""
    return _clustered([50] * 4, [0.7] * 4, [1.0] * 4, [1.5] * 4, seed=seed)


# --- Insight ------------------------------------------------------------------------------------


def test_insight_round_trips_through_plain_json():
    ins = Insight(kind="imbalance", title="t", sentence="s", cluster=np.int64(3), severity=0.5,
                  sample_ids=[np.str_("a"), "b"],
                  evidence={"plot": "p", "x": np.float64(np.nan), "arr": np.arange(2)},
                  stats={"p": np.float32(0.25), "t": (1, 2)})
    data = ins.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["evidence"] == {"plot": "p", "x": None, "arr": [0, 1]}
    assert data["stats"] == {"p": 0.25, "t": [1, 2]}
    assert ins.cluster == 3 and isinstance(ins.cluster, int) and ins.sample_ids == ("a", "b")
    assert Insight.from_dict(data) == ins


def test_insight_caps_its_sample_ids():
    ins = Insight(kind="curve", title="t", sentence="s",
                  sample_ids=[str(i) for i in range(C.INSIGHT_MAX_SAMPLES + 5)])
    assert len(ins.sample_ids) == C.INSIGHT_MAX_SAMPLES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "weird"}, r"Insight.kind: expected one of \('imbalance'"),
        ({"severity": 1.5}, r"Insight.severity: expected a value in \[0, 1\], got 1.5"),
        ({"severity": -0.1}, r"expected a value in \[0, 1\]"),
    ],
)
def test_insight_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Insight(**{"kind": "overfit", "title": "t", "sentence": "s", **kwargs})


# --- degenerate and bad input -------------------------------------------------------------------


@pytest.mark.parametrize("func", CLUSTER_FUNCS)
def test_empty_samples_give_no_insight_and_a_warning(func):
    with pytest.warns(UserWarning, match="no insight"):
        assert func(samples_frame([]), np.zeros(0, np.int64)) == []


@pytest.mark.parametrize("func", CLUSTER_FUNCS)
def test_one_cluster_gives_no_insight_and_a_warning(func):
    samples, _ = _clustered([60, 60], [0.95, 0.5], [0.3, 1.0], [3.0, 1.0])
    with pytest.warns(UserWarning, match="fewer than two clusters"):
        assert func(samples, np.zeros(len(samples), np.int64)) == []


@pytest.mark.parametrize("func", [imbalance_insights, overfit_insights])
def test_one_split_gives_no_insight_and_a_warning(func):
    samples, labels = _clustered([60, 60], [1.0, 1.0], [0.3, 1.0], [3.0, 1.0])
    with pytest.warns(UserWarning, match="only one split"):
        assert func(samples, labels) == []


@pytest.mark.parametrize("func", [overfit_insights, low_performance_insights])
def test_no_finite_loss_gives_no_insight_and_a_warning(func):
    samples, labels = _clustered([30, 30], [0.5, 0.5], [1.0, 1.0], [1.0, 1.0])
    samples["loss"] = np.nan
    with pytest.warns(UserWarning, match="no finite loss"):
        assert func(samples, labels) == []


@pytest.mark.parametrize("func", CLUSTER_FUNCS)
@pytest.mark.parametrize(
    ("drop", "labels", "message"),
    [
        (None, np.zeros(3), r"labels: expected shape \(4,\), got \(3,\)"),
        ("split", np.zeros(4), r"samples: missing columns \['split'\]"),
        ("loss", np.zeros(4), r"samples: missing columns \['loss'\]"),
    ],
)
def test_cluster_insights_reject_bad_input(func, drop, labels, message):
    samples = samples_frame(["a", "b", "c", "d"])
    if drop:
        samples = samples.drop(columns=drop)
    with pytest.raises(ValueError, match=message):
        func(samples, labels)


@pytest.mark.parametrize("func", CLUSTER_FUNCS)
def test_alike_clusters_give_no_insight(func):
    samples, labels = _balanced()
    assert func(samples, labels) == []


# --- imbalance ----------------------------------------------------------------------------------


def test_train_heavy_cluster_gives_an_imbalance_insight_naming_it():
    samples, labels = _clustered([60] * 5, [0.97, 0.7, 0.7, 0.7, 0.7], [1.0] * 5, [1.5] * 5)
    found = imbalance_insights(samples, labels)
    assert [i.cluster for i in found] == [0]
    (ins,) = found
    assert ins.kind == "imbalance" and ins.title == "Cluster 0: train-heavy"
    assert ins.sentence.startswith("Cluster 0 is train-heavy: 97 % of its 60 images are in train")
    assert 0 < ins.severity <= 1 and ins.stats["p_holm"] < C.ALPHA
    assert set(ins.sample_ids) == set(samples.index[labels == 0])
    assert ins.evidence["n_train"] == 58 and ins.evidence["n_val"] == 2
    json.dumps(ins.to_dict())



def test_train_heavy_card_reads_its_val_images_against_their_train_look_alikes():
    samples, labels = _clustered([60] * 5, [0.9, 0.7, 0.7, 0.7, 0.7], [1.0] * 5, [1.5] * 5)
    assert "train images nearest" not in imbalance_insights(samples, labels)[0].sentence
    val = (samples["split"] == "val").to_numpy()
    ratio = np.where(val & (labels == 0), 2.4, np.where(val, 1.1, 1.0))
    (ins,) = imbalance_insights(samples.assign(neighbour_loss_ratio=ratio), labels)
    assert (f"Those val images lose a median 2.4x the loss of the {C.GAP_NEIGHBOURS} train "
            "images nearest to each in the embedding (1.1x over all val): the model fits images "
            "of this kind in train far better than it generalises to them") in ins.sentence
    assert ins.stats["val_neighbour_loss_ratio"] == pytest.approx(2.4)
    assert ins.stats["dataset_val_neighbour_loss_ratio"] == pytest.approx(1.1)
    ratio = np.where(val, 1.1, 1.0)  # val images like their look-alikes: described, no sign
    (ins,) = imbalance_insights(samples.assign(neighbour_loss_ratio=ratio), labels)
    assert "median 1.1x" in ins.sentence and "overfitting" not in ins.sentence


def test_train_heavy_card_with_one_val_image_speaks_of_one():
    samples, labels = _clustered([60] * 5, [59 / 60, 0.7, 0.7, 0.7, 0.7], [1.0] * 5, [1.5] * 5)
    samples = samples.assign(neighbour_loss_ratio=0.8)
    (ins,) = imbalance_insights(samples, labels)
    assert "Its 1 val image under-measures how the model does" in ins.sentence
    assert (f"That val image loses 0.8x the loss of the {C.GAP_NEIGHBOURS} train images nearest "
            "to it") in ins.sentence


def test_train_heavy_card_without_val_images_says_so():
    samples, labels = _clustered([60] * 5, [1.0, 0.7, 0.7, 0.7, 0.7], [1.0] * 5, [1.5] * 5)
    (ins,) = imbalance_insights(samples.assign(neighbour_loss_ratio=1.0), labels)
    assert "No val image measures how the model does on it" in ins.sentence
    assert "Its 0 val" not in ins.sentence and "lose" not in ins.sentence

def test_val_heavy_cluster_is_named_val_heavy():
    samples, labels = _clustered([60] * 7, [0.2] + [0.7] * 6, [1.0] * 7, [1.5] * 7)
    (ins,) = imbalance_insights(samples, labels)
    assert ins.cluster == 0 and "val-heavy" in ins.title


def test_imbalance_severity_grows_with_the_imbalance():
    sev = []
    for share in (0.9, 0.97, 1.0):
        samples, labels = _clustered([80] * 4, [share, 0.6, 0.6, 0.6], [1.0] * 4, [1.5] * 4)
        (ins,) = [i for i in imbalance_insights(samples, labels) if i.cluster == 0]
        sev.append(ins.severity)
    assert sev == sorted(sev) and sev[0] < sev[-1]


def test_small_clusters_are_not_tested():
    samples, labels = _clustered([4, 60, 60], [1.0, 0.5, 0.5], [1.0] * 3, [1.5] * 3)
    assert imbalance_insights(samples, labels, min_cluster_size=5) == []


# --- overfit ------------------------------------------------------------------------------------


def test_low_train_high_val_cluster_gives_an_overfit_insight():
    samples, labels = _clustered([40] * 4, [0.5] * 4, [0.3, 1.0, 1.0, 1.0], [3.0, 1.5, 1.5, 1.5])
    found = overfit_insights(samples, labels)
    assert [i.cluster for i in found] == [0]
    (ins,) = found
    assert ins.kind == "overfit" and ins.title == "Cluster 0: overfitted"
    assert "looks overfitted" in ins.sentence
    assert ins.stats["relative_ratio"] > C.OVERFIT_RATIO
    assert 0 < ins.severity <= 1
    assert ins.evidence["train"]["median"] < ins.evidence["val"]["median"]
    assert ins.stats["reference"] == "cluster"  # no neighbour ratios: the cluster's train median
    # the cluster's val images come first (highest ratio first), then its train images by loss
    ids = list(ins.sample_ids)
    is_val = (samples.loc[ids, "split"] == "val").to_numpy()
    assert is_val[: is_val.sum()].all()
    for part in (ids[: is_val.sum()], ids[is_val.sum():]):
        assert np.all(np.diff(samples.loc[part, "loss"].to_numpy()) <= 0)


def test_train_heavy_cluster_with_three_val_images_can_be_overfitted():
    """Memorised train images, val images no worse than the rest of val: the gap is the signal.

    Cluster 0 holds 40 train and 3 val images; its val loss equals every other cluster's, so a
    test of its val loss against the rest of val sees nothing, but its train loss is a tenth.
    """
    sizes, shares = [43, 40, 40, 40], [40 / 43, 0.5, 0.5, 0.5]
    samples, labels = _clustered(sizes, shares, [0.15, 1.0, 1.0, 1.0], [1.5] * 4)
    (ins,) = overfit_insights(samples, labels)
    assert ins.cluster == 0 and ins.stats["n_val"] == 3
    assert ins.stats["p_holm"] < C.ALPHA and ins.stats["relative_ratio"] > C.OVERFIT_RATIO
    assert low_performance_insights(samples, labels) == []
    # the same cluster without the gap (train loss like the rest) is not overfitted
    samples, labels = _clustered(sizes, shares, [1.0] * 4, [1.5] * 4)
    assert overfit_insights(samples, labels) == []


def test_overfit_reads_each_val_image_against_its_train_look_alikes():
    """With ``neighbour_loss_ratio`` in the samples, the card reads it, not cluster medians.

    Cluster 0 has train loss 0.5 and val loss 1.5 against 1.0 / 1.5 elsewhere: by cluster medians
    a gap. If each val image's nearest train images lose as much as it does (ratio 1 everywhere),
    the cluster merely mixes kinds of different loss levels: no card. If its val images lose 3x
    their look-alikes against 1.5x elsewhere, the card names the neighbour reference.
    """
    samples, labels = _clustered([40] * 4, [0.5] * 4, [0.5, 1.0, 1.0, 1.0], [1.5] * 4)
    assert [i.cluster for i in overfit_insights(samples, labels)] == [0]
    flat = samples.assign(neighbour_loss_ratio=1.0)
    assert overfit_insights(flat, labels) == []
    train = pd.Series(labels).map({0: 0.5, 1: 1.0, 2: 1.0, 3: 1.0}).to_numpy()
    gap = samples.assign(neighbour_loss_ratio=samples["loss"].to_numpy() / train)
    (ins,) = overfit_insights(gap, labels)
    assert ins.cluster == 0 and ins.stats["reference"] == "neighbours"
    assert f"the {C.GAP_NEIGHBOURS} train images nearest" in ins.sentence
    assert ins.stats["val_ratio"] == pytest.approx(3.0, rel=0.15)
    assert ins.stats["relative_ratio"] >= C.OVERFIT_RATIO
    # val images first by ratio, then train images by loss (their ratios shuffled: not by those)
    is_train = (samples["split"] == "train").to_numpy()
    shuffled = gap["neighbour_loss_ratio"].to_numpy().copy()
    shuffled[is_train] = np.random.default_rng(0).permutation(shuffled[is_train])
    (ins,) = overfit_insights(gap.assign(neighbour_loss_ratio=shuffled), labels)
    ids = list(ins.sample_ids)
    n_val = ins.stats["n_val"]
    assert (samples.loc[ids[:n_val], "split"] == "val").all()
    assert np.all(np.diff(shuffled[samples.index.get_indexer(ids[:n_val])]) <= 0)
    assert np.all(np.diff(samples.loc[ids[n_val:], "loss"].to_numpy()) <= 0)


def test_overfit_ignores_val_images_without_a_ratio():
    """NaN ratios (no usable loss) are left out of the test, not counted as 0 or infinity."""
    samples, labels = _clustered([40] * 4, [0.5] * 4, [0.5, 1.0, 1.0, 1.0], [1.5] * 4)
    train = pd.Series(labels).map({0: 0.5, 1: 1.0, 2: 1.0, 3: 1.0}).to_numpy()
    ratio = samples["loss"].to_numpy() / train
    val0 = np.flatnonzero((labels == 0) & (samples["split"] == "val").to_numpy())
    ratio[val0[:-2]] = np.nan  # cluster 0 keeps 2 val ratios, fewer than min_val = 3
    assert overfit_insights(samples.assign(neighbour_loss_ratio=ratio), labels) == []


def test_high_train_and_val_loss_is_not_overfitting():
    """Hard everywhere (train loss above the dataset's) is low performance, not overfitting."""
    samples, labels = _clustered([40] * 4, [0.5] * 4, [3.0, 1.0, 1.0, 1.0], [4.5, 1.5, 1.5, 1.5])
    assert overfit_insights(samples, labels) == []
    assert [i.cluster for i in low_performance_insights(samples, labels)] == [0]


# --- low performance ----------------------------------------------------------------------------


def test_high_val_loss_cluster_gives_a_low_performance_insight_with_the_worst_class():
    samples, labels = _clustered([40] * 4, [0.5] * 4, [1.0] * 4, [1.5, 1.5, 4.0, 1.5])
    recall = pd.DataFrame({"car": [0.9, 0.9, 0.8, 0.9], "dog": [0.9, 0.8, 0.3, np.nan]},
                          index=pd.Index([0, 1, 2, 3], name="cluster"))
    (ins,) = low_performance_insights(samples, labels, class_recall=recall)
    assert ins.kind == "low_performance" and ins.cluster == 2
    assert "Cluster 2 is a weak spot" in ins.sentence
    assert "Worst class there: dog (val recall 0.30)" in ins.sentence
    assert ins.stats["loss_ratio"] > C.LOW_PERF_RATIO
    assert ins.evidence["recall"] == {"car": 0.8, "dog": 0.3}
    assert ins.stats["loss"] == "loss"
    json.dumps(ins.to_dict())


def test_a_cluster_weak_on_box_loss_alone_is_found_and_named_by_that_loss():
    """Small objects: val box loss 3x the rest's while the class loss is lower, so the total
    stays ordinary. The card names the box loss; DFL is not tested."""
    samples, labels = _clustered([40] * 4, [0.5] * 4, [1.0] * 4, [1.5] * 4)
    rng = np.random.default_rng(1)
    val0 = ((labels == 0) & (samples["split"] == "val").to_numpy())
    box = np.where(val0, 1.5, 0.5) * rng.lognormal(0, 0.1, len(samples))
    dfl = np.where(labels == 1, 5.0, 0.5)
    samples = samples.assign(loss_box=box, loss_cls=np.maximum(samples["loss"] - box, 0.01),
                             loss_dfl=dfl)
    assert [i.cluster for i in low_performance_insights(samples[["split", "loss"]], labels)] == []
    (ins,) = low_performance_insights(samples, labels)
    assert ins.cluster == 0 and ins.stats["loss"] == "loss_box"
    assert "median val box loss" in ins.sentence
    assert ins.evidence["loss"] == "loss_box"


def test_holm_adjusts_step_down_and_keeps_the_order():
    from audit.insight import holm

    p = np.array([0.01, 0.04, 0.03, 0.5])
    adj = holm(p)
    # sorted 0.01 * 4, 0.03 * 3, 0.04 * 2 (raised to the running max), 0.5 * 1
    assert adj.tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert (adj >= p).all()
    assert all(adj[i] <= adj[j] for i in range(4) for j in range(4) if p[i] <= p[j])
    assert holm([0.9, 0.8]).max() <= 1.0 and holm([]).size == 0


def _card(kind: str, cluster: int, **stats) -> Insight:
    return Insight(kind=kind, title=f"{kind} {cluster}", sentence=f"{kind} card.",
                   cluster=cluster, stats=stats)


def _three_clusters(gap_01: float) -> tuple[np.ndarray, np.ndarray]:
    """Clusters 0 and 1 at distance ``gap_01`` on x, cluster 2 at (0, 10); 10 points each."""
    labels = np.repeat([0, 1, 2], 10)
    centres = np.array([[0.0, 0.0], [gap_01, 0.0], [0.0, 10.0]])
    jitter = np.random.default_rng(0).normal(0, 0.01, (30, 2))
    return centres[labels] + jitter, labels


def test_a_train_heavy_and_an_overfit_cluster_that_are_nearest_name_each_other():
    from audit.insights import link_neighbour_clusters

    reduced, labels = _three_clusters(3.0)
    heavy = _card("imbalance", 0, train_share=1.0, dataset_share=0.75)
    over = _card("overfit", 1, val_ratio=2.5)
    other = _card("low_performance", 2)
    out = link_neighbour_clusters([heavy, other, over], reduced, labels)
    assert [i.kind for i in out] == ["imbalance", "low_performance", "overfit"]
    assert "Cluster 1, its nearest cluster in the embedding, looks overfitted" in out[0].sentence
    assert "2.5x" in out[0].sentence and out[0].stats["related_cluster"] == 1
    assert "Cluster 0, its nearest cluster in the embedding, is train-heavy (100 % train)" \
        in out[2].sentence and out[2].stats["related_cluster"] == 0
    assert out[1] == other and out[0].sentence.startswith(heavy.sentence)


def test_clusters_that_are_not_each_others_nearest_are_not_linked():
    from audit.insights import link_neighbour_clusters

    # 0 and 1 far apart (20) and cluster 2 between them on y: each one's nearest is cluster 2
    reduced, labels = _three_clusters(20.0)
    cards = [_card("imbalance", 0, train_share=1.0, dataset_share=0.75),
             _card("overfit", 1, val_ratio=2.5)]
    assert link_neighbour_clusters(cards, reduced, labels) == cards
    # a val-heavy cluster next to an overfitted one is not the train-heavy kind
    reduced, labels = _three_clusters(3.0)
    val_heavy = [_card("imbalance", 0, train_share=0.2, dataset_share=0.75), cards[1]]
    assert link_neighbour_clusters(val_heavy, reduced, labels) == val_heavy
    # one cluster's own two cards stay as they are
    same = [_card("imbalance", 1, train_share=1.0, dataset_share=0.75), cards[1]]
    assert link_neighbour_clusters(same, reduced, labels) == same
