"""audit.metadata: per-sample counts, box areas, occlusion and crowd share from the gt boxes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.metadata import METADATA_COLUMNS, count_column, sample_metadata
from tests.builders import boxes_frame, empty_boxes, gt, pred, random_scene, samples_frame


@pytest.mark.parametrize(
    ("label", "expected"),
    [("car", "count_car"), ("traffic light", "count_traffic light"), ("t-shirt", "count_t-shirt"),
     (3, "count_3"), ("", "count_")],
)
def test_count_column(label, expected):
    assert count_column(label) == expected
    assert expected.removeprefix("count_") == str(label)  # the class comes back out


def test_classes_that_differ_in_punctuation_get_their_own_count_columns():
    boxes = boxes_frame([gt("s0", (0, 0, 10, 10), "traffic light"),
                         gt("s0", (20, 0, 30, 10), "traffic light"),
                         gt("s0", (40, 0, 50, 10), "traffic-light")])
    meta = sample_metadata(boxes, samples_frame(["s0"]),
                           class_names=["traffic light", "traffic-light", "traffic light"])
    counts = [c for c in meta.columns if c.startswith("count_")]
    assert counts == ["count_traffic light", "count_traffic-light"]  # distinct, listed once
    assert meta.loc["s0", "count_traffic light"] == 2
    assert meta.loc["s0", "count_traffic-light"] == 1


def _worked_example() -> tuple[pd.DataFrame, pd.DataFrame]:
    """s0: two overlapping cars and a crowd dog; s1: only a prediction; s2: one lone car."""
    boxes = boxes_frame([
        gt("s0", (0, 0, 64, 48)),  # 1 % of 640 x 480
        gt("s0", (32, 0, 96, 48)),  # overlaps the first by half: IoU 1/3, IoS 1/2
        gt("s0", (300, 300, 428, 396), "dog", iscrowd=True),  # 4 %
        pred("s0", (0, 0, 640, 480), "dog"),  # predictions never count
        pred("s1", (0, 0, 64, 48)),
        gt("s2", (0, 0, 128, 96)),
    ])
    return boxes, samples_frame(["s0", "s1", "s2"])


def test_sample_metadata_worked_example():
    boxes, samples = _worked_example()
    meta = sample_metadata(boxes, samples)
    assert list(meta.index) == ["s0", "s1", "s2"]
    assert list(meta.columns) == [*METADATA_COLUMNS, "count_car", "count_dog"]
    expected = pd.DataFrame(
        {
            "n_objects": [3, 0, 1],
            "median_box_area": [0.01, np.nan, 0.04],
            "min_box_area": [0.01, np.nan, 0.04],
            "occlusion_mean_iou": [(1 / 3 + 1 / 3 + 0) / 3, np.nan, 0.0],
            "occlusion_max_ios": [0.5, np.nan, 0.0],
            "crowd_fraction": [1 / 3, np.nan, 0.0],
            "count_car": [2, 0, 1],
            "count_dog": [1, 0, 0],
        },
        index=samples.index,
    )
    pd.testing.assert_frame_equal(meta, expected, check_dtype=False, check_names=False)
    assert meta["n_objects"].dtype == np.int64 and meta["count_car"].dtype == np.int64


def test_sample_metadata_class_names_fix_the_count_columns():
    boxes, samples = _worked_example()
    meta = sample_metadata(boxes, samples, class_names=["dog", "person", "traffic light"])
    counts = [c for c in meta.columns if c.startswith("count_")]
    assert counts == ["count_dog", "count_person", "count_traffic light"]
    assert meta["count_dog"].tolist() == [1, 0, 0]
    assert meta["count_person"].tolist() == [0, 0, 0]
    assert meta["n_objects"].tolist() == [3, 0, 1]  # cars still count as objects


@pytest.mark.parametrize(
    ("boxes", "samples", "n_objects"),
    [
        (empty_boxes(), samples_frame([]), []),
        (empty_boxes(), samples_frame(["s0", "s1"]), [0, 0]),
        (boxes_frame([pred("s0", (0, 0, 5, 5))]), samples_frame(["s0"]), [0]),
    ],
)
def test_sample_metadata_without_gt_gives_nan_metadata(boxes, samples, n_objects):
    meta = sample_metadata(boxes, samples)
    assert list(meta.columns) == list(METADATA_COLUMNS)
    assert meta.index.equals(samples.index)
    assert meta["n_objects"].tolist() == n_objects
    assert meta[list(METADATA_COLUMNS[1:])].isna().all().all()


@pytest.mark.parametrize(
    ("boxes", "samples", "message"),
    [
        (empty_boxes().drop(columns="label"), samples_frame([]),
         r"boxes: missing columns \['label'\]"),
        (empty_boxes(), samples_frame([]).drop(columns="width"),
         r"samples: missing columns \['width'\]"),
        (boxes_frame([gt("nope", (0, 0, 1, 1))]), samples_frame(["s0"]),
         "boxes: sample_id 'nope' is not in the samples frame"),
        (boxes_frame([gt("s0", (0, 0, 1, 1))]), samples_frame(["s0"], width=0),
         "sample 's0' has a non-positive width or height"),
        (boxes_frame([gt("s0", (0, 0, np.nan, 1))]), samples_frame(["s0"]),
         "box 'b0' has non-finite coordinates"),
        (boxes_frame([gt("s0", (0, 0, 1, 1))]).assign(source="truth"), samples_frame(["s0"]),
         "expected 'gt' or 'pred'"),
        ([[0, 0, 1, 1]], samples_frame(["s0"]), "boxes: expected a pandas DataFrame, got list"),
    ],
)
def test_sample_metadata_rejects_bad_input(boxes, samples, message):
    with pytest.raises(ValueError, match=message):
        sample_metadata(boxes, samples)


def test_sample_metadata_does_not_mutate_its_inputs():
    boxes, samples = _worked_example()
    before = boxes.copy(), samples.copy()
    sample_metadata(boxes, samples)
    pd.testing.assert_frame_equal(boxes, before[0])
    pd.testing.assert_frame_equal(samples, before[1])


def test_more_overlap_means_more_occlusion():
    """Gets worse in the right direction: sliding one box onto another raises both measures."""
    rows = []
    for i, shift in enumerate((60, 40, 20, 0)):
        rows += [gt(f"s{i}", (100, 100, 150, 150)),
                 gt(f"s{i}", (100 + shift, 100, 150 + shift, 150))]
    meta = sample_metadata(boxes_frame(rows), samples_frame([f"s{i}" for i in range(4)]))
    assert np.all(np.diff(meta["occlusion_mean_iou"].to_numpy()) > 0)
    assert np.all(np.diff(meta["occlusion_max_ios"].to_numpy()) > 0)
    assert meta["occlusion_mean_iou"].iloc[-1] == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), order_seed=st.integers(0, 10_000))
def test_sample_metadata_is_invariant_to_box_order(seed, order_seed):
    boxes = random_scene(seed, n_samples=3, per_sample=4)
    samples = samples_frame(["s0", "s1", "s2", "s3"])  # s3 has no boxes
    shuffled = boxes.sample(frac=1.0, random_state=order_seed).reset_index(drop=True)
    pd.testing.assert_frame_equal(sample_metadata(boxes, samples),
                                  sample_metadata(shuffled, samples))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.5, 2.0, 3.0]))
def test_sample_metadata_is_invariant_to_image_scale(seed, scale):
    """Areas are fractions of the image and overlaps are ratios: resizing changes nothing."""
    boxes = random_scene(seed, n_samples=2, per_sample=4)
    samples = samples_frame(["s0", "s1"])
    big = boxes.copy()
    big[["x1", "y1", "x2", "y2"]] *= scale
    big_samples = samples.assign(width=samples["width"] * scale, height=samples["height"] * scale)
    pd.testing.assert_frame_equal(sample_metadata(boxes, samples),
                                  sample_metadata(big, big_samples), atol=1e-9)
