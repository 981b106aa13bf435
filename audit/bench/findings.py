"""Finding-power benchmark: this auditor vs FiftyOne Brain vs cleanlab ObjectLab on the demo world.

The demo world's ``noise.csv`` is the truth (see :mod:`audit.bench.truth`). The world is
ingested once with the committed demo checkpoint; all three methods then read the same
predictions. Which score of each method is ranked for each injected error type:

========  ==================  ============================  ============================
type      ours                FiftyOne Brain                cleanlab ObjectLab
========  ==================  ============================  ============================
flip      wrong_class_score   mistakenness (gt)             1 - swap quality (gt)
shift     bad_box_score       mistakenness_loc (gt)         1 - badloc quality (gt)
spawn     spurious_score      possible_spurious flag (gt)   1 - image quality, per gt box
merge     group_box_score     mistakenness (gt)             1 - badloc quality (gt)
drop      missing_score       possible_missing flag (pred)  1 - overlooked quality (pred)
image     mistakenness_score  max box score of the image    1 - get_label_quality_scores
========  ==================  ============================  ============================

ObjectLab has no per-box score for a box where no object is (its badloc and swap rate such a box
as clean), so a gt box gets its image's overall quality, as the closest it offers.
``ours_max`` ranks every box by the largest of all its ``<issue>_score`` columns (one queue for
every type), and images by their largest box score. Boxes a method leaves unscored (NaN) rank
below all scored ones. A peer that raises is reported as NaN with the exception as the reason.
Boxes set by a shelf's book convention (group boxes, books left unlabelled) are neither errors
nor clean labels and take no part in the box-level evaluation
(:func:`audit.bench.truth.convention_rows`).

Targets printed with the tables: ours ahead of both peers (AUROC and AP) on every type and
split, merge AUROC >= 0.90, image AP >= 1.3x the better peer's.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audit import constants as C
from audit.bench.metrics import evaluate_boxes, evaluate_flags, evaluate_images
from audit.bench.peers import PeerScores, brain_scores, objectlab_scores
from audit.bench.tables import check_out, write_tables
from audit.bench.truth import box_truth, convention_rows, image_truth, read_noise

SIZES = {"small": {"n_images": 40}, "full": {}}  # generate_world kwargs per benchmark size
BENCH_IMGSZ = 320  # inference size of the benchmark ingest (the demo checkpoint's training size)
MERGE_AUROC_TARGET = 0.90  # merge AUROC ours must reach
IMAGE_AP_FACTOR = 1.3  # image AP ours must reach, as a multiple of the better peer's
OURS_SCORES = {"flip": "wrong_class_score", "shift": "bad_box_score", "spawn": "spurious_score",
               "merge": "group_box_score", "drop": "missing_score"}
BRAIN_SCORES = {"flip": "mistakenness", "shift": "mistakenness_loc", "spawn": "possible_spurious",
                "merge": "mistakenness", "drop": "possible_missing"}
OBJECTLAB_SCORES = {"flip": "swap", "shift": "badloc", "spawn": "image_overall", "merge": "badloc",
                    "drop": "overlooked"}
PEERS = ("brain", "objectlab")


@dataclass(frozen=True)
class FindingsReport:
    """Tables of one benchmark run.

    Attributes:
        boxes: one row per (split, error_type, method): ``auroc``, ``ap`` (NaN with ``reason``).
        images: one row per (split, method): ``ap``, ``auroc``, ``p_at_100``, ``p_at_k``, ``k``.
        targets: one row per (target, split): ``holds`` (bool) and ``detail``.
        flags: ours only, one row per (split, error_type): precision and recall of the flag
            each score raises at its default threshold (``C.FLAG_SCORES``), what a reviewer's
            triage queue holds.
    """

    boxes: pd.DataFrame
    images: pd.DataFrame
    targets: pd.DataFrame
    flags: pd.DataFrame

    def text(self) -> str:
        """The tables as plain text."""
        fmt = {"float_format": lambda v: f"{v:.3f}"}
        box = self.boxes.set_index(["split", "error_type", "method"])
        img = self.images.set_index(["split", "method"])
        return "\n\n".join([
            "Box level (higher = better; NaN: see reason)",
            box.to_string(**fmt),
            "Image level (images whose only departure from the clean labels is a book convention "
            "left out)", img.to_string(**fmt),
            "Flags of ours at the default thresholds (the triage queue)",
            self.flags.set_index(["split", "error_type"]).to_string(**fmt), "Targets",
            self.targets.to_string(index=False)])


def bench_findings(size: str = "full", out: str | Path | None = None, *, seed: int = C.SEED,
                   progress: bool = True, echo: bool = True) -> FindingsReport:
    """Run the finding-power benchmark on the demo world and report the tables.

    Args:
        size: "small" (40-image world, for tests) or "full" (the default demo world).
        out: also write the tables here: ``.json`` (all four tables) or ``.csv`` (one long table
            with a ``level`` column).
        seed: seed of the world. The demo's (``C.SEED``) is the world the demo checkpoint was
            trained on; any other draws a world it never saw (both splits unseen), a held-out
            check of settings chosen on the demo world.
        progress: show progress bars.
        echo: print the tables (this is a command-line report).

    Returns:
        FindingsReport with the box, image and target tables.

    Raises:
        ValueError: unknown size or output suffix; the demo checkpoint is missing.

    Example:
        >>> report = bench_findings("small", echo=False)  # doctest: +SKIP
        >>> report.boxes.query("method == 'ours' and error_type == 'merge'")  # doctest: +SKIP
    """
    if size not in SIZES:
        raise ValueError(f"bench findings: size must be one of {tuple(SIZES)}, got {size!r}")
    check_out(out, "findings")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"bench findings: seed must be an int >= 0, got {seed!r}")
    world = _world(size, seed)
    dataset = _dataset(world, progress=progress)
    report = score_world(dataset, world, progress=progress)
    if out is not None:
        write_tables(out, {"boxes": report.boxes, "images": report.images,
                           "flags": report.flags, "targets": report.targets})
    if echo:
        print(report.text())
    return report


def _world(size: str, seed: int = C.SEED) -> Path:
    """The benchmark's world under AUDIT_HOME, drawn once per generator version."""
    from audit.world.generate import current_world

    name = f"world-{size}" if seed == C.SEED else f"world-{size}-seed{seed}"
    return current_world(C.AUDIT_HOME / "bench" / name, seed=seed, **SIZES[size])


def _dataset(world: Path, *, progress: bool):
    """The benchmark's FiftyOne dataset, ingested once per (world, checkpoint)."""
    import fiftyone as fo

    from audit.data.ingest import ingest

    if not C.DEMO_CHECKPOINT.is_file():
        raise ValueError(f"bench findings: demo checkpoint {C.DEMO_CHECKPOINT} not found; "
                         "train it with `python -m audit train-demo`")
    name = f"yolo-audit-bench-{world.name.removeprefix('world-')}"
    stamp = {"world": str(world), "checkpoint": str(C.DEMO_CHECKPOINT),
             "checkpoint_mtime": C.DEMO_CHECKPOINT.stat().st_mtime, "imgsz": BENCH_IMGSZ}
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if ds.info.get("bench") == stamp:
            return ds
        ds.delete()
    ds = ingest(name, images=world / "images", train_json=world / "train.json",
                val_json=world / "val.json", model=C.DEMO_CHECKPOINT, imgsz=BENCH_IMGSZ,
                progress=progress)
    ds.info["bench"] = stamp
    ds.save()
    return ds


def score_world(dataset, world: Path, *, progress: bool = True) -> FindingsReport:
    """Score an ingested demo world with all methods and evaluate them against ``noise.csv``.

    Args:
        dataset: FiftyOne dataset of the world (``ground_truth`` with ``coco_id`` attributes,
            ``predictions`` with confidences, ``split``).
        world: the world folder (``noise.csv``, ``train.json``, ``val.json``).
        progress: show progress bars.

    Returns:
        FindingsReport.
    """
    from audit.data import store
    from audit.pipeline import run_all

    samples, embeddings = store.samples_frame(dataset)
    boxes, box_features = store.boxes_frame(dataset)
    coco = {(split, clean): json.loads((world / f"{split}{clean}.json").read_text())
            for split in C.SPLITS for clean in ("", "_clean")}
    images = _image_ids(dataset, world, {s: coco[s, ""] for s in C.SPLITS})
    located = boxes.merge(images, on="sample_id", how="left")
    gt = located[located["source"] == "gt"].merge(_annotation_ids(dataset), on="box_id",
                                                  how="left")
    noise = read_noise(world / "noise.csv")
    conventions = convention_rows(noise, {s: coco[s, ""] for s in C.SPLITS},
                                  {s: coco[s, "_clean"] for s in C.SPLITS})
    noise = pd.concat([noise, conventions], ignore_index=True)
    truth_boxes = box_truth(noise, gt, located[located["source"] == "pred"])
    truth_images = image_truth(noise, images)

    ours = run_all(samples, embeddings, boxes, box_features)
    box_scores, image_scores = _ours_scores(ours.boxes, ours.samples, boxes)
    ours_boxes = ours.boxes.set_index("box_id") if "box_id" in ours.boxes else ours.boxes
    flag_cols = {t: f"is_{col.removesuffix('_score')}_issue" for t, col in OURS_SCORES.items()}
    flags = {t: ours_boxes[c] for t, c in flag_cols.items() if c in ours_boxes}
    peers = {"brain": (lambda: brain_scores(dataset, progress=progress), BRAIN_SCORES),
             "objectlab": (lambda: objectlab_scores(boxes, list(images["sample_id"]),
                                                    progress=progress), OBJECTLAB_SCORES)}
    for name, (run, mapping) in peers.items():
        try:
            result: PeerScores = run()
        except Exception as exc:  # a peer failing is a result, not a crash
            warnings.warn(f"bench findings: {name} failed: {exc!r}", stacklevel=2)
            box_scores[name] = image_scores[name] = f"{type(exc).__name__}: {exc}"
            continue
        box_scores[name] = {t: result.boxes[col] for t, col in mapping.items()
                            if col in result.boxes}
        image_scores[name] = result.samples["image_score"]
    box_table = evaluate_boxes(truth_boxes, box_scores)
    image_table = evaluate_images(truth_images, image_scores)
    return FindingsReport(box_table, image_table, check_targets(box_table, image_table),
                          evaluate_flags(truth_boxes, flags))


def _ours_scores(box_frame: pd.DataFrame, sample_frame: pd.DataFrame, boxes: pd.DataFrame):
    """Box and image scores of ``ours`` (type-specific) and ``ours_max`` (largest box score)."""
    if "box_id" in box_frame.columns:  # run_all returns box ids as a column
        box_frame = box_frame.set_index("box_id")
    score_cols = [c for c in box_frame.columns if c.endswith("_score")]
    overall = box_frame[score_cols].max(axis=1, skipna=True)
    owner = boxes.set_index("box_id")["sample_id"].reindex(overall.index)
    per_image = overall.groupby(owner).max()
    box_scores = {
        "ours": {t: box_frame[col] for t, col in OURS_SCORES.items() if col in box_frame},
        "ours_max": dict.fromkeys(OURS_SCORES, overall),
    }
    image_scores = {"ours": sample_frame["mistakenness_score"],
                    "ours_max": per_image.reindex(sample_frame.index)}
    return box_scores, image_scores


def _image_ids(dataset, world: Path, coco: dict[str, dict]) -> pd.DataFrame:
    """``sample_id``, ``split``, ``image_id`` (COCO id from the world's JSON, by file path)."""
    by_path = {}
    for split, data in coco.items():
        for img in data["images"]:
            by_path[str((world / "images" / img["file_name"]).resolve())] = (split, img["id"])
    ids, paths = dataset.values(["id", "filepath"])
    rows = [(sid, *by_path.get(str(Path(p).resolve()), (None, None)))
            for sid, p in zip(ids, paths, strict=True)]
    frame = pd.DataFrame(rows, columns=["sample_id", "split", "image_id"])
    if frame["image_id"].isna().any():
        bad = frame.loc[frame["image_id"].isna(), "sample_id"].iloc[0]
        raise ValueError(f"bench findings: sample {bad} is not an image of {world}")
    return frame


def _annotation_ids(dataset) -> pd.DataFrame:
    """``box_id`` -> ``ann_id`` (the ``coco_id`` attribute of each ground-truth detection)."""
    ids, coco = dataset.values(["ground_truth.detections.id", "ground_truth.detections.coco_id"])
    flat = [(b, c) for bs, cs in zip(ids, coco, strict=True) for b, c in zip(bs or [], cs or [],
                                                                             strict=True)]
    return pd.DataFrame(flat, columns=["box_id", "ann_id"])


def check_targets(box_table: pd.DataFrame, image_table: pd.DataFrame) -> pd.DataFrame:
    """Whether ours beats both peers per type, reaches merge AUROC and the image-AP factor.

    Returns:
        Frame with ``target``, ``split``, ``holds`` (bool) and ``detail`` (the figures).
    """
    rows = []
    for split, part in box_table.groupby("split", sort=True):
        wide = part.pivot(index="error_type", columns="method", values=["auroc", "ap"])
        for etype in wide.index:
            ours = wide.loc[etype, ("auroc", "ours")], wide.loc[etype, ("ap", "ours")]
            best = [np.nanmax([wide.loc[etype, (m, p)] for p in PEERS] + [-np.inf])
                    for m in ("auroc", "ap")]
            holds = bool(ours[0] > best[0] and ours[1] > best[1])
            rows.append({"target": f"ours ahead on {etype}", "split": split, "holds": holds,
                         "detail": f"auroc {ours[0]:.3f} vs {best[0]:.3f}, "
                                   f"ap {ours[1]:.3f} vs {best[1]:.3f}"})
        merge = part.query("error_type == 'merge' and method == 'ours'")["auroc"]
        value = float(merge.iloc[0]) if len(merge) else float("nan")
        rows.append({"target": f"merge auroc >= {MERGE_AUROC_TARGET}", "split": split,
                     "holds": bool(value >= MERGE_AUROC_TARGET), "detail": f"{value:.3f}"})
    for split, part in image_table.groupby("split", sort=True):
        ap = part.set_index("method")["ap"]
        best = np.nanmax([ap.get(p, np.nan) for p in PEERS] + [-np.inf])
        ours = float(ap.get("ours", np.nan))
        rows.append({"target": f"image ap >= {IMAGE_AP_FACTOR}x best peer", "split": split,
                     "holds": bool(ours >= IMAGE_AP_FACTOR * best),
                     "detail": f"{ours:.3f} vs {IMAGE_AP_FACTOR} x {best:.3f}"})
    return pd.DataFrame(rows, columns=["target", "split", "holds", "detail"])
