"""Review load benchmark: several processes write review decisions on one dataset at once.

Each worker process owns a disjoint set of samples and walks each through a fixed sequence of
decisions (confirm a box, fix a class, mark for relabel, delete a box, undo), always based on the
revision its previous decision produced, so none of them may conflict. On top, a set of contested
samples gets one decision from every worker, all based on revision 0: exactly one wins per
sample, so ``(workers - 1) * n_contested`` conflicts are planted. Afterwards the log and the
dataset are checked: no applied decision lost, none duplicated, every sample's revision equal to
its number of applied decisions, conflicts detected equal to conflicts planted.

Run: ``python -m benchmarks.review_load --n 10000 --workers 4``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("ball", "crate", "book")  # class names of the benchmark's synthetic samples
SEQUENCE = ("confirm", "fix_class", "relabel", "delete", "undo")  # one owned sample's decisions
CONFLICT_SHARE = 0.05  # share of the decisions that go to contested samples
WORKER_TIMEOUT_S = 3600  # the parent gives up waiting for a worker's report after this


@dataclass(frozen=True)
class ReviewLoadResult:
    """Figures of one run (counts are decisions unless named otherwise).

    Attributes:
        n_decisions: decisions attempted over all workers.
        workers: writer processes.
        n_samples: samples in the benchmark dataset.
        applied: decisions the workers saw applied.
        conflicts_planted: decisions that must be refused (stale base on contested samples).
        conflicts_detected: ``ReviewConflict`` raised to the workers.
        lost: decisions reported applied but missing from the log or the dataset.
        duplicated: decision ids present twice in the log or in the samples' applied lists.
        unexpected: decisions in the dataset that no worker reported as applied.
        bad_revisions: samples whose revision differs from their count of applied decisions.
        errors: other exceptions raised to the workers.
        replayed: decisions a ``replay_log`` afterwards found unapplied (should be 0).
        seconds: wall time of the write phase (first worker start to last worker end).
        throughput: decisions per second over all workers.
    """

    n_decisions: int
    workers: int
    n_samples: int
    applied: int
    conflicts_planted: int
    conflicts_detected: int
    lost: int
    duplicated: int
    unexpected: int
    bad_revisions: int
    errors: int
    replayed: int
    seconds: float
    throughput: float

    @property
    def ok(self) -> bool:
        """True when nothing was lost or duplicated and every planted conflict was detected."""
        return (self.lost == self.duplicated == self.unexpected == self.bad_revisions
                == self.errors == self.replayed == 0
                and self.conflicts_detected == self.conflicts_planted
                and self.applied + self.conflicts_detected == self.n_decisions)

    def summary(self) -> str:
        """A few human-readable lines."""
        return (f"review load: {self.n_decisions} decisions, {self.workers} workers, "
                f"{self.n_samples} samples, {self.seconds:.1f} s, "
                f"{self.throughput:.0f} decisions/s\n"
                f"applied {self.applied}, conflicts detected {self.conflicts_detected} / planted "
                f"{self.conflicts_planted}, lost {self.lost}, duplicated {self.duplicated}, "
                f"unexpected {self.unexpected}, bad revisions {self.bad_revisions}, errors "
                f"{self.errors}, replayed {self.replayed}: {'OK' if self.ok else 'FAILED'}")


def build_review_dataset(name: str, n_samples: int, *, boxes: int = 3, width: int = 320,
                         height: int = 240, image_dir: Path | None = None, seed: int = 0) -> Any:
    """A small non-persistent dataset in the auditor's schema, seeded (replaces ``name``).

    Samples alternate train/val and carry ``ground_truth`` (``boxes`` boxes, ``coco_id``,
    ``iscrowd``, ``wrong_class_score`` / ``bad_box_score`` in [0, 1], higher = more likely wrong,
    ``suggested_label``), ``predictions`` (same boxes jittered, ``confidence``, ``missing_score``)
    and ``flagged``. With ``image_dir`` the images are written there as PNG; else file paths are
    placeholders in a folder that is not created.

    Returns:
        The ``fiftyone.Dataset``.
    """
    import fiftyone as fo

    rng = np.random.default_rng(seed)
    folder = Path(image_dir) if image_dir is not None else Path.cwd() / "review-bench-images"
    samples = []
    for i in range(n_samples):
        path = folder / f"img_{i:05d}.png"
        if image_dir is not None:
            _write_png(path, rng, width, height)
        xy = rng.uniform(0.0, 0.6, (boxes, 2))
        wh = rng.uniform(0.1, 0.35, (boxes, 2))
        labels = [CLASSES[int(c)] for c in rng.integers(0, len(CLASSES), boxes)]
        scores = rng.uniform(0, 1, (boxes, 3))
        gt = [fo.Detection(label=labels[j], bounding_box=[*xy[j], *wh[j]], iscrowd=False,
                           coco_id=i * boxes + j + 1, wrong_class_score=float(scores[j, 0]),
                           bad_box_score=float(scores[j, 1]),
                           suggested_label=CLASSES[(CLASSES.index(labels[j]) + 1) % 3])
              for j in range(boxes)]
        jitter = np.clip(xy + rng.normal(0, 0.01, xy.shape), 0, 0.6)
        pred = [fo.Detection(label=labels[j], bounding_box=[*jitter[j], *wh[j]],
                             confidence=float(rng.uniform(0.3, 1)),
                             missing_score=float(scores[j, 2])) for j in range(boxes)]
        flagged = ["wrong_class"] if scores[:, 0].max() >= 0.5 else []
        samples.append(fo.Sample(
            filepath=str(path), split="train" if i % 2 == 0 else "val", tags=[],
            metadata=fo.ImageMetadata(width=width, height=height, num_channels=3),
            ground_truth=fo.Detections(detections=gt), predictions=fo.Detections(detections=pred),
            flagged=flagged))
    ds = fo.Dataset(name, overwrite=True)
    ds.add_samples(samples, progress=False)
    ds.info = {"audit": {"class_names": list(CLASSES)}}
    ds.save()
    return ds


def _write_png(path: Path, rng: np.random.Generator, width: int, height: int) -> None:
    """A random-noise RGB PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def plan_tasks(n: int, workers: int, *, conflict_share: float = CONFLICT_SHARE
               ) -> tuple[list[list[tuple[int, int, bool]]], int, int]:
    """Split ``n`` decisions over workers.

    Returns:
        (per-worker task lists of ``(sample_index, step_in_SEQUENCE, contested)``, number of
        samples needed, conflicts planted).
    """
    if n < workers or workers < 2:
        raise ValueError(f"need workers >= 2 and n >= workers, got n={n}, workers={workers}")
    n_contested = max(1, round(n * conflict_share / workers))
    owned = n - n_contested * workers
    tasks: list[list[tuple[int, int, bool]]] = [[] for _ in range(workers)]
    sample = n_contested
    for w in range(workers):
        count = owned // workers + (w < owned % workers)
        for k in range(count):
            if k % len(SEQUENCE) == 0 and k:
                sample += 1
            tasks[w].append((sample, k % len(SEQUENCE), False))
        sample += 1
    for w in range(workers):  # contested samples come first, in a different order per worker
        order = np.random.default_rng(w).permutation(n_contested)
        tasks[w] = [(int(s), 1, True) for s in order] + tasks[w]
    return tasks, sample, n_contested * (workers - 1)


def _worker(name: str, home: str, tasks: list, ids: list, barrier: Any, queue: Any, w: int) -> None:
    """One writer process: record its decisions, report applied / conflict / error ids."""
    report: dict[str, Any] = {"applied": [], "conflicts": [], "errors": [], "start": time.time()}
    try:
        _write_decisions(name, home, tasks, ids, barrier, w, report)
    except Exception as exc:  # a failed setup is reported, not left to hang the parent
        report["errors"].append(f"worker {w}: {exc!r}")
    report["end"] = time.time()
    queue.put(report)


def _write_decisions(name: str, home: str, tasks: list, ids: list, barrier: Any, w: int,
                     report: dict[str, Any]) -> None:
    """The body of :func:`_worker`: open the dataset, wait for the others, write."""
    import fiftyone as fo

    from audit.data.review_store import ReviewConflict, record_decision
    from audit.reviews import Decision

    ds = fo.load_dataset(name)
    revisions: dict[str, int] = {}
    barrier.wait(timeout=600)
    report["start"] = time.time()
    for sample_index, step, contested in tasks:
        sample_id, box_ids = ids[sample_index]
        action = SEQUENCE[step]
        box_id = {"confirm": box_ids[0], "fix_class": box_ids[1], "delete": box_ids[2]}.get(action)
        decision = Decision(dataset=name, sample_id=sample_id, box_id=box_id, action=action,
                            new_label=CLASSES[w % 3] if action == "fix_class" else None,
                            reviewer=f"worker-{w}", note=f"step {step}",
                            base_revision=0 if contested else revisions.get(sample_id, 0))
        try:
            revisions[sample_id] = record_decision(ds, decision, home=home).revision
            report["applied"].append(decision.decision_id)
        except ReviewConflict:
            report["conflicts"].append(decision.decision_id)
        except Exception as exc:  # counted, so the benchmark reports it instead of stopping
            report["errors"].append(f"{decision.decision_id}: {exc!r}")


def _check(ds: Any, reports: list[dict], home: str) -> dict[str, int]:
    """Compare what the workers saw with the log and the dataset."""
    from audit.data.review_store import replay_log
    from audit.reviews import read_records

    reported = [i for r in reports for i in r["applied"]]
    logged = [r.decision.decision_id for r in read_records(ds.name, home=home)]
    lists = [x or [] for x in ds.values("review_decision_ids")]
    revisions = [x or 0 for x in ds.values("review_revision")]
    in_dataset = [i for ids in lists for i in ids]
    duplicated = sum(c - 1 for c in Counter(logged).values() if c > 1) + \
        sum(c - 1 for c in Counter(in_dataset).values() if c > 1)
    return {"lost": len(set(reported) - (set(logged) & set(in_dataset))),
            "duplicated": duplicated, "unexpected": len(set(in_dataset) - set(reported)),
            "bad_revisions": sum(r != len(ids) for r, ids in zip(revisions, lists, strict=True)),
            "replayed": replay_log(ds, home=home, progress=False)}


def bench_review_load(n: int = 10_000, workers: int = 4, *, conflict_share: float = CONFLICT_SHARE,
                      home: str | Path | None = None, keep: bool = False) -> ReviewLoadResult:
    """Run the review load benchmark (see the module docstring).

    Args:
        n: decisions written in total.
        workers: writer processes (spawned; each opens the dataset itself).
        conflict_share: share of ``n`` sent to contested samples.
        home: folder for the review log (default: a temporary folder, removed afterwards).
        keep: keep the benchmark dataset (default: deleted).

    Returns:
        A :class:`ReviewLoadResult`; ``.ok`` says whether every check passed.

    Example:
        >>> bench_review_load(200, 4).ok  # doctest: +SKIP
        True
    """
    from audit.data.review_store import ensure_review_fields

    tasks, n_samples, planted = plan_tasks(n, workers, conflict_share=conflict_share)
    log_home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="review-load-"))
    ds = build_review_dataset(f"review-load-{uuid.uuid4().hex[:8]}", n_samples)
    try:
        ensure_review_fields(ds)
        ids = list(zip(ds.values("id"), ds.values("ground_truth.detections.id"), strict=True))
        ctx = mp.get_context("spawn")
        barrier, queue = ctx.Barrier(workers), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(ds.name, str(log_home), tasks[w], ids, barrier,
                                                   queue, w)) for w in range(workers)]
        for p in procs:
            p.start()
        reports = [queue.get(timeout=WORKER_TIMEOUT_S) for _ in procs]
        for p in procs:
            p.join()
        seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        checks = _check(ds, reports, str(log_home))
        return ReviewLoadResult(
            n_decisions=sum(len(t) for t in tasks), workers=workers, n_samples=n_samples,
            applied=sum(len(r["applied"]) for r in reports), conflicts_planted=planted,
            conflicts_detected=sum(len(r["conflicts"]) for r in reports),
            errors=sum(len(r["errors"]) for r in reports), seconds=seconds,
            throughput=sum(len(t) for t in tasks) / max(seconds, 1e-9), **checks)
    finally:
        if not keep:
            ds.delete()
        if home is None:
            shutil.rmtree(log_home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry: run the benchmark and print its figures; exit 1 if a check fails."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.review_load")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--conflict-share", type=float, default=CONFLICT_SHARE)
    args = p.parse_args(argv)
    result = bench_review_load(args.n, args.workers, conflict_share=args.conflict_share)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
