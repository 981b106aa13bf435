"""Creating or resuming the ingest's dataset so that two ingests at once cannot break it.

Two guarantees, each kept by a unique index of MongoDB rather than by a check before a write:

- A dataset of the auditor never exists without its ``info["audit"]`` settings. It is created
  under a private temporary name (not persistent, so FiftyOne removes it if the process dies
  there), given its settings and its indexes, and then renamed to its name, name and settings in
  one write. FiftyOne's unique index on dataset names decides between two ingests creating the
  same name at once: the loser drops its temporary dataset and resumes the winner's.
- Every image is stored once: the dataset's ``filepath`` index is unique, so a sample that a
  concurrent ingest stored first is refused by the database
  (:func:`audit.data.sample_docs.add_sample_docs` then skips it).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import fiftyone as fo
from mongoengine.errors import NotUniqueError
from pymongo.errors import DuplicateKeyError

from audit.data.database import check_database
from audit.data.store import AUDIT_KEY

UNIQUE_KEY = "filepath"  # the resume key of ingest, unique per dataset
DUPLICATES_SHOWN = 3  # duplicated filepaths named in the refusal of an old dataset


@contextlib.contextmanager
def _quiet_index_notice() -> Iterator[None]:
    """Silence FiftyOne's INFO line "Converting existing index ... to unique"."""
    logger = logging.getLogger("fiftyone.core.collections")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _duplicate_filepaths(ds: fo.Dataset) -> list[tuple[str, int]]:
    """``(filepath, count)`` of the filepaths stored more than once, most copies first."""
    pipeline = [{"$group": {"_id": f"${UNIQUE_KEY}", "n": {"$sum": 1}}},
                {"$match": {"n": {"$gt": 1}}}, {"$sort": {"n": -1, "_id": 1}}]
    return [(d["_id"], int(d["n"])) for d in ds._sample_collection.aggregate(pipeline)]


def ensure_unique_filepaths(ds: fo.Dataset) -> None:
    """Make ``ds``'s filepath index unique (a dataset made before it was; idempotent).

    Raises:
        ValueError: ``ds`` already holds an image twice (two ingests ran at once before the index
            existed): names the dataset and the images, says what to do; nothing is changed.
    """
    if ds.get_index_information().get(UNIQUE_KEY, {}).get("unique"):
        return
    dupes = _duplicate_filepaths(ds)
    if dupes:
        shown = ", ".join(f"{p} ({n}x)" for p, n in dupes[:DUPLICATES_SHOWN])
        raise ValueError(
            f"dataset {ds.name!r} holds {len(dupes)} image(s) more than once ({shown}), left by "
            "two ingests that ran at once before this version; ingest again under a new name "
            "(--name), or delete the dataset and ingest it again")
    with _quiet_index_notice():
        ds.create_index(UNIQUE_KEY, unique=True)


def create_or_load(name: str, settings: dict[str, Any]) -> tuple[fo.Dataset, bool]:
    """The dataset ``name``: created with ``info["audit"] = settings`` and a unique filepath
    index, or the existing one (also when a concurrent ingest created it first).

    Returns:
        ``(dataset, created)``: ``created`` is True when this call made it.
    """
    check_database()  # the database FiftyOne's settings choose, not another user's process's
    if fo.dataset_exists(name):
        return fo.load_dataset(name), False
    draft = fo.Dataset(f"{name}.creating-{uuid.uuid4().hex[:12]}", persistent=False)
    try:
        with _quiet_index_notice():
            draft.create_index(UNIQUE_KEY, unique=True)
        draft._doc.info = {AUDIT_KEY: dict(settings)}
        draft._doc.persistent = True
        draft.name = name  # one write of name, settings and persistence: claims the name
    except (ValueError, NotUniqueError, DuplicateKeyError):  # another ingest claimed it first
        with contextlib.suppress(Exception):
            draft.delete()
        if not fo.dataset_exists(name):
            raise
        return fo.load_dataset(name), False
    return draft, True
