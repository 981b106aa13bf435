"""The worlds the findings benchmark runs on: each a folder of COCO files with ``noise.csv``, a
checkpoint trained on it, and the inference size it was trained at.

* ``demo``: the synthetic demo world (``audit.world.generate``) and its committed checkpoint;
  ``--seed N`` draws a world of the same generator the checkpoint never saw.
* ``clean``: the demo world's images drawn with no injected error (``noise_rate`` 0): what the
  auditor flags where nothing was planted (book conventions aside) is a false alarm.
* ``shapes``: a world drawn by another project's generator (scikit-image's ``random_shapes``,
  :mod:`audit.world.shapes`) and a checkpoint trained on its noisy train split.
* ``trees``: human-annotated aerial tree crowns (``audit.world.trees``, real images labelled by
  people) with errors injected by the same protocol, and a checkpoint trained on its noisy train
  split (``audit/world/trees_yolo11n.pt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import audit.world
from audit import constants as C

TREES_CHECKPOINT = Path(audit.world.__file__).resolve().parent / "trees_yolo11n.pt"
SHAPES_CHECKPOINT = TREES_CHECKPOINT.with_name("shapes_yolo11n.pt")
SHAPES_IMGSZ = 192  # the shapes checkpoint's training size (the images' side)
TREES_IMGSZ = 416  # the tree checkpoint's training size (tiles are about 400 px)
DEMO_IMGSZ = 320  # the demo checkpoint's training size
WORLD_NAMES = ("demo", "clean", "shapes", "trees")  # every world, in `--world all` order
DEMO_SIZES = {"small": {"n_images": 40}, "full": {}}  # generate_world kwargs per size


@dataclass(frozen=True)
class BenchWorld:
    """One benchmark world: its folder, the checkpoint that reads it and the inference size."""

    name: str
    folder: Path
    checkpoint: Path
    imgsz: int


def bench_world(name: str, size: str, seed: int = C.SEED, *, progress: bool = True) -> BenchWorld:
    """The world ``name`` under ``AUDIT_HOME/bench``, written once per generator version.

    Raises:
        ValueError: unknown world; the tree world's source wheel is not found.
    """
    home = C.AUDIT_HOME / "bench"
    suffix = "" if seed == C.SEED else f"-seed{seed}"
    if name in ("demo", "clean"):
        from audit.world.generate import current_world

        kwargs = dict(DEMO_SIZES[size]) | ({"noise_rate": 0.0} if name == "clean" else {})
        stem = "world" if name == "demo" else "world-clean"
        folder = current_world(home / f"{stem}-{size}{suffix}", seed=seed, progress=progress,
                               **kwargs)
        return BenchWorld(name, folder, C.DEMO_CHECKPOINT, DEMO_IMGSZ)
    if name == "shapes":
        from audit.world.shapes import current_shapes_world

        kwargs = {"n_images": 80} if size == "small" else {}
        folder = current_shapes_world(home / f"shapes-{size}{suffix}", seed=seed,
                                      progress=progress, **kwargs)
        return BenchWorld(name, folder, SHAPES_CHECKPOINT, SHAPES_IMGSZ)
    if name == "trees":
        from audit.world.trees import current_tree_world

        folder = current_tree_world(home / f"trees{suffix}", seed=seed, progress=progress)
        return BenchWorld(name, folder, TREES_CHECKPOINT, TREES_IMGSZ)
    raise ValueError(f"bench findings: unknown world {name!r}; expected one of {WORLD_NAMES} "
                     "or 'all'")
