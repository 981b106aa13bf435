"""Per-image generalisation gap (audit.generalisation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.generalisation import gap_by_cluster, neighbour_loss_ratio


def _two_kinds(val_loss: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two tight groups in 2-D, 20 train images each (losses 1 and 3), and one val image per
    group: the first with ``val_loss``, the second like its group (3)."""
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 0.01, (20, 2)), rng.normal(5, 0.01, (20, 2)),
                        [[0.0, 0.0], [5.0, 5.0]]])
    loss = np.concatenate([np.full(20, 1.0), np.full(20, 3.0), [val_loss, 3.0]])
    split = np.array(["train"] * 40 + ["val"] * 2)
    return z, loss, split


def test_direction_of_worse_a_val_image_is_read_against_its_own_kind() -> None:
    z, loss, split = _two_kinds(val_loss=3.0)
    ratio = neighbour_loss_ratio(z, loss, split, k=5)
    # a val loss of 3 is the dataset's typical train loss, but three times its look-alikes'
    assert ratio[40] == pytest.approx(3.0)
    assert ratio[41] == pytest.approx(1.0)
    assert np.allclose(ratio[:40], 1.0)  # train images are read against other train images
    fitted = neighbour_loss_ratio(*_two_kinds(val_loss=1.0), k=5)
    worse = neighbour_loss_ratio(*_two_kinds(val_loss=6.0), k=5)
    assert fitted[40] < ratio[40] < worse[40]


def test_a_train_image_is_not_its_own_neighbour() -> None:
    z = np.array([[0.0], [0.1], [0.2], [10.0]])
    loss = np.array([8.0, 1.0, 1.0, 50.0])
    ratio = neighbour_loss_ratio(z, loss, ["train"] * 4, k=2)
    assert ratio[0] == pytest.approx(8.0)  # against rows 1 and 2, not itself
    assert ratio[3] == pytest.approx(50.0)  # against rows 1 and 2 (log-median of 1 and 1)


def test_losses_that_cannot_be_read_give_nan_and_are_no_reference() -> None:
    z = np.array([[0.0], [0.1], [0.2], [0.3], [0.4]])
    loss = np.array([1.0, np.nan, 0.0, 2.0, 4.0])
    split = ["train", "train", "train", "train", "val"]
    ratio = neighbour_loss_ratio(z, loss, split, k=1)
    assert np.isnan(ratio[1]) and np.isnan(ratio[2])
    assert ratio[4] == pytest.approx(2.0)  # nearest usable train image is row 3 (loss 2)
    assert ratio[3] == pytest.approx(2.0)  # row 3's nearest usable train image is row 0


@pytest.mark.parametrize("split", [[], ["val", "val"], ["train", "val"]])
def test_fewer_than_two_train_references_give_all_nan(split) -> None:
    n = len(split)
    ratio = neighbour_loss_ratio(np.zeros((n, 3)), np.ones(n), split)
    assert ratio.shape == (n,) and np.isnan(ratio).all()


def test_reference_cap_subsamples_train_reproducibly() -> None:
    rng = np.random.default_rng(1)
    z, loss = rng.normal(size=(300, 4)), rng.uniform(1, 2, 300)
    split = np.where(np.arange(300) < 250, "train", "val")
    a = neighbour_loss_ratio(z, loss, split, max_reference=50, seed=3)
    b = neighbour_loss_ratio(z, loss, split, max_reference=50, seed=3)
    assert np.array_equal(a, b) and np.isfinite(a).all()
    full = neighbour_loss_ratio(z, loss, split)
    assert not np.allclose(a, full)


def test_misaligned_or_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="must align"):
        neighbour_loss_ratio(np.zeros((3, 2)), np.ones(2), ["train"] * 3)
    with pytest.raises(ValueError, match="k must be"):
        neighbour_loss_ratio(np.zeros((3, 2)), np.ones(3), ["train"] * 3, k=0)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.floats(0.01, 100), st.integers(0, 10_000))
def test_ratio_does_not_depend_on_the_loss_scale(n: int, scale: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    z, loss = rng.normal(size=(n, 3)), rng.uniform(0.1, 5, n)
    split = np.where(rng.random(n) < 0.7, "train", "val")
    a = neighbour_loss_ratio(z, loss, split, k=3)
    b = neighbour_loss_ratio(z, loss * scale, split, k=3)
    assert np.allclose(a, b, equal_nan=True)
    assert (a[np.isfinite(a)] > 0).all()


def test_gap_by_cluster_orders_clusters_by_their_val_median() -> None:
    frame = pd.DataFrame({"cluster": [0, 0, 1, 1, 1, 2], "split": ["train", "val", "train",
                                                                   "val", "val", "train"],
                          "neighbour_loss_ratio": [1.0, 1.1, 0.9, 2.0, np.nan, 1.0]})
    out = gap_by_cluster(frame)
    assert out[["cluster", "split"]].values.tolist() == [
        ["1", "train"], ["1", "val"], ["0", "train"], ["0", "val"], ["2", "train"]]
    assert out.loc[1, "median_ratio"] == 2.0 and out.loc[1, "images"] == 1  # NaN left out


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"cluster": [0], "split": ["val"]}),
    pd.DataFrame({"cluster": [0], "split": ["val"], "neighbour_loss_ratio": [np.nan]}),
])
def test_gap_by_cluster_without_ratios_is_empty(frame) -> None:
    out = gap_by_cluster(frame)
    assert out.empty and "median_ratio" in out.columns
