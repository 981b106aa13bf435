"""Writing a world folder: images, noisy and clean COCO files per split, ``noise.csv``.

Every world the repo builds (the synthetic demo, scikit-image's shapes, the real tree crowns)
lays out the same files, so the benchmark, the training script and ``ingest`` read each alike:
``images/<split>/<id>.<ext>``, ``<split>.json`` (noisy labels), ``<split>_clean.json`` (true
labels), ``noise.csv`` (one row per injected error). Written in a sibling temporary folder and
renamed into place, so a world is whole or absent.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from audit import constants as C
from audit.world.noise import ErrorRecord, ImageLabels, LabelBox

CSV_COLUMNS = (  # noise.csv columns, one row per injected error
    "split", "image_id", "annotation_ids", "clean_annotation_ids", "error_type", "clean_bbox",
    "clean_label", "noisy_bbox", "noisy_label")


def xywh(box: tuple[float, float, float, float]) -> list[float]:
    """xyxy px to COCO [x, y, w, h] px, rounded to 0.01 px."""
    return [round(box[0], 2), round(box[1], 2), round(box[2] - box[0], 2),
            round(box[3] - box[1], 2)]



def _fmt_boxes(boxes: list[LabelBox]) -> str:
    """Boxes as ';'-joined "x y w h" strings."""
    return ";".join(" ".join(f"{v:g}" for v in xywh(b.box)) for b in boxes)


def noise_csv(records: list[ErrorRecord], class_names: Sequence[str]) -> str:
    """noise.csv text: one row per injected error, columns ``CSV_COLUMNS``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted(records, key=lambda r: (r.split, r.image_id)):
        writer.writerow([
            r.split, r.image_id, ";".join(str(b.ann_id) for b in r.noisy),
            ";".join(str(c) for b in r.clean for c in b.clean_ids), r.error_type,
            _fmt_boxes(r.clean), class_names[r.clean[0].label] if r.clean else "",
            _fmt_boxes(r.noisy), class_names[r.noisy[0].label] if r.noisy else ""])
    return buf.getvalue()


def assign_noisy_ids(labels: Sequence[ImageLabels]) -> None:
    """Give each noisy box an annotation id: a single-object box keeps its clean id, a merged
    box gets a new one after the largest clean id."""
    next_id = 1 + max((b.ann_id for img in labels for b in img.clean), default=0)
    for img in labels:
        for box in img.noisy:
            if len(box.clean_ids) == 1:
                box.ann_id = box.clean_ids[0]
            else:
                box.ann_id, next_id = next_id, next_id + 1


def coco_split(labels: Sequence[ImageLabels], extra: Sequence[dict], split: str, clean: bool, *,
               class_names: Sequence[str], version: str, description: str,
               suffix: str) -> dict:
    """The COCO detection dict of one split; ``extra[i]`` adds fields to image ``i``'s row."""
    images, anns = [], []
    for img, more in zip(labels, extra, strict=True):
        if img.split != split:
            continue
        images.append({"id": img.image_id, "file_name": f"{split}/{img.image_id:06d}{suffix}",
                       "width": img.width, "height": img.height, **more})
        for box in img.clean if clean else img.noisy:
            bbox = xywh(box.box)
            anns.append({"id": box.ann_id, "image_id": img.image_id,
                         "category_id": box.label + 1, "bbox": bbox,
                         "area": round(bbox[2] * bbox[3], 2), "iscrowd": box.iscrowd})
    return {"info": {"version": version, "description": f"{description}, {split}, "
                     f"{'clean' if clean else 'noisy'} labels"},
            "licenses": [], "images": images, "annotations": anns,
            "categories": [{"id": i + 1, "name": n, "supercategory": "object"}
                           for i, n in enumerate(class_names)]}


def write_world(out: Path, labels: Sequence[ImageLabels], pictures: Sequence[Image.Image],
                extra: Sequence[dict], records: list[ErrorRecord], *,
                class_names: Sequence[str], version: str, description: str,
                image_format: str = "PNG", progress: bool = True) -> None:
    """Write a whole world to ``out`` (replacing a previous world there), atomically."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "train.json").is_file():
        raise ValueError(f"{out}: folder is not empty and holds no world; refusing to overwrite it")
    suffix = ".png" if image_format == "PNG" else ".jpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for split in C.SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
        for img, pic in tqdm(list(zip(labels, pictures, strict=True)),
                             desc=f"writing {out.name}", disable=not progress):
            pic.save(tmp / "images" / img.split / f"{img.image_id:06d}{suffix}", image_format)
        for split in C.SPLITS:
            for clean, name in ((False, f"{split}.json"), (True, f"{split}_clean.json")):
                data = coco_split(labels, extra, split, clean, class_names=class_names,
                                  version=version, description=description, suffix=suffix)
                (tmp / name).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        (tmp / "noise.csv").write_text(noise_csv(records, class_names), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def world_info_version(world: str | Path) -> str | None:
    """The ``info.version`` of a world folder's ``train.json``; None when it holds no world."""
    try:
        info = json.loads((Path(world) / "train.json").read_text(encoding="utf-8")).get("info")
        return str(info.get("version")) if (Path(world) / "noise.csv").is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


def error_counts(labels: Sequence[ImageLabels], records: Sequence[ErrorRecord],
                 error_types: Sequence[str]) -> tuple[dict, dict, dict]:
    """(images per split, clean boxes per split, errors per type and split)."""
    per = {s: [i for i in labels if i.split == s] for s in C.SPLITS}
    return ({s: len(v) for s, v in per.items()},
            {s: sum(len(i.clean) for i in v) for s, v in per.items()},
            {t: {s: sum(r.error_type == t and r.split == s for r in records) for s in C.SPLITS}
             for t in error_types})


@dataclass(frozen=True)
class WorldSummary:
    """What a world generator wrote: images, clean boxes and injected errors per split."""

    title: str
    out: Path
    images: dict[str, int]  # split -> images
    clean_boxes: dict[str, int]  # split -> boxes
    errors: dict[str, dict[str, int]]  # error type -> split -> injected

    def __str__(self) -> str:
        rows = [f"{self.title} in {self.out}", f"{'':<16}{'train':>7}{'val':>7}",
                f"{'images':<16}{self.images['train']:>7}{self.images['val']:>7}",
                f"{'boxes clean':<16}{self.clean_boxes['train']:>7}{self.clean_boxes['val']:>7}"]
        rows += [f"{'errors ' + t:<16}{v['train']:>7}{v['val']:>7}" for t, v in self.errors.items()]
        return "\n".join(rows)
