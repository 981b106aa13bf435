"""The demo dataset: the synthetic world, ingested with the committed checkpoint, scored.

``build_demo`` is idempotent: a finished demo (ingested with the current checkpoint and scored) is
returned as is; an interrupted one is resumed; one built with another checkpoint is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fiftyone as fo

from audit import constants as C
from audit.data import store

DEMO_IMGSZ = 320  # the demo checkpoint's training size
DEMO_WORLD_DIR = "demo-world"  # folder under C.AUDIT_HOME holding the generated world
_STAGES = {"world": (0.0, 0.1), "ingest": (0.1, 0.8), "score": (0.8, 1.0)}  # callback ranges

ProgressCallback = Callable[[float, str], None]


def _stage(callback: ProgressCallback | None, stage: str) -> ProgressCallback | None:
    """A callback mapping a stage's [0, 1] onto its share of the whole build."""
    if callback is None:
        return None
    lo, hi = _STAGES[stage]
    return lambda fraction, message: callback(lo + (hi - lo) * float(fraction), message)


def demo_world(*, progress: bool = True) -> Path:
    """The demo world folder under ``C.AUDIT_HOME``, generated (default size, seed) if absent or
    written by another version of the generator (the committed checkpoint was trained on this
    version's world)."""
    from audit.world.generate import current_world

    return current_world(Path(C.AUDIT_HOME) / DEMO_WORLD_DIR, seed=C.SEED, progress=progress)


def _is_current(ds: fo.Dataset, checkpoint_sha: str) -> bool:
    """True when the dataset was ingested with this checkpoint."""
    return store.audit_info(ds).get("model_sha") == checkpoint_sha


def build_demo(name: str = C.DEMO_DATASET_NAME, *, force: bool = False, progress: bool = True,
               progress_callback: ProgressCallback | None = None) -> fo.Dataset:
    """Build the demo dataset: generate the world, ingest it at 320 px, score it.

    Args:
        name: dataset name.
        force: delete and rebuild the dataset even when it is finished (the world is kept).
        progress: show tqdm bars.
        progress_callback: called with (fraction of the whole build, message).

    Returns:
        The ingested and scored dataset.

    Raises:
        ValueError: the committed checkpoint is missing, or ``name`` is a dataset the auditor
            did not build.

    Example:
        >>> ds = build_demo()  # doctest: +SKIP
    """
    from audit.data.checkpoint import file_digest
    from audit.data.ingest import ingest
    from audit.data.scoring import score_dataset

    checkpoint = Path(C.DEMO_CHECKPOINT)
    if not checkpoint.is_file():
        raise ValueError(f"demo checkpoint {checkpoint} not found; train it with "
                         "`python -m audit train-demo`")
    sha = file_digest(checkpoint)
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        info = store.audit_info(ds)
        if not info:
            raise ValueError(f"dataset {name!r} exists and was not built by the auditor; "
                             "refusing to replace it")
        current = _is_current(ds, sha)
        if current and not force and info.get("complete") and info.get("scored_at"):
            return ds
        if force or not current:
            ds.delete()
    if progress_callback is not None:
        progress_callback(0.0, "preparing the demo world")
    world = demo_world(progress=progress)
    ingest(name, images=world / "images", train_json=world / "train.json",
           val_json=world / "val.json", model=checkpoint, imgsz=DEMO_IMGSZ, progress=progress,
           progress_callback=_stage(progress_callback, "ingest"))
    score_dataset(name, progress=progress, progress_callback=_stage(progress_callback, "score"))
    return store.load_dataset(name)
