"""Speed benchmark of the audits (``python -m audit bench speed``).

Part one times every audit of :mod:`audit.pipeline` on seeded synthetic frames
(:func:`benchmarks.synthetic.make_frames`: 448-d embeddings, ~7 ground-truth and ~15 predicted
boxes per image, 64-d box features): metadata, mistakenness, inconsistency, each 2-D projection,
clustering, the insights, and the whole :func:`audit.pipeline.run_all`. Each stage runs in its
own fresh child process (from a fork server) that receives the inputs, so a stage starts with the
inputs resident and nothing left over from the stage before; its peak resident set (``VmHWM``, reset
with ``/proc/self/clear_refs`` after the untimed preparation) therefore counts the inputs plus
what the stage allocates, numpy / BLAS buffers included. Numba compiles UMAP's functions in
every fresh process: the UMAP stage (and ``run_all``) include that compilation, as a fresh
``python -m audit score`` does (the first run on a machine also fills numba's on-disk cache).

Part two (:mod:`benchmarks.brain_speed`) times our mistakenness against FiftyOne Brain's
``compute_mistakenness`` on one real ingested dataset (``$AUDIT_BENCH_DATASET``, else the demo).

Timings on a shared machine are noisy: compare ratios measured in one run, not runs.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm.auto import tqdm

from audit import constants as C
from benchmarks.brain_speed import compare_with_brain
from benchmarks.tables import check_out, write_tables

SIZES = {"small": 2_000, "full": 100_000}  # synthetic samples per benchmark size
SUITE_TARGET_S = 60.0  # metadata + run_all at the full size must take less than this
PEAK_TARGET_MB = 4096.0  # largest peak resident set of any stage must stay below this
BRAIN_RATIO_TARGET = 10.0  # Brain seconds / our seconds (read + score) must reach this
STAGES = ("metadata", "mistakenness", "inconsistency", "projection_pca", "projection_tsne",
          "projection_umap", "clusters", "insights", "run_all")  # timed stages, in order


@dataclass(frozen=True)
class SpeedReport:
    """Tables of one speed run.

    Attributes:
        stages: one row per stage (``inputs``, ``STAGES``, ``suite``): ``seconds``, ``peak_mb``
            and ``note``.
        comparison: one row per method of part two (``ours_read``, ``ours_score``, ``ours``,
            ``brain``): ``seconds``; empty when part two was skipped.
        targets: one row per target: ``target``, ``value``, ``holds`` (bool; None when not
            measured at this size or skipped).
        skipped: why part two did not run ("" when it did).
        info: size, samples, cpus and the dataset of part two.
    """

    stages: pd.DataFrame
    comparison: pd.DataFrame
    targets: pd.DataFrame
    skipped: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Brain seconds over ours (read + score); NaN when part two was skipped."""
        return _ratio(self.comparison)

    def text(self) -> str:
        """The tables as plain text."""
        head = ", ".join(f"{k} {v}" for k, v in self.info.items())
        parts = [f"Audit speed ({head})", self.stages.to_string(
            index=False, float_format=lambda v: f"{v:.2f}")]
        if self.comparison.empty:
            parts.append(f"Mistakenness vs FiftyOne Brain: {self.skipped}")
        else:
            parts += ["Mistakenness vs FiftyOne Brain on " + str(self.info.get("dataset", "")),
                      self.comparison.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
                      f"ratio brain / ours = {self.ratio:.1f}x"]
        parts += ["Targets", self.targets.to_string(index=False)]
        return "\n\n".join(parts)


@dataclass(frozen=True)
class _Inputs:
    """The frames every stage reads (ARCHITECTURE.md): samples with metadata, boxes, features."""

    samples: pd.DataFrame
    embeddings: NDArray[np.float32]
    boxes: pd.DataFrame
    box_features: NDArray[np.float32]


def bench_speed(*, size: str = "full", out: str | Path | None = None, progress: bool = True,
                echo: bool = True) -> SpeedReport:
    """Time every audit on synthetic frames, and ours vs FiftyOne Brain on a real dataset.

    Args:
        size: "small" (2,000 synthetic samples) or "full" (100,000).
        out: also write the tables here: ``.json`` (all tables) or ``.csv`` (one long table with
            a ``table`` column); written to a temporary file, then renamed.
        progress: show a progress bar over the stages.
        echo: print the tables (this is a command-line report).

    Returns:
        SpeedReport.

    Raises:
        ValueError: unknown size or output suffix; ``$AUDIT_BENCH_DATASET`` names no dataset.
        RuntimeError: a stage failed or its child process died (e.g. out of memory).

    Example:
        >>> report = bench_speed(size="small", echo=False)  # doctest: +SKIP
        >>> report.stages.set_index("stage").loc["run_all", "seconds"]  # doctest: +SKIP
    """
    if size not in SIZES:
        raise ValueError(f"bench speed: size must be one of {tuple(SIZES)}, got {size!r}")
    check_out(out, "speed")
    n = SIZES[size]
    bar = tqdm(total=len(STAGES) + 2, desc="bench speed", unit="stage", disable=not progress)
    with bar:
        bar.set_postfix_str("building inputs")
        t = time.perf_counter()
        inputs = _build_inputs(n)
        rows = [{"stage": "inputs", "seconds": time.perf_counter() - t,
                 "peak_mb": _peak_mb("VmRSS"),
                 "note": f"{n:,} samples, {len(inputs.boxes):,} boxes (build + resident set)"}]
        bar.update(1)
        rows += _time_stages(inputs, bar)
        del inputs
        gc.collect()
        bar.set_postfix_str("ours vs brain")
        comparison, skipped, dataset = compare_with_brain(size, progress=progress)
        bar.update(1)
    stages = _with_suite(pd.DataFrame(rows, columns=["stage", "seconds", "peak_mb", "note"]))
    info = {"size": size, "samples": n, "cpus": os.cpu_count(),
            **({"dataset": dataset} if dataset else {})}
    report = SpeedReport(stages, comparison, _targets(stages, comparison, size), skipped, info)
    if out is not None:
        write_tables(out, {"stages": report.stages, "comparison": report.comparison,
                           "targets": report.targets},
                     {"ratio": report.ratio, "skipped": report.skipped, "info": report.info})
    if echo:
        print(report.text())
    return report


# --- part one: synthetic frames, one child process per stage ----------------------------------

def _build_inputs(n: int) -> _Inputs:
    """Synthetic frames of ``n`` samples; the samples frame carries the metadata columns."""
    from audit.metadata import sample_metadata
    from benchmarks.synthetic import make_frames

    frames = make_frames(n, seed=C.SEED)
    samples = frames.samples.drop(columns=["truth_cluster"])
    samples = samples.join(sample_metadata(frames.boxes, samples))
    inputs = _Inputs(samples, frames.embeddings, frames.boxes, frames.box_features)
    del frames
    gc.collect()
    _trim_heap()
    return inputs


def _stage_factories() -> dict[str, Callable[[_Inputs], Callable[[], Any]]]:
    """Per stage: untimed preparation that returns the zero-argument call to time."""
    from audit import clusters as CL
    from audit import pipeline
    from audit.inconsistency import score_inconsistency
    from audit.metadata import sample_metadata
    from audit.mistakenness import score_boxes
    from audit.rollup import score_samples

    def mistakenness(x: _Inputs) -> Any:
        scores, _ = score_boxes(x.boxes, x.box_features, x.samples)
        return score_samples(scores, x.samples)

    def clusters(x: _Inputs) -> Any:
        labels = CL.cluster(x.embeddings, n_clusters=C.N_CLUSTERS, seed=C.SEED)
        return CL.cluster_stats(x.samples, labels)

    def insights(x: _Inputs) -> Callable[[], Any]:
        reduced = CL.reduce(x.embeddings, seed=C.SEED)
        labels = CL.cluster(x.embeddings, n_clusters=C.N_CLUSTERS, seed=C.SEED, reduced=reduced)
        inc = score_inconsistency(x.boxes)
        return lambda: pipeline._insights(x.samples, labels, x.boxes, inc, reduced)

    def project(method: str) -> Callable[[_Inputs], Callable[[], Any]]:
        return lambda x: lambda: CL.project(x.embeddings, method, seed=C.SEED)

    return {
        "metadata": lambda x: lambda: sample_metadata(x.boxes, x.samples),
        "mistakenness": lambda x: lambda: mistakenness(x),
        "inconsistency": lambda x: lambda: score_inconsistency(x.boxes),
        **{f"projection_{m}": project(m) for m in C.PROJECTION_METHODS},
        "clusters": lambda x: lambda: clusters(x),
        "insights": insights,
        "run_all": lambda x: lambda: pipeline.run_all(
            x.samples, x.embeddings, x.boxes, x.box_features, seed=C.SEED),
    }


def _time_stages(inputs: _Inputs, bar: tqdm) -> list[dict[str, Any]]:
    """Time every stage in its own child process; rows of the stage table."""
    rows = []
    for name in STAGES:
        bar.set_postfix_str(name)
        res = _run_child(name, inputs)
        note = "" if res["exact_peak"] else "peak: process lifetime (no clear_refs)"
        if res.get("timings"):
            note = "inside: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}"
                                          for k, v in res["timings"].items())
        rows.append({"stage": name, "seconds": res["seconds"], "peak_mb": res["peak_mb"],
                     "note": note})
        bar.update(1)
    return rows


def _run_child(stage: str, inputs: _Inputs) -> dict[str, Any]:
    """Prepare and time one stage in a fresh child process; its seconds and peak resident MB.

    The child comes from a fork server (a clean interpreter), not from this process: OpenMP is
    not fork-safe, and numba's GNU OpenMP layer kills a forked child (SIGTERM) once the parent
    has run a parallel UMAP, as a test session or a notebook may have. The inputs travel
    pickled; the stage runs with the machine's usual thread pools, as ``python -m audit score``.
    """
    forkserver = "forkserver" in multiprocessing.get_all_start_methods()  # else spawn (Windows)
    ctx = multiprocessing.get_context("forkserver" if forkserver else "spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(stage, inputs, send))  # not daemonic, for joblib
    proc.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = {"error": "the child process died without a result"}
    finally:
        proc.join()
        receive.close()
    if "error" in result:
        raise RuntimeError(f"bench speed: stage {stage} failed (exit code {proc.exitcode}): "
                           f"{result['error']}")
    return result


def _child(stage: str, inputs: _Inputs, send: Any) -> None:
    """Child process body: time ``stage`` and send the result (or the error, as text) back."""
    try:
        send.send(_measure(stage, inputs))
    except BaseException as exc:  # everything goes back to the parent as text
        send.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        send.close()


def _measure(stage: str, inputs: _Inputs) -> dict[str, Any]:
    """Untimed preparation, reset of the peak, then the timed call."""
    call = _stage_factories()[stage](inputs)
    gc.collect()
    _trim_heap()
    exact = _reset_peak()
    t = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - t
    timings = {k: float(v) for k, v in (getattr(out, "timings", None) or {}).items()}
    return {"seconds": seconds, "peak_mb": _peak_mb(), "exact_peak": exact, "timings": timings}


def _reset_peak() -> bool:
    """Reset this process's peak resident set to its current one (Linux); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb(key: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident set of this process in MB."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh if line.startswith(key))
    except (OSError, StopIteration):
        import resource  # Unix only: the lifetime peak

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so children start from the live inputs."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _with_suite(stages: pd.DataFrame) -> pd.DataFrame:
    """Append the ``suite`` row: metadata + run_all seconds, the largest stage peak."""
    s = stages.set_index("stage")
    seconds = s.loc["metadata", "seconds"] + s.loc["run_all", "seconds"]
    peak = s.drop(index="inputs")["peak_mb"].max()
    suite = {"stage": "suite", "seconds": seconds, "peak_mb": peak,
             "note": "metadata + run_all; peak: largest stage peak"}
    return pd.concat([stages, pd.DataFrame([suite])], ignore_index=True)


# --- targets and output ----------------------------------------------------------------------

def _ratio(comparison: pd.DataFrame) -> float:
    """Brain seconds over ours (read + score); NaN without a comparison."""
    if comparison.empty:
        return math.nan
    s = comparison.set_index("method")["seconds"]
    return float(s["brain"] / s["ours"])


def _targets(stages: pd.DataFrame, comparison: pd.DataFrame, size: str) -> pd.DataFrame:
    """Whether the suite time, the peak memory and the Brain ratio meet their targets."""
    s = stages.set_index("stage")
    ratio = _ratio(comparison)
    suite_s, peak = float(s.loc["suite", "seconds"]), float(s.loc["suite", "peak_mb"])
    full = size == "full"
    rows = [
        {"target": f"suite < {SUITE_TARGET_S:.0f} s at {SIZES['full']:,} samples",
         "value": f"{suite_s:.1f} s at {SIZES[size]:,}",
         "holds": bool(suite_s < SUITE_TARGET_S) if full else None},
        {"target": f"peak < {PEAK_TARGET_MB / 1024:.0f} GB", "value": f"{peak:,.0f} MB",
         "holds": bool(peak < PEAK_TARGET_MB) if full else None},
        {"target": f"brain / ours >= {BRAIN_RATIO_TARGET:.0f}x",
         "value": "skipped" if comparison.empty else f"{ratio:.1f}x",
         "holds": None if comparison.empty else bool(ratio >= BRAIN_RATIO_TARGET)},
    ]
    return pd.DataFrame(rows, columns=["target", "value", "holds"])
