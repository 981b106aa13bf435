"""Concurrent-resume benchmark: its table and summary, and one real race of two processes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks.concurrent_ingest import N_IMAGES, race_once, summary


def test_summary_counts_repetitions_with_a_duplicate_or_a_failure() -> None:
    table = pd.DataFrame({"duplicates": [0, 12, 0], "exit_codes": ["0 0", "0 0", "0 2"]})
    assert summary(table) == (f"3 repetitions of two concurrent resumes ({N_IMAGES} images "
                              "each): 1 with a duplicate sample (12 duplicates in all), 1 with "
                              "a failed process")


@pytest.mark.slow
def test_two_resume_processes_store_each_image_once(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    from audit.world.generate import generate_world
    from benchmarks.ingest_speed import _checkpoint

    world = tmp_path / "world"
    generate_world(world, n_images=N_IMAGES, progress=False)
    checkpoint, _ = _checkpoint(tmp_path)
    row = race_once(world, checkpoint)
    assert row["exit_codes"] == "0 0", row["error"]
    assert (row["samples"], row["distinct"], row["duplicates"]) == (N_IMAGES, N_IMAGES, 0)
    assert 0 < row["stored_before"] < N_IMAGES
