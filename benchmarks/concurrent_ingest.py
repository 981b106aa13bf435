"""Concurrent-resume benchmark (``python -m audit bench concurrent-ingest``): never a duplicate.

Each repetition ingests a small demo world (16 images) into a fresh dataset and interrupts it
after its first batch (4 images stored, as a killed ingest leaves it), then starts two
``python -m audit ingest`` processes that resume it at the same moment, waits for both and
counts the samples: every image must be stored once (16 samples, 16 distinct filepaths) and
both processes must exit 0. 20 repetitions at the full size, 2 at the small one. The processes
inherit this process's environment, so they use the same FiftyOne database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.tables import check_out, write_tables

SIZES = {"small": 2, "full": 20}  # repetitions per benchmark size
N_IMAGES = 16  # images of the world each repetition ingests
BATCH = 4  # images per batch; the interrupted ingest stores one batch
IMGSZ = 320  # the demo checkpoint's training size
TIMEOUT_S = 600  # seconds one ingest process may take
REPO = Path(__file__).resolve().parents[1]  # where ``python -m audit`` is run


class _Interrupt(Exception):
    """Raised by the progress callback after the first batch (a killed ingest)."""


def _stop(fraction: float, message: str) -> None:
    raise _Interrupt(message)


def _args(name: str, world: Path, checkpoint: Path) -> list[str]:
    """``python -m audit ingest`` arguments of one resume."""
    return [sys.executable, "-m", "audit", "ingest", "--name", name, "--images",
            str(world / "images"), "--train-json", str(world / "train.json"), "--val-json",
            str(world / "val.json"), "--model", str(checkpoint), "--imgsz", str(IMGSZ),
            "--batch", str(BATCH)]


def race_once(world: Path, checkpoint: Path) -> dict[str, Any]:
    """One repetition: interrupt an ingest, resume it twice at once, count what is stored."""
    import fiftyone as fo

    from audit.data.ingest import ingest

    name = f"bench-race-{uuid.uuid4().hex[:10]}"
    kw = {"images": world / "images", "train_json": world / "train.json",
          "val_json": world / "val.json", "model": checkpoint, "imgsz": IMGSZ, "batch": BATCH}
    try:
        ingest(name, **kw, progress=False, progress_callback=_stop)
    except _Interrupt:
        pass
    stored_before = len(fo.load_dataset(name))
    start = time.perf_counter()
    procs = [subprocess.Popen(_args(name, world, checkpoint), cwd=REPO, env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    codes, errors = [], []
    for proc in procs:
        _, err = proc.communicate(timeout=TIMEOUT_S)
        codes.append(proc.returncode)
        errors += [ln for ln in err.splitlines() if ln.startswith("error:")]
    seconds = time.perf_counter() - start
    ds = fo.load_dataset(name)
    ds.reload()
    paths = ds.values("filepath")
    row = {"stored_before": stored_before, "samples": len(paths), "distinct": len(set(paths)),
           "duplicates": len(paths) - len(set(paths)), "exit_codes": " ".join(map(str, codes)),
           "seconds": round(seconds, 1), "error": errors[0] if errors else ""}
    ds.delete()
    return row


def bench_concurrent_ingest(*, size: str = "full", out: str | Path | None = None,
                            echo: bool = True) -> pd.DataFrame:
    """Race two resumes of one interrupted ingest, ``SIZES[size]`` times; one row each.

    Args:
        size: "small" (2 repetitions) or "full" (20).
        out: also write the table here (``.json`` or ``.csv``).
        echo: print the table and the count of repetitions with a duplicate or a failure.

    Returns:
        Frame with ``repeat``, ``stored_before``, ``samples``, ``distinct``, ``duplicates``,
        ``exit_codes``, ``seconds`` and ``error`` (a failing process's ``error:`` line).

    Example:
        >>> table = bench_concurrent_ingest(size="small", echo=False)  # doctest: +SKIP
        >>> int(table["duplicates"].sum())  # doctest: +SKIP
        0
    """
    if size not in SIZES:
        raise ValueError(f"bench concurrent-ingest: size must be one of {tuple(SIZES)}, "
                         f"got {size!r}")
    check_out(out, "concurrent-ingest")
    from audit.world.generate import generate_world
    from benchmarks.ingest_speed import _checkpoint

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-race-") as tmp:
        world = Path(tmp) / "world"
        generate_world(world, n_images=N_IMAGES, progress=False)
        checkpoint, _ = _checkpoint(Path(tmp))
        for repeat in range(1, SIZES[size] + 1):
            rows.append({"repeat": repeat, **race_once(world, checkpoint)})
    table = pd.DataFrame(rows)
    if out is not None:
        write_tables(out, {"repetitions": table}, {"summary": summary(table)})
    if echo:
        print(table.to_string(index=False))
        print(summary(table))
    return table


def summary(table: pd.DataFrame) -> str:
    """One line: repetitions with a duplicate, with a failed process, and the total samples."""
    failed = int((table["exit_codes"] != "0 0").sum())
    dup = int((table["duplicates"] > 0).sum())
    return (f"{len(table)} repetitions of two concurrent resumes ({N_IMAGES} images each): "
            f"{dup} with a duplicate sample ({int(table['duplicates'].sum())} duplicates in "
            f"all), {failed} with a failed process")
