"""Finding-power benchmark: this auditor vs FiftyOne Brain vs cleanlab ObjectLab on the demo world.

The demo world's ``noise.csv`` is the truth (see :mod:`benchmarks.truth`). The world is
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
every type: the scores are calibrated probabilities, :mod:`audit.calibration`), and images by
their largest box score; ``ours_evidence`` ranks by each issue's evidence before calibration.
Boxes a method leaves unscored (NaN) rank below all scored ones. A peer that raises is reported
as NaN with the exception as the reason.
Boxes set by a shelf's book convention (group boxes, books left unlabelled) are neither errors
nor clean labels and take no part in the box-level evaluation
(:func:`benchmarks.truth.convention_rows`).

Targets printed with the tables: ours ahead of both peers (AUROC and AP) on every type and
split, merge AUROC >= 0.90, image AP >= 1.3x the better peer's.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audit import constants as C
from benchmarks.metrics import evaluate_boxes, evaluate_flags, evaluate_images
from benchmarks.peers import PeerScores, brain_scores, objectlab_scores
from benchmarks.tables import check_out, write_tables
from benchmarks.truth import box_truth, convention_rows, image_truth, read_noise
from benchmarks.worlds import DEMO_SIZES as SIZES
from benchmarks.worlds import WORLD_NAMES, BenchWorld, bench_world

CLEAN_FLAG_TARGET = 0.05  # share of val images with nothing planted that ours may flag
FLAG_ISSUES = ("wrong_class", "bad_box", "spurious", "missing", "group_box")  # box-issue flags
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
        clean: ours only, one row per split: images with nothing planted (no injected error,
            no book convention) and the share of them carrying a box-issue flag (false alarms).
        world: the world's name.
    """

    boxes: pd.DataFrame
    images: pd.DataFrame
    targets: pd.DataFrame
    flags: pd.DataFrame
    clean: pd.DataFrame = field(default_factory=pd.DataFrame)
    world: str = "demo"

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
            self.flags.set_index(["split", "error_type"]).to_string(**fmt),
            "Images with nothing planted that ours flags (false alarms)",
            self.clean.to_string(index=False, **fmt), "Targets",
            self.targets.to_string(index=False)])


def bench_findings(size: str = "full", out: str | Path | None = None, *, seed: int = C.SEED,
                   world: str = "demo", progress: bool = True,
                   echo: bool = True) -> FindingsReport | dict[str, FindingsReport]:
    """Run the finding-power benchmark on one world (or every world) and report the tables.

    Args:
        size: "small" (40-image demo worlds, for tests) or "full" (the default demo world); the
            tree world has one size.
        world: "demo", "clean", "trees" (:mod:`benchmarks.worlds`) or "all" (each in turn, in
            this one run; the tables of each world are printed under its name, and ``out``
            gets a ``world`` column).
        out: also write the tables here: ``.json`` (all four tables) or ``.csv`` (one long table
            with a ``level`` column).
        seed: seed of the world. The demo's (``C.SEED``) is the world the demo checkpoint was
            trained on; any other draws a world it never saw (both splits unseen), a held-out
            check of settings chosen on the demo world.
        progress: show progress bars.
        echo: print the tables (this is a command-line report).

    Returns:
        FindingsReport with the box, image and target tables; for "all", one per world name.

    Raises:
        ValueError: unknown size or output suffix; the demo checkpoint is missing.

    Example:
        >>> report = bench_findings("small", echo=False)  # doctest: +SKIP
        >>> report.boxes.query("method == 'ours' and error_type == 'merge'")  # doctest: +SKIP
    """
    if size not in SIZES:
        raise ValueError(f"bench findings: size must be one of {tuple(SIZES)}, got {size!r}")
    if world not in (*WORLD_NAMES, "all"):
        raise ValueError(f"bench findings: unknown world {world!r}; expected one of "
                         f"{(*WORLD_NAMES, 'all')}")
    check_out(out, "findings")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"bench findings: seed must be an int >= 0, got {seed!r}")
    names = WORLD_NAMES if world == "all" else (world,)
    reports = {}
    for name in names:
        bw = bench_world(name, size, seed, progress=progress)
        report = score_world(_dataset(bw, progress=progress), bw.folder, progress=progress)
        reports[name] = report = FindingsReport(report.boxes, report.images, report.targets,
                                                report.flags, report.clean, name)
        if echo:
            print(f"=== world: {name} ({bw.folder.name}, checkpoint {bw.checkpoint.name}, "
                  f"imgsz {bw.imgsz}) ===\n{report.text()}\n", flush=True)
    if out is not None:
        tables = {}
        for key in ("boxes", "images", "flags", "clean", "targets"):
            tables[key] = pd.concat([getattr(r, key).assign(world=n) for n, r in reports.items()],
                                    ignore_index=True)
        write_tables(out, tables)
    return reports if world == "all" else reports[world]


def _dataset(world: BenchWorld, *, progress: bool):
    """The benchmark's FiftyOne dataset, ingested once per (world, checkpoint)."""
    import fiftyone as fo

    from audit.data.ingest import ingest

    if not world.checkpoint.is_file():
        raise ValueError(f"bench findings: checkpoint {world.checkpoint} not found; train it "
                         "with `python -m audit train-demo --world ...`")
    folder = world.folder
    name = f"yolo-audit-bench-{folder.name.removeprefix('world-')}"
    stamp = {"world": str(folder), "checkpoint": str(world.checkpoint),
             "checkpoint_mtime": world.checkpoint.stat().st_mtime, "imgsz": world.imgsz,
             "ingest_version": C.INGEST_VERSION}
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if ds.info.get("bench") == stamp:
            return ds
        ds.delete()
    ds = ingest(name, images=folder / "images", train_json=folder / "train.json",
                val_json=folder / "val.json", model=world.checkpoint, imgsz=world.imgsz,
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

    ours = run_all(samples, embeddings, boxes, box_features, probes=store.probes_frame(dataset))
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
        if "image_score_sum" in result.samples:  # Brain's per-image fields summed
            image_scores[f"{name}_sum"] = result.samples["image_score_sum"]
    box_table = evaluate_boxes(truth_boxes, box_scores)
    image_table = evaluate_images(truth_images, image_scores)
    clean = clean_image_flags(noise, images, ours_boxes)
    targets = pd.concat([check_targets(box_table, image_table), _clean_target(clean)],
                        ignore_index=True)
    return FindingsReport(box_table, image_table, targets, evaluate_flags(truth_boxes, flags),
                          clean)


def clean_image_flags(noise: pd.DataFrame, images: pd.DataFrame,
                      ours_boxes: pd.DataFrame) -> pd.DataFrame:
    """Per split: images with nothing planted (no error row, no convention row) and the share
    of them on which ours raises at least one box-issue flag (``FLAG_ISSUES``)."""
    planted = set(zip(noise["split"], noise["image_id"].astype(int), strict=True))
    cols = [f"is_{i}_issue" for i in FLAG_ISSUES if f"is_{i}_issue" in ours_boxes]
    hit = ours_boxes[cols].fillna(False).astype(bool).any(axis=1)
    flagged = set(ours_boxes.loc[hit.to_numpy(), "sample_id"].astype(str))
    rows = []
    for split, part in images.groupby("split", sort=True):
        keep = [(split, int(i)) not in planted for i in part["image_id"]]
        ids = part.loc[keep, "sample_id"].astype(str)
        n_flag = int(ids.isin(flagged).sum())
        rows.append({"split": split, "n_clean_images": len(ids), "n_flagged": n_flag,
                     "share_flagged": n_flag / len(ids) if len(ids) else np.nan})
    return pd.DataFrame(rows, columns=["split", "n_clean_images", "n_flagged", "share_flagged"])


def _clean_target(clean: pd.DataFrame) -> pd.DataFrame:
    """The false-alarm target on val: at most ``CLEAN_FLAG_TARGET`` of clean images flagged."""
    rows = [{"target": f"clean images flagged <= {CLEAN_FLAG_TARGET:.0%}", "split": r.split,
             "holds": bool(r.share_flagged <= CLEAN_FLAG_TARGET),
             "detail": f"{r.n_flagged} of {r.n_clean_images} ({r.share_flagged:.1%})"}
            for r in clean.itertuples() if r.split == "val" and r.n_clean_images]
    return pd.DataFrame(rows, columns=["target", "split", "holds", "detail"])


def _ours_scores(box_frame: pd.DataFrame, sample_frame: pd.DataFrame, boxes: pd.DataFrame):
    """Box and image scores of ``ours`` (type-specific) and ``ours_max`` (largest box score)."""
    if "box_id" in box_frame.columns:  # run_all returns box ids as a column
        box_frame = box_frame.set_index("box_id")
    score_cols = [c for c in box_frame.columns if c.endswith("_score")]  # calibrated: one scale
    overall = box_frame[score_cols].max(axis=1, skipna=True)
    owner = boxes.set_index("box_id")["sample_id"].reindex(overall.index)
    per_image = overall.groupby(owner).max()
    evidence = {t: box_frame[col.replace("_score", "_evidence")] for t, col in OURS_SCORES.items()
                if col.replace("_score", "_evidence") in box_frame}
    box_scores = {
        "ours": {t: box_frame[col] for t, col in OURS_SCORES.items() if col in box_frame},
        "ours_max": dict.fromkeys(OURS_SCORES, overall),
        # the raw evidence before calibration (group_box has none: it is not calibrated)
        "ours_evidence": evidence | {t: box_frame[c] for t, c in OURS_SCORES.items()
                                     if t not in evidence and c in box_frame},
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
            if part.query("error_type == @etype")["n_pos"].max() == 0:
                continue  # nothing of this type in this world (no flips with one class)
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
        peers = [m for m in ap.index if not str(m).startswith("ours")]
        best = np.nanmax([ap.get(p, np.nan) for p in peers] + [-np.inf])
        ours = float(ap.get("ours", np.nan))
        rows.append({"target": f"image ap >= {IMAGE_AP_FACTOR}x best peer", "split": split,
                     "holds": bool(ours >= IMAGE_AP_FACTOR * best),
                     "detail": f"{ours:.3f} vs {IMAGE_AP_FACTOR} x {best:.3f}"})
    return pd.DataFrame(rows, columns=["target", "split", "holds", "detail"])
