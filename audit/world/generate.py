"""The synthetic demo world: images, COCO JSON (noisy and clean), and the list of injected errors.

Planted on purpose: ``easy`` scenes (two large objects) over-represented in train, about 14:1
against 3:1 overall, their val images heavily occluded, so a model fits the easy train images
and fails on their val look-alikes (ten in the default world: enough to test a cluster);
``small`` scenes whose boxes are far smaller than elsewhere; ``shelf`` scenes whose books are
labelled with mixed conventions; ``mixed`` ordinary scenes (4-8 medium objects); and label
errors (drop, flip, shift, spawn, merge) at a given share of boxes, recorded in ``noise.csv``.
Same arguments, same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from audit.world.files import assign_noisy_ids, noise_csv, xywh
from audit.world.noise import (
    CONVENTIONS,
    ERROR_TYPES,
    ErrorRecord,
    ImageLabels,
    LabelBox,
    apply_convention,
    inject_errors,
)
from audit.world.render import render_scene
from audit.world.scene import CLASS_NAMES, SCENE_KINDS, Scene, make_scene

KIND_SHARES = {"easy": 0.25, "small": 0.25, "shelf": 0.2, "mixed": 0.3}  # share of images per kind
VAL_SHARE = 0.25  # share of all images in val (overall train:val about 3:1)
EASY_VAL_RATIO = 15  # easy kind: one val image per this many easy images (about 14:1)
JPEG_QUALITY = 90  # written images' JPEG quality
WORLD_VERSION = 3  # bumped when the same seed draws a different world (COCO info "version")


@dataclass(frozen=True)
class WorldSummary:
    """What ``generate_world`` wrote: counts per scene kind, split, convention and error type."""

    out: Path
    seed: int
    noise_rate: float
    images: Mapping[str, Mapping[str, int]]  # kind -> split -> images
    clean_boxes: Mapping[str, int]  # split -> boxes in <split>_clean.json
    noisy_boxes: Mapping[str, int]  # split -> boxes in <split>.json
    conventions: Mapping[str, int]  # book convention -> shelf images
    errors: Mapping[str, Mapping[str, int]]  # error type -> split -> injected errors

    def __str__(self) -> str:
        rows = [f"demo world in {self.out} (seed {self.seed}, noise rate {self.noise_rate:g})",
                f"{'':<22}{'train':>7}{'val':>7}"]
        for kind, per in self.images.items():
            rows.append(f"{'images ' + kind:<22}{per['train']:>7}{per['val']:>7}")
        for name, per in (("boxes clean", self.clean_boxes), ("boxes noisy", self.noisy_boxes)):
            rows.append(f"{name:<22}{per['train']:>7}{per['val']:>7}")
        for kind, per in self.errors.items():
            rows.append(f"{'errors ' + kind:<22}{per['train']:>7}{per['val']:>7}")
        conv = ", ".join(f"{k} {v}" for k, v in self.conventions.items())
        rows.append(f"shelf book conventions: {conv}")
        return "\n".join(rows)


def _largest_remainder(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Split ``total`` into integer parts proportional to ``shares`` (summing to ``total``)."""
    raw = {k: total * v / sum(shares.values()) for k, v in shares.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: out[k] - raw[k])[: total - sum(out.values())]:
        out[k] += 1
    return out


def plan_images(n_images: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(kind, split) of each image, in image-id order: easy about 14:1, overall about 3:1."""
    per_kind = _largest_remainder(n_images, KIND_SHARES)
    n_val = round(VAL_SHARE * n_images)
    val = {"easy": min(per_kind["easy"] // 2, max(1, round(per_kind["easy"] / EASY_VAL_RATIO)))}
    others = {k: per_kind[k] for k in SCENE_KINDS if k != "easy"}
    val.update(_largest_remainder(max(n_val - val["easy"], 0), others))
    plan = [(k, "val" if i < val[k] else "train") for k in SCENE_KINDS for i in range(per_kind[k])]
    return [plan[i] for i in rng.permutation(len(plan))]


def _clean_labels(scene: Scene, next_id: int) -> list[LabelBox]:
    """One box per object, annotation ids from ``next_id`` on."""
    return [LabelBox(o.label, o.box, (next_id + i,), 0, next_id + i)
            for i, o in enumerate(scene.objects)]


def _build(n_images: int, seed: int, noise_rate: float,
           ) -> tuple[list[Scene], list[ImageLabels], list[ErrorRecord]]:
    """Scenes, clean and noisy labels and error records of the whole world (nothing drawn)."""
    plan = plan_images(n_images, np.random.default_rng([seed, 0]))
    scenes, images, next_id = [], [], 1
    shelf_seen: Counter[str] = Counter()
    for i, (kind, split) in enumerate(plan):
        scene = make_scene(kind, np.random.default_rng([seed, i, 0]),
                           occluded=kind == "easy" and split == "val")
        clean = _clean_labels(scene, next_id)
        next_id += len(clean)
        convention = None
        noisy = list(clean)
        if kind == "shelf":
            convention = CONVENTIONS[shelf_seen[split] % len(CONVENTIONS)]
            shelf_seen[split] += 1
            noisy = apply_convention(clean, scene.runs, convention,
                                     np.random.default_rng([seed, i, 2]))
        scenes.append(scene)
        images.append(ImageLabels(i + 1, split, scene.width, scene.height, convention, clean,
                                  noisy))
    records = inject_errors(images, noise_rate, np.random.default_rng([seed, 1]))
    assign_noisy_ids(images)
    return scenes, images, records


def _coco(images: list[ImageLabels], scenes: list[Scene], split: str, clean: bool) -> dict:
    """The COCO detection dict of one split, clean or noisy labels."""
    img_rows, ann_rows = [], []
    for img, scene in zip(images, scenes, strict=True):
        if img.split != split:
            continue
        row = {"id": img.image_id, "file_name": f"{split}/{img.image_id:06d}.jpg",
               "width": img.width, "height": img.height, "scene": scene.kind}
        if img.convention is not None:
            row["book_convention"] = img.convention
        img_rows.append(row)
        for box in img.clean if clean else img.noisy:
            bbox = xywh(box.box)
            ann_rows.append({"id": box.ann_id, "image_id": img.image_id,
                             "category_id": box.label + 1, "bbox": bbox,
                             "area": round(bbox[2] * bbox[3], 2), "iscrowd": box.iscrowd})
    return {"info": {"version": str(WORLD_VERSION),
                     "description": f"yolo-audit synthetic demo world, {split}, "
                                    f"{'clean' if clean else 'noisy'} labels"},
            "licenses": [], "images": img_rows, "annotations": ann_rows,
            "categories": [{"id": i + 1, "name": n, "supercategory": "object"}
                           for i, n in enumerate(CLASS_NAMES)]}


def _check_args(out: Path, n_images: int, noise_rate: float) -> None:
    """Raise ValueError on arguments ``generate_world`` cannot honour."""
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 4:
        raise ValueError(f"n_images must be an int >= 4, got {n_images!r}")
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(f"noise_rate must be in [0, 1), got {noise_rate!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "train.json").is_file():
        raise ValueError(f"{out}: folder is not empty and holds no demo world; refusing to "
                         "overwrite it")


def current_world(out: Path, *, seed: int, progress: bool = True, **kwargs) -> Path:
    """``out`` itself when it holds a world of this generator version (``WORLD_VERSION``), else
    a world drawn there by :func:`generate_world` with ``seed`` and ``kwargs``; returns ``out``.

    A world written by another version is redrawn: a checkpoint trained on one version's world
    must not be paired silently with another's.
    """
    out = Path(out)
    if world_version(out) != str(WORLD_VERSION):
        generate_world(out, seed=seed, progress=progress, **kwargs)
    return out


def world_version(world: Path) -> str | None:
    """The generator version (``WORLD_VERSION``) a world folder was written by; None when the
    folder holds no readable world or one written before worlds carried a version."""
    world = Path(world)
    if not ((world / "val.json").is_file() and (world / "noise.csv").is_file()):
        return None
    try:
        info = json.loads((world / "train.json").read_text(encoding="utf-8")).get("info") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return str(info["version"]) if info.get("version") is not None else None


def generate_world(out: Path, *, n_images: int = 600, seed: int = 0, noise_rate: float = 0.10,
                   progress: bool = True) -> WorldSummary:
    """Write the synthetic demo world to ``out`` (replacing a previous world there).

    Writes ``images/<split>/<id>.jpg``, ``train.json`` / ``val.json`` (COCO detection, noisy
    labels; bbox ``[x, y, w, h]`` px; images carry ``scene`` and, for shelves,
    ``book_convention``), ``train_clean.json`` / ``val_clean.json`` (same images, true labels, one
    box per book) and ``noise.csv`` (one row per injected error). Deterministic: same arguments,
    same bytes. The world is built in a sibling temporary folder and renamed into place.

    Args:
        out: target folder; must be absent, empty, or a previous demo world.
        n_images: number of images over both splits (>= 4); 600 gives 450 train, 150 val.
        seed: the seed every random choice derives from.
        noise_rate: injected errors per clean box in each split, in [0, 1).
        progress: show a tqdm bar while images are drawn.

    Returns:
        A ``WorldSummary``; ``str()`` of it is a short table of what was written.

    Example:
        >>> summary = generate_world(Path("world"), n_images=40, progress=False)
        >>> summary.images["easy"]["train"] > summary.images["easy"]["val"]
        True
    """
    out = Path(out)
    _check_args(out, n_images, noise_rate)
    scenes, images, records = _build(n_images, seed, noise_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for split in ("train", "val"):
            (tmp / "images" / split).mkdir(parents=True)
        for i, (img, scene) in enumerate(tqdm(list(zip(images, scenes, strict=True)),
                                              desc="drawing demo world", disable=not progress)):
            pic = render_scene(scene, np.random.default_rng([seed, i, 1]))
            pic.save(tmp / "images" / img.split / f"{img.image_id:06d}.jpg", "JPEG",
                     quality=JPEG_QUALITY)
        for split in ("train", "val"):
            for clean, name in ((False, f"{split}.json"), (True, f"{split}_clean.json")):
                text = json.dumps(_coco(images, scenes, split, clean), indent=1)
                (tmp / name).write_text(text + "\n", encoding="utf-8")
        (tmp / "noise.csv").write_text(noise_csv(records, CLASS_NAMES), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _summary(out, seed, noise_rate, scenes, images, records)


def _summary(out: Path, seed: int, noise_rate: float, scenes: list[Scene],
             images: list[ImageLabels], records: list[ErrorRecord]) -> WorldSummary:
    """Count what was written."""
    kinds = {k: {s: sum(1 for sc, im in zip(scenes, images, strict=True)
                        if sc.kind == k and im.split == s) for s in ("train", "val")}
             for k in SCENE_KINDS}
    per = {s: [im for im in images if im.split == s] for s in ("train", "val")}
    errors = {t: {s: sum(1 for r in records if r.error_type == t and r.split == s)
                  for s in ("train", "val")} for t in ERROR_TYPES}
    conventions = Counter(im.convention for im in images if im.convention is not None)
    return WorldSummary(out, seed, noise_rate, kinds,
                        {s: sum(len(im.clean) for im in v) for s, v in per.items()},
                        {s: sum(len(im.noisy) for im in v) for s, v in per.items()},
                        {c: conventions[c] for c in CONVENTIONS}, errors)
