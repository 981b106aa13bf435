"""Training the demo YOLO11 checkpoint on a demo world, offline, from scratch, on CPU.

The world's COCO files are converted to an ultralytics YOLO layout in a temporary folder
(``images/<split>``, ``labels/<split>`` with normalised ``class cx cy w h`` lines, ``data.yaml``);
class ``i`` is the i-th COCO category in id order, so the checkpoint's names equal the COCO names.
Train uses the noisy ``train.json`` (what a user would have); crowd boxes (``iscrowd=1``) are left
out, as ultralytics' own COCO converter does. Validation uses ``val.json`` and, when present, the
clean ``val_clean.json`` as well.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

SPLIT_FILES = {"train": "train.json", "val": "val.json", "val_clean": "val_clean.json"}


def _read_coco(path: Path) -> dict:
    """Load and minimally validate one COCO detection file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such COCO file (is this a demo world folder?)")
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: expected a list under {key!r}, got {type(data.get(key))}")
    return data


def _write_split(data: dict, coco_path: Path, image_root: Path, root: Path, split: str,
                 class_of: dict[int, int]) -> int:
    """Copy one split's images and write its YOLO label files; returns the number of boxes."""
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    lines: dict[int, list[str]] = {img["id"]: [] for img in data["images"]}
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        if ann["image_id"] not in sizes or ann["category_id"] not in class_of:
            raise ValueError(f"{coco_path}: annotation {ann.get('id')} names an unknown image "
                             f"or category")
        (w, h), (x, y, bw, bh) = sizes[ann["image_id"]], ann["bbox"]
        lines[ann["image_id"]].append(
            f"{class_of[ann['category_id']]} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} "
            f"{bw / w:.6f} {bh / h:.6f}")
    for img in data["images"]:
        src = image_root / img["file_name"]
        if not src.is_file():
            raise FileNotFoundError(f"{coco_path}: image {img['id']} file {src} is missing")
        stem = f"{img['id']:06d}"
        shutil.copyfile(src, root / "images" / split / f"{stem}{src.suffix}")
        (root / "labels" / split / f"{stem}.txt").write_text(
            "\n".join(lines[img["id"]]) + ("\n" if lines[img["id"]] else ""), encoding="utf-8")
    return sum(len(v) for v in lines.values())


def coco_world_to_yolo(world_dir: Path, root: Path) -> tuple[Path, list[str]]:
    """Write the YOLO layout of a demo world under ``root``; returns (data.yaml, class names).

    Args:
        world_dir: a folder written by ``generate_world`` (``train.json``, ``val.json``,
            optionally ``val_clean.json``, ``images/``).
        root: an empty folder to write ``images/``, ``labels/`` and ``data.yaml`` into.
    """
    world_dir, root = Path(world_dir), Path(root)
    train = _read_coco(world_dir / SPLIT_FILES["train"])
    categories = sorted(train["categories"], key=lambda c: c["id"])
    class_of = {c["id"]: i for i, c in enumerate(categories)}
    names = [c["name"] for c in categories]
    splits = {}
    for split, name in SPLIT_FILES.items():
        path = world_dir / name
        if split == "val_clean" and not path.is_file():
            continue
        data = train if split == "train" else _read_coco(path)
        if sorted(c["name"] for c in data["categories"]) != sorted(names):
            raise ValueError(f"{path}: categories differ from those of train.json")
        _write_split(data, path, world_dir / "images", root, split, class_of)
        splits[split] = str(root / "images" / split)  # absolute: val_clean is not resolved
    data_yaml = root / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"path": str(root), **splits,
                                         "names": dict(enumerate(names))}), encoding="utf-8")
    return data_yaml, names


def _ensure_font() -> None:
    """Copy matplotlib's DejaVuSans.ttf to ultralytics' Arial.ttf so nothing is downloaded."""
    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    target = Path(USER_CONFIG_DIR) / "Arial.ttf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        shutil.copyfile(src, target)


def _thread_setter(threads: int):
    """Callback: ultralytics sets torch to cpu_count-1 threads; set ``threads`` instead."""

    def use_threads(trainer: Any) -> None:
        import torch

        torch.set_num_threads(threads)

    return use_threads


def _evaluate(weights: Path, data_yaml: Path, split: str, imgsz: int, batch: int,
              names: list[str], progress: bool) -> dict[str, Any]:
    """mAP50, mAP50-95 and per-class mAP50 of ``weights`` on one split of ``data_yaml``."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(data=str(data_yaml), split=split, imgsz=imgsz, batch=batch,
                                     device="cpu", workers=0, plots=False, verbose=progress)
    per_class = {names[int(c)]: round(float(ap), 4)
                 for c, ap in zip(metrics.box.ap_class_index, metrics.box.ap50, strict=True)}
    return {"map50": round(float(metrics.box.map50), 4),
            "map50_95": round(float(metrics.box.map), 4), "per_class_map50": per_class}


def _save_portable(src: Path, out_pt: Path) -> None:
    """Copy a stripped checkpoint to ``out_pt`` atomically, without the machine's paths in it."""
    import torch
    from ultralytics.utils.patches import torch_load

    ckpt = torch_load(src, map_location="cpu")
    for args in (ckpt.get("train_args") or {}, getattr(ckpt.get("model"), "args", None) or {}):
        for key, value in list(args.items()):
            if isinstance(value, str) and os.path.isabs(value):
                args[key] = Path(value).name
    ckpt.pop("git", None)
    out_pt.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_pt.name}-", dir=out_pt.parent)
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, out_pt)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def train_demo_checkpoint(world_dir: Path, out_pt: Path, *, epochs: int = 40, imgsz: int = 320,
                          batch: int = 16, threads: int = 2, val_every_epoch: bool = False,
                          progress: bool = True, **hyp: Any) -> dict:
    """Train yolo11n from scratch on a demo world and write the best checkpoint to ``out_pt``.

    Offline (``YOLO("yolo11n.yaml")``, no download), on CPU with two torch threads, no plots.
    The checkpoint's class names equal the world's COCO category names in id order.

    Args:
        world_dir: folder written by ``generate_world``.
        out_pt: where the stripped ``best.pt`` goes (written to a temporary file, then renamed).
        epochs: training epochs (>= 1).
        imgsz: training and validation image size (letterboxed square side, px).
        batch: images per batch.
        threads: torch CPU threads (2 suits a quiet 2-core machine; 1 a busy one).
        val_every_epoch: validate after every epoch (slow on CPU: early epochs predict up to
            max_det boxes per image); otherwise only the final epoch is validated.
        progress: let ultralytics print its per-epoch progress.
        hyp: further ultralytics training arguments (e.g. ``nbs=16`` so a tiny world takes one
            optimizer step per batch, ``flipud=0.5`` for aerial images).

    Returns:
        ``{"map50", "map50_95", "epochs", "seconds", "per_class_map50"}`` measured on ``val.json``
        (noisy val labels; higher is better), plus ``clean_map50``, ``clean_map50_95`` and
        ``clean_per_class_map50`` on ``val_clean.json`` when the world has it.

    Example:
        >>> metrics = train_demo_checkpoint(Path("world"), Path("demo.pt"), epochs=1)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if imgsz < 32 or batch < 1:
        raise ValueError(f"imgsz must be >= 32 and batch >= 1, got {imgsz!r} and {batch!r}")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    _ensure_font()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="demo-yolo-") as tmp:
        data_yaml, names = coco_world_to_yolo(Path(world_dir), Path(tmp) / "data")
        model = YOLO("yolo11n.yaml")
        model.add_callback("on_pretrain_routine_end", _thread_setter(threads))
        start = time.perf_counter()
        model.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu",
                    workers=0, plots=False, project=str(Path(tmp) / "runs"), name="train",
                    exist_ok=True, seed=0, deterministic=True, verbose=progress, amp=False,
                    val=val_every_epoch, **hyp)
        seconds = time.perf_counter() - start
        best = Path(model.trainer.save_dir) / "weights" / "best.pt"
        if not best.is_file():
            best = Path(model.trainer.save_dir) / "weights" / "last.pt"
        result: dict[str, Any] = {"epochs": epochs, "seconds": round(seconds, 1), "imgsz": imgsz,
                                  "batch": batch, **hyp}
        result.update(_evaluate(best, data_yaml, "val", imgsz, batch, names, progress))
        if (Path(world_dir) / SPLIT_FILES["val_clean"]).is_file():
            clean = _evaluate(best, data_yaml, "val_clean", imgsz, batch, names, progress)
            result.update({f"clean_{k}": v for k, v in clean.items()})
        _save_portable(best, Path(out_pt))
    return result
