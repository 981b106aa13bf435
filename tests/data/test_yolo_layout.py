"""The YOLO export's folder: ``images/<split>/<file>`` and ``labels/<split>/<file>.txt``, one
level per split (issue 14 saw ``images/train/train/`` when the images sat in split folders)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

fo = pytest.importorskip("fiftyone")


@pytest.mark.parametrize("split_folders", [False, True])
def test_yolo_export_has_one_folder_per_split(tmp_path: Path, split_folders: bool) -> None:
    from audit.data.exports import export
    from benchmarks.review_load import build_review_dataset

    ds = build_review_dataset(f"yolo-layout-{uuid.uuid4().hex[:8]}", 4,
                              image_dir=tmp_path / "images")
    try:
        if split_folders:  # images kept as images/train/x.png, images/val/y.png
            for sample in ds.iter_samples(autosave=True):
                old = Path(sample.filepath)
                new = old.parent / sample.split / old.name
                new.parent.mkdir(exist_ok=True)
                old.rename(new)
                sample.filepath = str(new)
        folder = export(ds, "yolo", tmp_path / "out")
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                       if p.is_file() or p.is_symlink())
    finally:
        ds.delete()
    assert files == ["dataset.yaml",
                     "images/train/img_00000.png", "images/train/img_00002.png",
                     "images/val/img_00001.png", "images/val/img_00003.png",
                     "labels/train/img_00000.txt", "labels/train/img_00002.txt",
                     "labels/val/img_00001.txt", "labels/val/img_00003.txt"]
