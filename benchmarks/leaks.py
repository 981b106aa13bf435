"""Leak benchmark: train images copied into val, altered, found again (``bench leaks``).

On the demo world, ``n_planted`` train images are copied into val after a resize (to ``scale``
of their side) and a JPEG pass (``quality``): what a careless dataset merge does. Every image is
embedded as ingest embeds it (the demo checkpoint's pooled neck layers, :mod:`audit.data.model`)
and :func:`audit.leaks.find_duplicates` pairs them in the shallowest layer's block, as scoring
does. A planted copy is found when it is paired with its
own source; every other train/val pair is a false pair.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from audit import constants as C
from audit.leaks import DuplicateSummary, find_duplicates, shallow_block
from benchmarks.leaks_peer import BRAIN_THRESHOLD, brain_leak_pairs

# images in the world (None: the full demo world of bench/worlds.py) and copies planted; below
# ~150 images a scene kind has too few look-alikes for the neighbourhood yardstick to settle
SIZES = {"small": {"n_images": 150, "n_planted": 4}, "full": {"n_images": None, "n_planted": 10}}
SCALE = 0.8  # side of a planted copy against its source's
QUALITY = 70  # JPEG quality of a planted copy's re-compression
BATCH = 8  # images per forward pass


@dataclass(frozen=True)
class LeakBenchResult:
    """What the leak benchmark found.

    Attributes:
        planted: ``(copy path, source path)`` per planted copy.
        found: planted copies paired with their own source.
        false_pairs: train/val pairs that are not a planted copy with its source.
        pairs: every near-duplicate pair (:func:`audit.leaks.find_duplicates`, ids = paths).
        summary: the search's threshold and counts.
        planted_distance: each planted copy's distance to its source (ascending).
    """

    planted: list[tuple[str, str]]
    found: int
    false_pairs: int
    pairs: pd.DataFrame
    summary: DuplicateSummary
    planted_distance: list[float]
    brain: tuple[int, int] | None = None  # FiftyOne Brain's (found, false pairs), when run

    def table(self) -> str:
        """The figures as a few lines of text."""
        s = self.summary
        return "\n".join([
            f"images {s.n_images}, planted copies {len(self.planted)}",
            f"found {self.found} of {len(self.planted)}, false pairs {self.false_pairs}",
            f"threshold (distance over the yardstick neighbour's) {s.threshold:.4g}, median "
            f"nearest-neighbour distance "
            f"{s.median_nn_distance:.4g}; within-split pairs {s.n_pairs - s.n_leaks}",
            "planted copy-source distances: " + ", ".join(f"{d:.3g}"
                                                         for d in self.planted_distance),
            *([f"FiftyOne Brain compute_leaky_splits (threshold {BRAIN_THRESHOLD:g}, the whole "
               f"embedding): found {self.brain[0]} of {len(self.planted)}, false pairs "
               f"{self.brain[1]}"] if self.brain is not None else [])])


def plant_copies(world: Path, out: Path, n_planted: int, *, seed: int = C.SEED,
                 scale: float = SCALE, quality: int = QUALITY) -> list[tuple[Path, Path]]:
    """Write ``n_planted`` resized, re-compressed copies of seeded train images under ``out``.

    Returns:
        ``(copy, source)`` paths, one per copy.
    """
    train = sorted((Path(world) / "images" / "train").glob("*.jpg"))
    if len(train) < n_planted:
        raise ValueError(f"{world}: {len(train)} train images, cannot copy {n_planted}")
    picked = np.random.default_rng(seed).choice(len(train), n_planted, replace=False)
    out.mkdir(parents=True, exist_ok=True)
    planted = []
    for i in sorted(picked):
        source = train[i]
        with Image.open(source) as img:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            copy = img.convert("RGB").resize(size, Image.Resampling.BILINEAR)
        target = out / f"leak_{source.stem}.jpg"
        copy.save(target, "JPEG", quality=quality)
        planted.append((target, source))
    return planted


def embed(paths: list[Path], checkpoint: Path, imgsz: int) -> np.ndarray:
    """Image embeddings ``(n, D)`` as ingest computes them (pooled hooked layers)."""
    from audit.data.checkpoint import load_detector
    from audit.data.images import open_image, rgb_array

    detector = load_detector(checkpoint)
    rows = []
    for start in range(0, len(paths), BATCH):
        images = []
        for path in paths[start:start + BATCH]:
            with open_image(path) as img:
                images.append(rgb_array(img))
        rows += [r.embedding for r in detector.forward(images, imgsz=imgsz)]
    return np.stack(rows)


def score_planted(pairs: pd.DataFrame, planted: list[tuple[str, str]]) -> tuple[int, int]:
    """``(found, false pairs)``: leaks that are a planted copy with its source, and the others."""
    truth = {(str(c), str(s)) for c, s in planted}
    leaks = pairs[pairs["leak"]]
    hits = [(a, b) in truth for a, b in zip(leaks["sample_a"], leaks["sample_b"], strict=True)]
    return int(sum(hits)), int(len(hits) - sum(hits))


def run_leak_check(world: Path, checkpoint: Path, imgsz: int, n_planted: int, *,
                   seed: int = C.SEED, spread: float = C.DUPLICATE_SPREAD,
                   peer: bool = False) -> LeakBenchResult:
    """Plant ``n_planted`` altered train copies into val of ``world`` and search for leaks
    (``peer``: FiftyOne Brain's ``compute_leaky_splits`` too)."""
    with tempfile.TemporaryDirectory(prefix="leak-bench-") as tmp:
        planted = plant_copies(world, Path(tmp), n_planted, seed=seed)
        train = sorted((Path(world) / "images" / "train").glob("*.jpg"))
        val = sorted((Path(world) / "images" / "val").glob("*.jpg")) + [c for c, _ in planted]
        paths = train + val
        embeddings = embed(paths, checkpoint, imgsz)
    vectors = shallow_block(embeddings)
    split = ["train"] * len(train) + ["val"] * len(val)
    pairs, summary = find_duplicates(vectors, split, [str(p) for p in paths], spread=spread)
    named = [(str(c), str(s)) for c, s in planted]
    found, false = score_planted(pairs, named)
    index = {str(p): i for i, p in enumerate(paths)}
    distance = sorted(float(np.linalg.norm(vectors[index[c]] - vectors[index[s]]))
                      for c, s in named)
    brain = None
    if peer:
        brain = score_planted(brain_leak_pairs([str(p) for p in paths], split, embeddings), named)
    return LeakBenchResult(named, found, false, pairs, summary, distance, brain)


def bench_leaks(*, size: str = "full", out: Path | None = None,
                seed: int = C.SEED) -> LeakBenchResult:
    """The leak benchmark on the demo world of ``size``; prints its figures (and writes the pairs
    to ``out`` as CSV when given)."""
    from audit.world.generate import current_world
    from benchmarks.worlds import DEMO_IMGSZ, bench_world

    n_images, n_planted = SIZES[size]["n_images"], SIZES[size]["n_planted"]
    if n_images is None:
        folder = bench_world("demo", size, seed).folder
    else:
        folder = current_world(C.AUDIT_HOME / "bench" / f"world-leaks-{n_images}-seed{seed}",
                               seed=seed, n_images=n_images)
    result = run_leak_check(folder, C.DEMO_CHECKPOINT, DEMO_IMGSZ, n_planted, seed=seed,
                            peer=True)
    print(result.table())
    if out is not None:
        result.pairs.to_csv(out, index=False)
    return result
