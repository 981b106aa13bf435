"""audit.data.ingest: how images are decoded for the model and how class counts are built.

A 16-bit greyscale PNG must reach the model as ultralytics' own reader (OpenCV) gives it in
training, not clipped to white; class names that differ only in punctuation keep their own
counts.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from audit.data.images import image_size
from audit.data.ingest import batch_metadata, decode_image
from audit.data.inputs import build_record


def _grey16(path: Path, height: int = 48, width: int = 64) -> np.ndarray:
    """Write a 16-bit greyscale PNG spanning most of 0..65535; returns its values."""
    values = (np.arange(height * width).reshape(height, width) * 21 % 65536).astype(np.uint16)
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode == "I;16"  # what PIL makes of it (and what it clipped to white before)
    return values


def test_sixteen_bit_greyscale_decodes_as_ultralytics_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    values = _grey16(path)
    width, height = image_size(path)
    array = decode_image(build_record(path, width, height, "train.json: image id 1", []))
    assert array.shape == (48, 64, 3) and array.dtype == np.uint8
    expected = cv2.imread(str(path))[:, :, ::-1]  # ultralytics' imread: IMREAD_COLOR, 8 bit
    np.testing.assert_array_equal(array, expected)
    np.testing.assert_array_equal(array[:, :, 0], values >> 8)
    assert 100 < array.mean() < 160  # a full-range ramp, not a white image (mean 255)


def test_the_app_shows_the_image_the_model_saw(tmp_path: Path) -> None:
    pytest.importorskip("streamlit")
    from audit.ui.common import load_image

    path = tmp_path / "grey16.png"
    _grey16(path)
    shown = np.asarray(load_image(str(path)))
    width, height = image_size(path)
    np.testing.assert_array_equal(
        shown, decode_image(build_record(path, width, height, "image", [])))
    np.testing.assert_array_equal(shown, cv2.imread(str(path))[:, :, ::-1])


def test_classes_differing_in_punctuation_keep_their_own_counts(tmp_path: Path) -> None:
    rows = [([0, 0, 10, 10], "traffic light", False, 1), ([20, 0, 30, 10], "traffic light",
            False, 2), ([40, 0, 50, 10], "traffic-light", False, 3)]
    record = build_record(tmp_path / "a.png", 100, 50, "train.json: image id 1 (a.png)", rows)
    [(meta, counts)] = batch_metadata([record], ["traffic light", "traffic-light", "book"])
    assert counts == {"traffic light": 2, "traffic-light": 1, "book": 0}
    assert meta["n_objects"] == 3
