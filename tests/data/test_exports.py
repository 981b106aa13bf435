"""audit.data.exports: what the exports hold and how they land on disk.

Crowd boxes stay out of YOLO txt (ultralytics' own COCO converter skips them) and the summary
says so; files and folders get the modes the user's umask gives, not a temporary file's 0600;
the YOLO export prints its one line and nothing of FiftyOne's; ``--out x.csv`` / ``--out x.json``
is the file itself.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.__main__ import main

fo = pytest.importorskip("fiftyone")

N_SAMPLES, N_BOXES, N_CROWD = 4, 3, 2  # build_review_dataset: 3 boxes per sample


@pytest.fixture
def ds(tmp_path: Path) -> Iterator[object]:
    """Four samples (PNG files), three gt boxes each, the first box of two samples a crowd box."""
    from benchmarks.review_load import build_review_dataset

    ds = build_review_dataset(f"exports-{uuid.uuid4().hex[:8]}", N_SAMPLES,
                              image_dir=tmp_path / "images")
    for sample in ds.iter_samples(autosave=True):
        if sample.filepath.endswith(("00000.png", "00001.png")):
            sample.ground_truth.detections[0].iscrowd = True
    yield ds
    ds.delete()


def _label_lines(folder: Path) -> list[str]:
    """Every line of every YOLO label file under ``folder``."""
    return [ln for txt in sorted(folder.glob("labels/*/*.txt"))
            for ln in txt.read_text().splitlines() if ln.strip()]


def test_yolo_leaves_crowd_boxes_out(ds, tmp_path: Path) -> None:
    from audit.data.exports import export

    folder = export(ds, "yolo", tmp_path / "out")
    assert len(_label_lines(folder)) == N_SAMPLES * N_BOXES - N_CROWD
    coco = export(ds, "coco", tmp_path / "out")  # COCO has a crowd flag: they stay there
    assert coco.read_text().count('"iscrowd": 1') == N_CROWD


def test_yolo_command_prints_one_line_saying_what_it_left_out(ds, tmp_path: Path,
                                                             capfd: pytest.CaptureFixture) -> None:
    capfd.readouterr()
    code = main(["export", "--name", ds.name, "--format", "yolo", "--out", str(tmp_path)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert err == "" and "already exists" not in out
    [line] = out.splitlines()
    assert line == (f"{tmp_path / f'{ds.name}-yolo'}: {N_SAMPLES} images, "
                    f"{N_SAMPLES * N_BOXES - N_CROWD} boxes as YOLO txt; {N_CROWD} crowd box(es) "
                    "(iscrowd=1) left out, as ultralytics' COCO converter does: YOLO txt has no "
                    "crowd flag")


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"),
                         [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_exports_get_the_modes_the_umask_gives(ds, tmp_path: Path, umask: int, file_mode: int,
                                               dir_mode: int) -> None:
    from audit.data.exports import export

    old = os.umask(umask)
    try:
        written = {fmt: export(ds, fmt, tmp_path / "out") for fmt in ("coco", "yolo",
                                                                      "relabel-csv")}
    finally:
        os.umask(old)
    mode = {fmt: path.stat().st_mode & 0o777 for fmt, path in written.items()}
    assert mode == {"coco": file_mode, "yolo": dir_mode, "relabel-csv": file_mode}
    assert (written["yolo"] / "dataset.yaml").stat().st_mode & 0o777 == file_mode


def test_out_ending_in_the_format_suffix_is_the_file(ds, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from audit.data.exports import export

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["export", "--name", ds.name, "--format", "relabel-csv",
                 "--out", "relabel.csv"]) == 0
    assert capsys.readouterr().out.startswith("relabel.csv: ")
    assert (tmp_path / "relabel.csv").is_file()
    assert (tmp_path / "relabel.csv").read_text().startswith("sample_id,filepath,split,issue")
    assert export(ds, "coco", tmp_path / "sub" / "Labels.JSON") == tmp_path / "sub" / "Labels.JSON"
    assert (tmp_path / "sub" / "Labels.JSON").is_file()
    (tmp_path / "old.csv").mkdir()  # an existing folder stays a folder to write into
    assert export(ds, "relabel-csv", tmp_path / "old.csv") == \
        tmp_path / "old.csv" / f"{ds.name}-relabel.csv"
    assert export(ds, "yolo", tmp_path / "y.json").parent == tmp_path / "y.json"  # a folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "images", "old.csv", "relabel.csv", "sub", "y.json"]


def test_yolo_export_again_keeps_a_users_files_and_refuses(ds, tmp_path: Path) -> None:
    from audit.data.exports import export

    folder = export(ds, "yolo", tmp_path / "out")
    (folder / "labels" / "train.cache").write_bytes(b"ultralytics' label cache")
    assert export(ds, "yolo", tmp_path / "out") == folder  # an export's own files: replaced
    assert not (folder / "labels" / "train.cache").exists()
    kept = folder / "runs" / "x" / "best.pt"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"weights")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError) as err:
        export(ds, "yolo", tmp_path / "out")
    assert str(err.value) == (f"{folder} holds 1 file(s) the yolo export did not write "
                              "(runs/x/best.pt); the export replaces that folder as a whole: "
                              "move them out of it, or export with another --out")
    assert kept.read_bytes() == b"weights"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    kept.unlink()
    assert export(ds, "yolo", tmp_path / "out") == folder  # what is left is the export's own
    assert not (folder / "runs").exists() and len(_label_lines(folder)) > 0
