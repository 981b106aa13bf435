"""A small scored FiftyOne dataset, built by hand, for the page and browser tests.

It carries every field the pages read (see docs/ARCHITECTURE.md, dataset schema) with known
values: sample ``k`` of ``N_SAMPLES`` has one wrongly-classed book whose flagged score decreases
with ``k``, so the triage queue order is known in advance.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

N_SAMPLES = 24
CLASSES = ("book", "cup", "person")
APP_DATASET = "app-test-scored"
APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")  # the app the pages run in
IMG_W, IMG_H = 320, 240


def _detection(fo, box, label, *, confidence=None, scores=None, suggested=None):
    """A FiftyOne detection from an absolute xyxy box."""
    x1, y1, x2, y2 = box
    det = fo.Detection(label=label, bounding_box=[x1 / IMG_W, y1 / IMG_H, (x2 - x1) / IMG_W,
                                                  (y2 - y1) / IMG_H], confidence=confidence)
    det["iscrowd"] = False
    for issue, value in (scores or {}).items():
        det[f"{issue}_score"] = value
    if suggested:
        det["suggested_label"] = suggested
    return det


def _sample(fo, k: int, folder: Path, rng: np.random.Generator):
    """Sample ``k``: a book labelled 'cup' (wrong class, score 0.95 - 0.02 k) and a true cup."""
    path = folder / f"img_{k:03d}.png"
    image = Image.new("RGB", (IMG_W, IMG_H), (235, 235, 225))
    pen = ImageDraw.Draw(image)
    book, cup = (20 + k, 30, 120 + k, 110), (180, 120, 260, 200)
    pen.rectangle(book, fill=(150, 60, 40))
    pen.ellipse(cup, fill=(40, 90, 170))
    image.save(path)
    wrong = 0.95 - 0.02 * k
    gt = [_detection(fo, book, "cup", scores={"wrong_class": wrong, "bad_box": 0.1,
                                              "spurious": 0.05}, suggested="book"),
          _detection(fo, cup, "cup", scores={"wrong_class": 0.02, "bad_box": 0.05,
                                             "spurious": 0.01})]
    pred = [_detection(fo, book, "book", confidence=0.9, scores={"missing": 0.0}),
            _detection(fo, cup, "cup", confidence=0.8, scores={"missing": 0.0})]
    if k % 4 == 0:  # an unlabelled person the model sees: a "missing" issue
        pred.append(_detection(fo, (130, 20, 170, 100), "person", confidence=0.7,
                               scores={"missing": 0.7}))
    flagged = ["wrong_class"] + (["missing"] if k % 4 == 0 else [])
    xy = rng.normal(size=2) + (3.0 if k % 2 else -3.0)
    return fo.Sample(
        filepath=str(path), split="train" if k % 3 else "val", tags=["train" if k % 3 else "val"],
        metadata=fo.ImageMetadata(width=IMG_W, height=IMG_H),
        ground_truth=fo.Detections(detections=gt), predictions=fo.Detections(detections=pred),
        loss=1.0 + 0.1 * k, loss_box=0.5, loss_cls=0.3 + 0.1 * k, loss_dfl=0.2, n_objects=2,
        median_box_area=0.1 + 0.005 * k, occlusion_mean_iou=0.0,
        neighbour_loss_ratio=0.8 + 0.05 * k,
        class_counts={"cup": 2}, cluster=k % 2, proj_pca=[float(xy[0]), float(xy[1])],
        proj_umap=[float(xy[1]), float(xy[0])], wrong_class_score=wrong, bad_box_score=0.1,
        missing_score=0.7 if k % 4 == 0 else 0.0, spurious_score=0.05, group_box_score=np.nan,
        partial_labels_score=0.0, mistakenness=wrong, flagged=flagged,
    )


def build_app_dataset(folder: Path, name: str = APP_DATASET, *, seed: int = 0):
    """Create (replacing) the persistent scored dataset ``name`` with images under ``folder``."""
    import fiftyone as fo

    folder.mkdir(parents=True, exist_ok=True)
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name, persistent=True)
    rng = np.random.default_rng(seed)
    ds.add_samples([_sample(fo, k, folder, rng) for k in range(N_SAMPLES)], progress=False)
    ds.info = {"audit": {"class_names": list(CLASSES), "scored_at": dt.datetime(
        2026, 1, 1, tzinfo=dt.UTC).isoformat(), "insights": []}}
    ds.save()
    return ds


@pytest.fixture(scope="session")
def app_dataset(tmp_path_factory) -> str:
    """Name of the scored test dataset (built once per session)."""
    build_app_dataset(tmp_path_factory.mktemp("app-images"))
    return APP_DATASET


def start_on(name: str):
    """The app (Streamlit's ``AppTest``), run once with dataset ``name`` picked on the Start
    page."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120).run()
    at.selectbox(key="start_dataset").set_value(name).run()
    return at
