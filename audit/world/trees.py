"""A real-data world: human-annotated aerial images of tree crowns, tiled, split in space, with
label errors injected by the demo world's protocol.

The source is the image data that the PyPI package ``deepforest`` ships inside its wheel
(``deepforest/data/``: NEON aerial RGB crops with Pascal VOC boxes drawn by people). Nothing of
deepforest is imported or run: the wheel is read as a zip (or an installed copy's ``data/`` folder
is read as files), so its dependencies are never needed. :func:`locate_source` finds it.

The world:

* each annotated source image is cut into a grid of disjoint tiles of about ``TILE`` px (equal
  widths and heights per image, covering it whole); a box belongs to the tile holding at least
  ``KEEP_INSIDE`` of its area, clipped to it, and to no other;
* split in space: the rightmost ``VAL_COLUMNS`` tile column(s) of each large image, and the whole
  of each ``VAL_IMAGES`` image, are val; the rest is train. No val pixel is in a train tile;
* one class (``tree``: the source's ``Tree`` / ``Alive`` / ``Dead`` crowns), so no flip can be
  injected; drop, shift, spawn and merge go in at ``noise_rate`` of each split's boxes by
  :func:`audit.world.noise.inject_errors`, recorded in ``noise.csv`` like the demo world's.

Files written are those of the demo world (``images/<split>/``, ``<split>.json``,
``<split>_clean.json``, ``noise.csv``), so the findings benchmark, the checkpoint training script
and ``python -m audit ingest`` read it unchanged. Same source, same arguments: same bytes.
"""

from __future__ import annotations

import io
import sys
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image

from audit import constants as C
from audit.world.files import (
    WorldSummary,
    assign_noisy_ids,
    error_counts,
    world_info_version,
    write_world,
)
from audit.world.noise import ErrorRecord, ImageLabels, LabelBox, inject_errors

DEEPFOREST_WHEEL = "deepforest-2.1.0-py3-none-any.whl"  # the release whose data this was built on
DATA_PREFIX = "deepforest/data/"  # where the wheel keeps its annotated images
# annotated source images (Pascal VOC .xml beside each .png) taken from the wheel, in this order
SOURCES = ("2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop",
           "OSBS_029", "SOAP_061")
VAL_IMAGES = ("OSBS_029",)  # whole source images given to val (another NEON site than YELL)
VAL_COLUMNS = 1  # rightmost tile columns of each larger source image given to val
TILE = 400  # about this many px per tile side (trees are 10-80 px across)
KEEP_INSIDE = 0.5  # a box goes to the tile holding at least this share of its area
TREE_CLASSES = ("tree",)  # every crown is one class
TREE_ERRORS = ("drop", "shift", "spawn", "merge")  # flip needs two classes
TREE_NOISE_RATE = 0.08  # share of each split's boxes given an error (~20 val errors)
TREES_VERSION = 1  # bumped when the same source and arguments write a different world


@dataclass(frozen=True)
class Tile:
    """One tile: where it comes from (source name, xyxy px in the source) and its split."""

    source: str
    window: tuple[int, int, int, int]
    split: str


def locate_source(source: str | Path | None = None) -> Path:
    """The deepforest wheel (or an unpacked ``deepforest`` package folder) to read images from.

    Looked for in this order: ``source`` itself; an installed ``deepforest`` package (found
    without importing it); ``<venv>/share/yolo-audit/`` (where ``make setup`` downloads the
    wheel); ``<AUDIT_HOME>/sources/``.

    Raises:
        ValueError: nothing found, saying how to fetch the wheel without its dependencies.
    """
    if source is not None:
        path = Path(source)
        if not path.exists():
            raise ValueError(f"{path}: no such deepforest wheel or folder")
        return path
    spec = find_spec("deepforest")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        if (folder / "data").is_dir():
            return folder
    for folder in (Path(sys.prefix) / "share" / "yolo-audit", C.AUDIT_HOME / "sources"):
        wheels = sorted(folder.glob("deepforest-*.whl"))
        if wheels:
            return wheels[-1]
    raise ValueError(
        "the tree world needs the deepforest wheel's annotated images; fetch the wheel without "
        f"its dependencies: `pip download --no-deps deepforest==2.1.0 -d {C.AUDIT_HOME}/sources`"
        " (or pass --source PATH)")


def _reader(source: Path):
    """``read(name) -> bytes`` for a file under ``deepforest/data/`` of a wheel or a folder."""
    if source.is_file():
        archive = zipfile.ZipFile(source)

        def read(name: str) -> bytes:
            try:
                return archive.read(DATA_PREFIX + name)
            except KeyError:
                raise ValueError(f"{source}: holds no {DATA_PREFIX}{name}") from None

        return read
    folder = source / "data" if (source / "data").is_dir() else source

    def read_file(name: str) -> bytes:
        if not (folder / name).is_file():
            raise ValueError(f"{folder}: holds no {name}")
        return (folder / name).read_bytes()

    return read_file


def read_voc(text: bytes, where: str) -> list[tuple[float, float, float, float]]:
    """Boxes (absolute px xyxy) of a Pascal VOC annotation; ValueError naming the object."""
    root = ET.fromstring(text)
    out = []
    for i, obj in enumerate(root.findall("object")):
        try:
            b = obj.find("bndbox")
            box = tuple(float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"{where}: object {i} has no readable bndbox") from None
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{where}: object {i} has an empty box {box}")
        out.append(box)
    return out


def plan_tiles(name: str, width: int, height: int) -> list[Tile]:
    """Disjoint tiles of about ``TILE`` px covering a ``width`` x ``height`` image, with splits.

    Example:
        >>> [t.split for t in plan_tiles("x", 800, 400)]
        ['train', 'val']
    """
    cols, rows = max(1, round(width / TILE)), max(1, round(height / TILE))
    xs = np.linspace(0, width, cols + 1).round().astype(int)
    ys = np.linspace(0, height, rows + 1).round().astype(int)
    tiles = []
    for r in range(rows):
        for c in range(cols):
            val = name in VAL_IMAGES or (cols > 1 and c >= cols - VAL_COLUMNS)
            tiles.append(Tile(name, (int(xs[c]), int(ys[r]), int(xs[c + 1]), int(ys[r + 1])),
                              "val" if val else "train"))
    return tiles


def tile_boxes(boxes: list[tuple[float, ...]], window: tuple[int, int, int, int]
               ) -> list[tuple[float, float, float, float]]:
    """The boxes with at least ``KEEP_INSIDE`` of their area in ``window``, clipped, in its
    coordinates (px xyxy)."""
    x0, y0, x1, y1 = window
    out = []
    for b in boxes:
        cx1, cy1, cx2, cy2 = max(b[0], x0), max(b[1], y0), min(b[2], x1), min(b[3], y1)
        inside = max(cx2 - cx1, 0) * max(cy2 - cy1, 0)
        if inside >= KEEP_INSIDE * (b[2] - b[0]) * (b[3] - b[1]) and inside > 0:
            out.append((round(cx1 - x0, 2), round(cy1 - y0, 2), round(cx2 - x0, 2),
                        round(cy2 - y0, 2)))
    return out


def _crown_shape(rng: np.random.Generator, label: int, side: float) -> tuple[float, float]:
    """A crown's box: about square (aspect 0.8-1.25), larger side ``side``."""
    aspect = float(rng.uniform(0.8, 1.25))
    return (side, side / aspect) if aspect >= 1 else (side * aspect, side)


def _load(read) -> tuple[list[Tile], list[Image.Image], list[ImageLabels]]:
    """Tiles, their pictures and their clean labels (annotation ids from 1)."""
    Image.MAX_IMAGE_PIXELS = None  # the largest crop is bigger than PIL's bomb guard
    tiles, pictures, labels, next_id = [], [], [], 1
    for name in SOURCES:
        boxes = read_voc(read(f"{name}.xml"), f"{DATA_PREFIX}{name}.xml")
        with Image.open(io.BytesIO(read(f"{name}.png"))) as img:
            picture = img.convert("RGB")
        for tile in plan_tiles(name, *picture.size):
            clean = []
            for box in tile_boxes(boxes, tile.window):
                clean.append(LabelBox(0, box, (next_id,), 0, next_id))
                next_id += 1
            image_id = len(tiles) + 1
            w, h = tile.window[2] - tile.window[0], tile.window[3] - tile.window[1]
            tiles.append(tile)
            pictures.append(picture.crop(tile.window))
            labels.append(ImageLabels(image_id, tile.split, w, h, None, clean, list(clean)))
    return tiles, pictures, labels


def generate_tree_world(out: str | Path, *, source: str | Path | None = None, seed: int = C.SEED,
                        noise_rate: float = TREE_NOISE_RATE,
                        progress: bool = True) -> WorldSummary:
    """Write the tree world to ``out`` (replacing a previous world there), atomically.

    Args:
        out: target folder; absent, empty, or a previous world.
        source: the deepforest wheel or package folder (default: :func:`locate_source`).
        seed: seed of the injected errors (the tiles and clean labels do not depend on it).
        noise_rate: errors per clean box in each split, in [0, 1).
        progress: show a tqdm bar while tiles are written.

    Returns:
        A :class:`audit.world.files.WorldSummary`.

    Example:
        >>> print(generate_tree_world("trees", progress=False))  # doctest: +SKIP
    """
    out = Path(out)
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(f"noise_rate must be in [0, 1), got {noise_rate!r}")
    tiles, pictures, labels = _load(_reader(locate_source(source)))
    records: list[ErrorRecord] = inject_errors(
        labels, noise_rate, np.random.default_rng([seed, 1]), n_classes=len(TREE_CLASSES),
        error_types=TREE_ERRORS, shape=_crown_shape)
    assign_noisy_ids(labels)
    write_world(out, labels, pictures,
                [{"scene": t.source, "source_window": list(t.window)} for t in tiles], records,
                class_names=TREE_CLASSES, version=f"trees-{TREES_VERSION}",
                description="NEON tree crowns (deepforest's annotated images)",
                progress=progress)
    return WorldSummary("tree world", out, *error_counts(labels, records, TREE_ERRORS))


def current_tree_world(out: str | Path, *, seed: int = C.SEED, progress: bool = True,
                       **kwargs) -> Path:
    """``out`` when it holds a tree world of this version, else one written there now."""
    out = Path(out)
    if world_info_version(out) != f"trees-{TREES_VERSION}":
        generate_tree_world(out, seed=seed, progress=progress, **kwargs)
    return out
