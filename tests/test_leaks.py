"""Near-duplicates and train / val leaks (audit.leaks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.leaks import (
    PAIR_COLUMNS,
    duplicate_insights,
    find_duplicates,
    robust_fence,
    shallow_block,
)


def _world(n_train: int = 80, n_val: int = 30, copies: int = 5, noise: float = 0.02,
           dims: int = 16, seed: int = 0):
    """Distinct images as Gaussian points; ``copies`` val points are slightly moved copies of
    train points (a resize + JPEG pass moves an embedding a little)."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, dims))
    val = rng.normal(size=(n_val, dims))
    sources = rng.choice(n_train, copies, replace=False)
    val[:copies] = train[sources] + rng.normal(0, noise, (copies, dims))
    vectors = np.vstack([train, val])
    split = ["train"] * n_train + ["val"] * n_val
    ids = [f"t{i}" for i in range(n_train)] + [f"v{i}" for i in range(n_val)]
    truth = {(f"v{k}", f"t{s}") for k, s in enumerate(sources)}
    return vectors, split, ids, truth


@pytest.mark.parametrize(("values", "expected"), [
    ([], np.nan),  # the empty case: no yardstick
    ([1.0, 2.0], np.nan),  # too few values
    ([-np.inf, -np.inf, 0.0], np.nan),  # exact duplicates alone make no spread
    ([1.0, 1.0, 1.0], 1.0),  # no spread: only below every value
    ([0.0, 0.0, 1.0, 2.0], 0.5 - 1.4826 * 1.0),
    ([-50.0, -40.0, 0.0, 1.0, 2.0], 0.0 - 1.4826 * 1.0),  # the low tail widens nothing
])
def test_fence_table(values, expected) -> None:
    got = robust_fence(values, spread=1.0)
    assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected)


def test_fence_falls_as_the_spread_rises() -> None:
    v = np.random.default_rng(1).normal(size=200)
    assert robust_fence(v, spread=1) > robust_fence(v, spread=3)


def _blocks(sizes: tuple[int, ...], n: int = 5, seed: int = 0) -> np.ndarray:
    """Embeddings built as audit.data.model builds them: one unit block per layer, scaled."""
    rng = np.random.default_rng(seed)
    blocks = [np.abs(rng.normal(size=(n, d))) for d in sizes]
    blocks = [b / np.linalg.norm(b, axis=1, keepdims=True) for b in blocks]
    return np.hstack(blocks) / np.sqrt(len(sizes))


@pytest.mark.parametrize("sizes", [(64, 128, 256), (4, 4), (8, 2, 2, 16), (32,)])
def test_shallow_block_finds_the_first_layer(sizes) -> None:
    emb = _blocks(sizes)
    assert shallow_block(emb).shape == (5, sizes[0])
    emb[0, : sizes[0]] = 0.0  # a block of zeros breaks the layout: the whole is kept
    assert shallow_block(emb).shape[1] in (sizes[0], sum(sizes))


def test_shallow_block_keeps_an_unstructured_embedding() -> None:
    emb = np.random.default_rng(0).normal(size=(20, 12))
    assert shallow_block(emb).shape == (20, 12)
    assert shallow_block(np.zeros((0, 12))).shape == (0, 12)


def test_planted_copies_are_found_and_nothing_else() -> None:
    vectors, split, ids, truth = _world()
    pairs, summary = find_duplicates(vectors, split, ids)
    assert list(pairs.columns) == PAIR_COLUMNS
    found = set(zip(pairs["sample_a"], pairs["sample_b"], strict=True))
    assert found == truth  # val image first, its train source second
    assert pairs["leak"].all() and summary.n_leaks == 5 == summary.n_pairs
    assert 0 < summary.threshold < 1
    assert pairs["distance"].is_monotonic_increasing


def test_a_copy_moved_too_far_is_no_longer_a_duplicate() -> None:
    """Gets worse in the right direction: the more a copy is altered, the less it is found."""
    found = []
    for noise in (0.01, 0.3, 3.0):
        vectors, split, ids, truth = _world(noise=noise)
        pairs, _ = find_duplicates(vectors, split, ids)
        found.append(len(truth & set(zip(pairs["sample_a"], pairs["sample_b"], strict=True))))
    assert found[0] == 5 and found[0] >= found[1] >= found[2] and found[2] == 0


def test_no_copy_no_pair() -> None:
    vectors, split, ids, _ = _world(copies=0)
    pairs, summary = find_duplicates(vectors, split, ids)
    assert pairs.empty and summary.n_pairs == 0
    assert duplicate_insights(pairs, summary) == []


def test_duplicates_within_a_split_and_a_triple() -> None:
    vectors, split, ids, _ = _world(copies=0)
    vectors = np.vstack([vectors, vectors[[3, 3]] + 1e-4 * np.arange(1, 3)[:, None]])
    split, ids = [*split, "train", "val"], [*ids, "t_copy", "v_copy"]
    pairs, summary = find_duplicates(vectors, split, ids)
    found = set(zip(pairs["sample_a"], pairs["sample_b"], strict=True))
    assert found == {("v_copy", "t3"), ("v_copy", "t_copy"), ("t3", "t_copy")}
    assert summary.n_leaks == 2 and pairs["leak"].tolist() == [True, True, False]
    kinds = [i.kind for i in duplicate_insights(pairs, summary, n_val=31)]
    assert kinds == ["leak", "duplicate"]


def test_leak_insight_names_both_images_of_each_pair() -> None:
    vectors, split, ids, truth = _world()
    pairs, summary = find_duplicates(vectors, split, ids)
    (leak,) = duplicate_insights(pairs, summary, n_val=30)
    assert leak.title == "5 val images are near-copies of train images"
    assert set(leak.sample_ids) == {i for pair in truth for i in pair}
    shown = {(p["sample_a"], p["sample_b"]) for p in leak.evidence["pairs"]}
    assert shown == truth and leak.evidence["plot"] == "pairs"
    assert 0.5 < leak.severity <= 1.0


def test_rows_with_nan_are_left_out_and_bad_shapes_refused() -> None:
    vectors, split, ids, _ = _world()
    vectors[10] = np.nan
    _, summary = find_duplicates(vectors, split, ids)
    assert summary.n_images == len(ids) - 1
    with pytest.raises(ValueError, match="must align"):
        find_duplicates(vectors, split[:-1], ids)
    empty, s = find_duplicates(np.zeros((2, 3)), ["train", "val"])
    assert empty.empty and np.isnan(s.threshold)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_order_of_images_does_not_matter(seed: int) -> None:
    vectors, split, ids, _ = _world(seed=seed % 50)
    order = np.random.default_rng(seed).permutation(len(ids))
    a, _ = find_duplicates(vectors, split, ids)
    b, _ = find_duplicates(vectors[order], np.asarray(split)[order], np.asarray(ids)[order])
    key = lambda f: set(zip(f["sample_a"], f["sample_b"], strict=True))  # noqa: E731
    assert key(a) == key(b)


def test_search_within_groups_finds_the_copies_of_each_group() -> None:
    vectors, split, ids, truth = _world()
    groups = (vectors[:, 0] > 0).astype(int)  # the copies share their source's group
    pairs, _ = find_duplicates(vectors, split, ids, groups=groups)
    assert set(zip(pairs["sample_a"], pairs["sample_b"], strict=True)) == truth
    moved = groups.copy()
    copy_row = len(ids) - 30  # v0, a copy of a train image
    moved[copy_row] = 1 - moved[copy_row]  # put apart from its source: not searched together
    apart, _ = find_duplicates(vectors, split, ids, groups=moved)
    assert len(apart) == len(truth) - 1
    tiny = np.arange(len(ids))  # every image its own group: nobody to compare with
    alone, s = find_duplicates(vectors, split, ids, groups=tiny)
    assert alone.empty and np.isnan(s.threshold)
