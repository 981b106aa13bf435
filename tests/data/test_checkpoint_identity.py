"""The checkpoint a dataset was ingested with is the one sample analysis loads (issue 17, case 11).

Ingest records the file's digest; a file replaced at the recorded path is refused before it is
unpickled, with a message naming the file, the dataset and what to do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")


def test_a_checkpoint_replaced_since_ingest_is_refused(tmp_path: Path, tiny_checkpoint: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from audit.data import checkpoint

    path = Path(shutil.copy(tiny_checkpoint, tmp_path / "best.pt"))
    sha = checkpoint.file_digest(path)
    monkeypatch.setattr(checkpoint, "_PICKLE_WARNED", True)  # said once per process; not here
    detector = checkpoint.load_ingested_detector(path, sha, dataset="my-data")
    assert detector.path == path

    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    ckpt["train_args"] = {**ckpt["train_args"], "epochs": 1}  # same classes, another file
    torch.save(ckpt, path)
    unpickled: list[Path] = []
    monkeypatch.setattr(checkpoint, "_load_yolo", unpickled.append)
    with pytest.raises(ValueError) as err:
        checkpoint.load_ingested_detector(path, sha, dataset="my-data")
    message = str(err.value)
    for part in (str(path), "changed since dataset 'my-data' was ingested", sha,
                 "Put the original file back", "ingest the dataset again"):
        assert part in message
    assert not unpickled  # refused before the pickle was opened


@pytest.mark.parametrize(("make", "sha", "words"), [
    (lambda p: None, "0123456789abcdef", "is gone"),
    (lambda p: p.write_bytes(b"x"), None, "records no digest"),
], ids=["file-gone", "no-digest"])
def test_a_checkpoint_that_cannot_be_checked_is_refused(tmp_path: Path, make, sha,
                                                        words: str) -> None:
    from audit.data.checkpoint import load_ingested_detector

    path = tmp_path / "best.pt"
    make(path)
    with pytest.raises(ValueError, match=words) as err:
        load_ingested_detector(path, sha, dataset="my-data")
    assert str(path) in str(err.value) and "'my-data'" in str(err.value)
