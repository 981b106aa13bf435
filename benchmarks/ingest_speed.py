"""Ingest speed benchmark (``python -m audit bench ingest``): full ingest vs bare YOLO predict.

On the same demo-world images (a world generated into a temporary folder: 40 images at the small
size, 300 at the full size), in one run and at the same ``imgsz``, this times

* ``ingest``: :func:`audit.data.ingest.ingest` into a throwaway FiftyOne dataset: validation,
  decoding, the one forward pass per batch (predictions, embeddings, per-box features, losses),
  metadata and the bulk writes; the model load is included;
* ``bare_predict``: ``ultralytics.YOLO(checkpoint).predict`` on every image file, one image at a
  time, with the same confidence / NMS settings; the model load is included.

Both run with the same number of torch threads (ultralytics would lower it to ``cpus - 1``),
after one untimed warm-up prediction, alternately ``REPEATS[size]`` times; the fastest counts.
The checkpoint is the committed demo one, or, when it is missing, a tiny untrained YOLO11n with
the world's classes (:func:`audit.world.tiny_checkpoint.make_tiny_checkpoint`; its many
low-confidence boxes make the ingest's per-box work heavier than a trained model's).

Timings on a shared machine are noisy: compare the ratio measured in one run, not runs.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from audit import constants as C
from benchmarks.tables import check_out, write_tables

SIZES = {"small": 40, "full": 300}  # demo-world images per benchmark size
BENCH_IMGSZ = 320  # inference size of both (the demo checkpoint's training size)
RATIO_TARGET = 1.3  # ingest seconds / bare predict seconds must stay at or below this
REPEATS = {"small": 1, "full": 2}  # alternating runs of each per size; the fastest counts


@dataclass(frozen=True)
class IngestReport:
    """Tables of one ingest-speed run.

    Attributes:
        table: one row per method (``ingest``, ``bare_predict``): ``seconds``, ``ms_per_image``
            and ``note``.
        targets: ``target``, ``value``, ``holds``.
        info: images, imgsz, checkpoint, threads.
    """

    table: pd.DataFrame
    targets: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Ingest seconds over bare predict seconds."""
        s = self.table.set_index("method")["seconds"]
        return float(s["ingest"] / s["bare_predict"])

    def text(self) -> str:
        """The tables as plain text."""
        head = ", ".join(f"{k} {v}" for k, v in self.info.items())
        return "\n\n".join([
            f"Ingest speed ({head})",
            self.table.to_string(index=False, float_format=lambda v: f"{v:.2f}"),
            f"ratio ingest / bare predict = {self.ratio:.2f}x",
            "Targets", self.targets.to_string(index=False)])


def bench_ingest(*, size: str = "full", out: str | Path | None = None, progress: bool = True,
                 echo: bool = True) -> IngestReport:
    """Time the full ingest against bare ultralytics predict on the same demo-world images.

    Args:
        size: "small" (40 images) or "full" (300 images).
        out: also write the table here (``.json`` or ``.csv``; temporary file, then rename).
        progress: show a progress bar over the steps.
        echo: print the tables (this is a command-line report).

    Returns:
        IngestReport.

    Raises:
        ValueError: unknown size or output suffix.

    Example:
        >>> report = bench_ingest(size="small", echo=False)  # doctest: +SKIP
        >>> report.ratio  # doctest: +SKIP
    """
    if size not in SIZES:
        raise ValueError(f"bench ingest: size must be one of {tuple(SIZES)}, got {size!r}")
    check_out(out, "ingest")
    from audit.world.generate import generate_world

    bar = tqdm(total=3 + 2 * REPEATS[size], desc="bench ingest", unit="step", disable=not progress)
    with bar, tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        bar.set_postfix_str("world")
        world = Path(tmp) / "world"
        generate_world(world, n_images=SIZES[size], seed=C.SEED, progress=False)
        images = sorted((world / "images").rglob("*.jpg"))
        bar.update(1)
        bar.set_postfix_str("checkpoint")
        checkpoint, which = _checkpoint(Path(tmp))
        bar.update(1)
        threads = max(1, os.cpu_count() or 1)
        best = _time_both(world, images, checkpoint, threads, REPEATS[size], bar)
    report = _report(best, len(images), which, threads, REPEATS[size])
    if out is not None:
        write_tables(out, {"table": report.table, "targets": report.targets},
                     {"ratio": report.ratio, "info": report.info})
    if echo:
        print(report.text())
    return report


def _time_both(world: Path, images: list[Path], checkpoint: Path, threads: int, repeats: int,
               bar: tqdm) -> dict[str, float]:
    """Warm up, then alternate bare predict and ingest; the best seconds of each."""
    bar.set_postfix_str("warm-up")
    _bare_predict(checkpoint, images[:1], threads)
    bar.update(1)
    best = {"ingest": math.inf, "bare_predict": math.inf}
    for _ in range(repeats):
        bar.set_postfix_str("bare predict")
        best["bare_predict"] = min(best["bare_predict"],
                                   _bare_predict(checkpoint, images, threads))
        bar.update(1)
        bar.set_postfix_str("ingest")
        best["ingest"] = min(best["ingest"], _ingest(world, checkpoint, len(images)))
        bar.update(1)
    return best


def _checkpoint(folder: Path) -> tuple[Path, str]:
    """The demo checkpoint, or a tiny untrained one with the world's classes written to folder."""
    if C.DEMO_CHECKPOINT.is_file():
        return C.DEMO_CHECKPOINT, f"demo ({C.DEMO_CHECKPOINT.name})"
    from audit.world.scene import CLASS_NAMES
    from audit.world.tiny_checkpoint import make_tiny_checkpoint

    path = make_tiny_checkpoint(folder / "tiny_yolo11n.pt", CLASS_NAMES, seed=C.SEED)
    return path, "tiny untrained yolo11n (no demo checkpoint)"


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch threads, also inside ultralytics' device selection."""
    import torch
    from ultralytics.utils import torch_utils

    before, before_ul = torch.get_num_threads(), torch_utils.NUM_THREADS
    torch_utils.NUM_THREADS = threads
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch_utils.NUM_THREADS = before_ul
        torch.set_num_threads(before)


def _bare_predict(checkpoint: Path, images: list[Path], threads: int) -> float:
    """Seconds of ``YOLO(checkpoint)`` plus ``predict`` on each image file, one at a time."""
    from ultralytics import YOLO

    with _torch_threads(threads):
        t = time.perf_counter()
        model = YOLO(str(checkpoint))
        for path in images:
            model.predict(str(path), imgsz=BENCH_IMGSZ, conf=C.PRED_CONF, iou=C.PRED_IOU,
                          max_det=C.MAX_DET, device="cpu", verbose=False)
        return time.perf_counter() - t


def _ingest(world: Path, checkpoint: Path, n_images: int) -> float:
    """Seconds of a full ingest of the world into a throwaway dataset (deleted afterwards)."""
    import fiftyone as fo

    from audit.data.ingest import ingest

    fo.list_datasets()  # the database is started outside the timing
    name = f"bench-ingest-{uuid.uuid4().hex[:12]}"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".pt checkpoints are pickles")
            t = time.perf_counter()
            ds = ingest(name, images=world / "images", train_json=world / "train.json",
                        val_json=world / "val.json", model=checkpoint, imgsz=BENCH_IMGSZ,
                        progress=False)
            seconds = time.perf_counter() - t
        if len(ds) != n_images:
            raise RuntimeError(f"bench ingest: ingested {len(ds)} of {n_images} images")
        return seconds
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def _report(best: dict[str, float], n_images: int, which: str, threads: int,
            repeats: int) -> IngestReport:
    """The table and targets from the best seconds of each method."""
    notes = {"ingest": "audit.data.ingest.ingest (load, forward, features, losses, writes)",
             "bare_predict": "YOLO(checkpoint).predict, one image file at a time"}
    table = pd.DataFrame([{"method": m, "seconds": best[m],
                           "ms_per_image": 1000 * best[m] / max(n_images, 1), "note": notes[m]}
                          for m in ("ingest", "bare_predict")])
    ratio = best["ingest"] / best["bare_predict"]
    targets = pd.DataFrame([{"target": f"ingest / bare predict <= {RATIO_TARGET}x",
                             "value": f"{ratio:.2f}x", "holds": bool(ratio <= RATIO_TARGET)}])
    info = {"images": n_images, "imgsz": BENCH_IMGSZ, "checkpoint": which,
            "torch threads": threads, "best of": repeats}
    return IngestReport(table, targets, info)
