"""Leak benchmark: resized, re-compressed train copies planted into val are found again."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.leaks import plant_copies, score_planted


def test_score_counts_found_and_false_pairs():
    pairs = pd.DataFrame({"sample_a": ["c1", "v9", "c2", "t1"], "sample_b": ["s1", "t3", "s9",
                                                                             "t2"],
                          "leak": [True, True, True, False]})
    assert score_planted(pairs, [("c1", "s1"), ("c2", "s2")]) == (1, 2)
    assert score_planted(pairs.iloc[:0], [("c1", "s1")]) == (0, 0)


def test_plant_copies_resizes_and_refuses_too_many(tmp_path):
    from PIL import Image

    world = tmp_path / "world"
    (world / "images" / "train").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (100, 50), (i * 40, 0, 0)).save(world / "images" / "train" / f"{i}.jpg")
    planted = plant_copies(world, tmp_path / "out", 2, scale=0.5)
    assert len(planted) == 2 and len({s for _, s in planted}) == 2
    for copy, _ in planted:
        with Image.open(copy) as img:
            assert img.size == (50, 25)
    with pytest.raises(ValueError, match="cannot copy 4"):
        plant_copies(world, tmp_path / "out", 4)


@pytest.mark.slow
def test_small_leak_benchmark_finds_every_copy():
    pytest.importorskip("ultralytics")
    from benchmarks import run_bench

    result = run_bench("leaks", size="small")
    assert result.found == len(result.planted) == 4  # 150 images, 4 copies
    assert result.false_pairs <= 2
    assert result.brain is not None and 0 <= result.brain[0] <= 4  # the peer's reading ran
    assert "FiftyOne Brain compute_leaky_splits" in result.table()
