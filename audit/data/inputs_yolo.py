"""Reading and validating an ultralytics dataset: data.yaml, image folders, ``labels/*.txt``.

The same checks and error style as the COCO reader in :mod:`audit.data.inputs` (every problem
names the file and line, all raised together).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import yaml

from audit import constants as C
from audit.data.images import image_size
from audit.data.inputs import CocoSplit, Problems, build_record, check_box, is_id

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # images in folders


def _yaml_names(data: dict, name: str) -> tuple[str, ...]:
    """Class names from a data.yaml ``names`` (list, or dict index -> name)."""
    names = data.get("names")
    if isinstance(names, dict) and all(is_id(k) for k in names):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise ValueError(f"{name}: names keys must be 0..{len(keys) - 1}, got {keys}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{name}: 'names' must be a list or an index -> name mapping")
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: duplicate class names in 'names'")
    return tuple(names)


def _yaml_image_paths(entry: str | list[str], root: Path, name: str) -> list[Path]:
    """Image files of one data.yaml split entry (folders, .txt lists, or files), absolute but
    as listed: a symlinked image keeps its own path, where its label file is looked for."""
    paths: list[Path] = []
    for item in [entry] if isinstance(entry, str) else entry:
        p = Path(item) if Path(item).is_absolute() else root / item
        if p.is_dir():
            paths += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix == ".txt" and p.is_file():
            lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
            paths += [Path(ln) if Path(ln).is_absolute() else root / ln for ln in lines]
        elif p.is_file():
            paths.append(p)
        else:
            raise ValueError(f"{name}: split entry {item!r}: no such folder or file under {root}")
    return [Path(os.path.abspath(p)) for p in paths]


def _label_path(image: Path) -> Path:
    """ultralytics' convention: the last ``images`` folder becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    idx = max((i for i, part in enumerate(parts) if part == "images"), default=None)
    if idx is None:
        return image.with_suffix(".txt")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_rows(label: Path, names: tuple[str, ...], width: int, height: int,
               problems: Problems) -> list[tuple[list[float], str, bool, int]]:
    """Parse one YOLO label file: ``cls cx cy w h`` normalised (polygons give their bbox)."""
    rows = []
    for lineno, line in enumerate(label.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        rec = f"{label.name} line {lineno}"
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            problems.add(f"{rec}: {line.strip()!r} is not numbers 'cls cx cy w h'")
            continue
        cls = values[0]
        if not cls.is_integer() or not 0 <= cls < len(names):
            problems.add(f"{rec}: class {values[0]:g} not in 0..{len(names) - 1}")
            continue
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            xyxy = [(cx - w / 2) * width, (cy - h / 2) * height,
                    (cx + w / 2) * width, (cy + h / 2) * height]
        elif len(values) >= 7 and len(values) % 2 == 1:  # polygon: cls x1 y1 x2 y2 ...
            xs, ys = np.array(values[1::2]) * width, np.array(values[2::2]) * height
            xyxy = [xs.min(), ys.min(), xs.max(), ys.max()]
        else:
            problems.add(f"{rec}: expected 'cls cx cy w h', got {len(values)} values")
            continue
        why = check_box([float(v) for v in xyxy], width, height)
        if why is not None:
            problems.add(f"{rec}: box {values[1:5]} {why}")
            continue
        rows.append(([float(v) for v in xyxy], names[int(cls)], False, lineno))
    return rows


def read_data_yaml(path: str | Path) -> list[CocoSplit]:
    """Read and validate an ultralytics dataset: data.yaml + images + ``labels/*.txt``.

    Args:
        path: data.yaml with ``names`` and ``train`` / ``val`` (folders, .txt image lists or
            lists of either), relative to its ``path`` key (itself relative to the yaml's folder)
            or to the yaml's folder. A missing label file means an image without objects.
            Label files are found from each image's path as listed (``images`` -> ``labels``),
            as ultralytics finds them, also when the image is a symlink (the auditor's own
            YOLO export); the sample's filepath is the file the link points to.

    Returns:
        One :class:`CocoSplit` per split present (``train``, ``val``), boxes as absolute ``xyxy``.

    Raises:
        ValueError: every problem found (up to ``MAX_PROBLEMS``), each naming file and line.

    Example:
        >>> splits = read_data_yaml("datasets/world/data.yaml")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path.name}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a mapping with names, train, val")
    names = _yaml_names(data, path.name)
    root = path.parent / data["path"] if data.get("path") else path.parent
    if not any(data.get(s) for s in C.SPLITS):
        raise ValueError(f"{path.name}: no 'train' or 'val' entry")
    if data.get("test"):
        warnings.warn(f"{path.name}: the 'test' split is ignored", stacklevel=2)
    problems = Problems(path.name)
    splits = []
    for split in (s for s in C.SPLITS if data.get(s)):
        records = []
        for image in _yaml_image_paths(data[split], root, path.name):
            rec = f"{path.name}: {split} image {image.name}"
            try:
                width, height = image_size(image)
            except (ValueError, FileNotFoundError) as exc:
                problems.add(f"{rec}: {exc}")
                continue
            label = _label_path(image)  # next to the image as listed, as ultralytics looks
            rows = _yolo_rows(label, names, width, height, problems) if label.is_file() else []
            records.append(build_record(image.resolve(), width, height, rec, rows))
        splits.append(CocoSplit(split, path.resolve(), names, tuple(records)))
    problems.raise_if_any()
    return splits

