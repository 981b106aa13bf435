"""Two ingests of one dataset at once: every image is stored once, and neither fails.

Each race is forced, not hoped for: a barrier holds both ingests at the point where they have
read what is stored (or whether the dataset exists) until both have read it, so both then
write what they believe is missing. ``python -m audit bench concurrent-ingest`` runs the same
race with two processes, 20 times.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fiftyone as fo
import pytest
from bson import ObjectId

from audit.data import store
from audit.data.ingest import ingest
from tests.data.coco_world import write_coco_world

IMGSZ = 320
N_IMAGES = 6  # write_coco_world: train 4, val 2
REPEATS = 3  # forced races per test


class Stop(Exception):
    """Raised by a progress callback: ends an ingest after its first batch, as a kill would."""


def _kw(world: Path, checkpoint: Path) -> dict[str, Any]:
    return {"images": world / "images", "train_json": world / "train.json",
            "val_json": world / "val.json", "model": checkpoint, "imgsz": IMGSZ, "batch": 2,
            "progress": False}


def _together(wrapped: Callable[..., Any], match: Callable[..., bool]) -> Callable[..., Any]:
    """``wrapped``, but the first call of each of two racing (not main) threads that ``match``
    waits for the other's."""
    barrier, seen = threading.Barrier(2, timeout=60), set()

    def call(*args: Any, **kwargs: Any) -> Any:
        me = threading.get_ident()
        racing = threading.current_thread() is not threading.main_thread()
        if racing and match(*args, **kwargs) and me not in seen:
            seen.add(me)
            barrier.wait()
        return wrapped(*args, **kwargs)
    return call


def _race(target: Callable[[], Any]) -> list[BaseException]:
    """Run ``target`` in two threads at once; the exceptions they raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test, with the other thread's
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def _check_once_each(name: str) -> None:
    ds = fo.load_dataset(name)
    paths = ds.values("filepath")
    assert len(paths) == N_IMAGES and len(set(paths)) == N_IMAGES, sorted(paths)
    assert store.audit_info(ds)["complete"] is True


@pytest.mark.parametrize("repeat", range(REPEATS))
def test_two_resumes_at_once_store_each_image_once(repeat: int, tmp_path: Path,
                                                   tiny_checkpoint: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    world = write_coco_world(tmp_path / "w")
    name = f"race-resume-{repeat}-{uuid.uuid4().hex[:8]}"

    def stop(fraction: float, message: str) -> None:
        raise Stop(message)
    with pytest.raises(Stop):  # an interrupted ingest: 2 of 6 images stored
        ingest(name, **_kw(world, tiny_checkpoint), progress_callback=stop)
    assert len(fo.load_dataset(name)) == 2
    monkeypatch.setattr(store, "stored_filepaths",
                        _together(store.stored_filepaths, lambda ds: ds.name == name))
    try:
        assert _race(lambda: ingest(name, **_kw(world, tiny_checkpoint))) == []
        _check_once_each(name)
    finally:
        fo.load_dataset(name).delete()


@pytest.mark.parametrize("repeat", range(REPEATS))
def test_two_fresh_ingests_of_one_name_at_once_both_succeed(repeat: int, tmp_path: Path,
                                                            tiny_checkpoint: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    world = write_coco_world(tmp_path / "w")
    name = f"race-fresh-{repeat}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(fo, "dataset_exists",
                        _together(fo.dataset_exists, lambda n, *a, **k: n == name))
    try:
        assert _race(lambda: ingest(name, **_kw(world, tiny_checkpoint))) == []
        _check_once_each(name)
        assert not [n for n in fo.list_datasets() if n.startswith(f"{name}.")]  # no drafts left
    finally:
        if fo.dataset_exists(name):
            fo.load_dataset(name).delete()


def test_a_dataset_from_before_the_unique_index_is_converted_or_refused(tmp_path: Path,
                                                                        tiny_checkpoint: Path
                                                                        ) -> None:
    """A dataset made before filepaths were unique: converted on resume; one already holding an
    image twice (the old race's result) is refused, naming the image, and left as it was."""
    world = write_coco_world(tmp_path / "w", {"train": [0, 1]})
    name = f"race-old-{uuid.uuid4().hex[:8]}"
    kw = {**_kw(world, tiny_checkpoint), "val_json": None}
    ds = ingest(name, **kw)
    try:
        coll = ds._sample_collection
        coll.drop_index("filepath_1")
        coll.create_index("filepath")  # as FiftyOne makes it: not unique
        twin = coll.find_one({})
        coll.insert_one({**twin, "_id": ObjectId()})
        with pytest.raises(ValueError) as err:
            ingest(name, **kw)
        assert f"dataset {name!r} holds 1 image(s) more than once ({twin['filepath']} (2x))" \
            in str(err.value) and "ingest again under a new name" in str(err.value)
        assert len(ds) == 3 and not ds.get_index_information()["filepath"].get("unique")
        coll.delete_one({"_id": twin["_id"]})
        ingest(name, **kw)
        assert len(ds) == 2 and ds.get_index_information()["filepath"]["unique"]
    finally:
        fo.load_dataset(name).delete()
