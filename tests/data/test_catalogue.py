"""Catalogue of bad inputs at the public entry points and at the command line: one table, BAD.

Each row is one bad call of ``ingest`` / ``score_dataset`` / ``export`` / ``record_decision``
(a review, API only: there is no review command), made through the API,
through ``audit.__main__.main`` in this process (``main``) or through ``python -m audit`` in a
subprocess (``proc``), with the exception it must raise and the words its message must hold (the
file and the record for input files). The command line must instead exit with code 2 and print
exactly one ``error: ...`` line on stderr, no traceback (``warning: ...`` lines aside).

Nothing may change: the module ingests a good world once into the dataset ``NAME`` (which every
bad ingest then targets, so a bad ingest would be a resume) and exports it once; after each failed
call that dataset has the same samples, ids, labels, boxes and info, no dataset appeared or
vanished, and no file or folder under the test's folder, the good world or the export folder was
created, changed or removed.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fiftyone as fo
import pytest
from PIL import Image

from audit.__main__ import main
from audit.data.exports import export
from audit.data.ingest import ingest
from audit.data.review_store import record_decision
from audit.data.scoring import score_dataset
from audit.reviews import Decision, log_path
from tests.data.coco_world import dump, load, write_coco_world

# FiftyOne lets every process on the machine attach to the first one's database service, so the
# names are unique and only datasets whose name holds NAME are watched.
NAME = f"catalogue-{uuid.uuid4().hex[:8]}"  # the existing, good dataset every bad ingest targets
FRESH = f"{NAME}-fresh"  # a dataset that does not exist (bad ingests must not create it)
MISSING = f"{NAME}-missing"  # a dataset that does not exist (score / export must refuse it)
EVIL = f"../{NAME}-evil"  # a path-traversal dataset name
SEEDS = {"train": [0, 1, 2, 3, 4], "val": [5, 6]}  # image ids 100 + seed; 1000 * (seed+1) + j
IMGSZ = 320
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Good:
    """The module's good state: world folder, export folder (holding a coco export), checkpoint."""

    world: Path
    exports: Path
    checkpoint: Path


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """Ingest a 7-image world (train 5, val 2) as ``NAME`` and export it as COCO, once."""
    world = write_coco_world(tmp_path_factory.mktemp("good") / "w", SEEDS)
    ds = ingest(NAME, images=world / "images", train_json=world / "train.json",
                val_json=world / "val.json", model=tiny_checkpoint, imgsz=IMGSZ, progress=False)
    assert len(ds) == 7 and ds.count("ground_truth.detections") == 21
    exports = tmp_path_factory.mktemp("exports")
    export(NAME, "coco", exports)
    yield Good(world, exports, tiny_checkpoint)
    fo.load_dataset(NAME).delete()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """``get(kind)``: a bad or other checkpoint, built on first use."""
    import torch

    root = tmp_path_factory.mktemp("bad-checkpoints")

    def tiny() -> dict:
        return torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)

    def classifier(path: Path) -> None:
        from ultralytics.nn.tasks import ClassificationModel

        model = ClassificationModel("yolo11n-cls.yaml", nc=3, verbose=False)
        model.names = {0: "ball", 1: "crate", 2: "book"}
        torch.save({"model": model, "train_args": {"task": "classify", "imgsz": 224}}, path)

    def renamed(path: Path) -> None:
        ckpt = tiny()
        ckpt["model"].names = {0: "ball", 1: "crate", 2: "lamp"}
        torch.save(ckpt, path)

    def other(path: Path) -> None:  # same classes and weights, another file (another sha)
        ckpt = tiny()
        ckpt["train_args"] = {**ckpt["train_args"], "epochs": 1}
        torch.save(ckpt, path)

    builders: dict[str, Callable[[Path], Any]] = {
        "classifier": classifier,
        "plain-dict": lambda p: torch.save({"weights": [1.0, 2.0], "epoch": 3}, p),
        "random": lambda p: p.write_bytes(random.Random(0).randbytes(4096)),
        "truncated": lambda p: p.write_bytes(tiny_checkpoint.read_bytes()[:50_000]),
        "empty": lambda p: p.write_bytes(b""),
        "renamed": renamed,
        "other": other,
    }

    def get(kind: str) -> Path:
        path = root / f"{kind}.pt"
        if not path.exists():
            builders[kind](path)
        return path

    return get


@dataclass
class Ctx:
    """What a row's builder gets: its own folder, a fresh copy of the good world, helpers."""

    tmp: Path
    world: Path
    good: Good
    checkpoint: Callable[[str], Path]
    monkeypatch: pytest.MonkeyPatch
    undo: list[Callable[[], None]] = field(default_factory=list)

    def ingest_kw(self, **changes: Any) -> dict[str, Any]:
        """Keyword arguments of a good ingest of the world copy into ``NAME``, with changes."""
        w = self.world
        return {"name": NAME, "images": w / "images", "train_json": w / "train.json",
                "val_json": w / "val.json", "model": self.good.checkpoint, "imgsz": IMGSZ,
                **changes}

    def out(self) -> Path:
        """A fresh output folder holding a copy of the good export."""
        return Path(shutil.copytree(self.good.exports, self.tmp / "out"))


Build = Callable[[Ctx], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    """One bad call: entry point, how its kwargs are built, error type, message parts, routes."""

    entry: str  # "ingest" | "score" | "export"
    build: Build
    error: type[Exception]
    expect: tuple[str, ...]
    via: tuple[str, ...] = ("api",)  # "api", "main" (in-process CLI), "proc" (python -m audit)


# --- builders -----------------------------------------------------------------------------------

def coco(mutate: Callable[[dict], Any], split: str = "train") -> Build:
    """Mutate ``<split>.json`` of the world copy in place."""
    def build(ctx: Ctx) -> dict[str, Any]:
        path = ctx.world / f"{split}.json"
        data = load(path)
        mutate(data)
        dump(path, data)
        return ctx.ingest_kw()
    return build


def ann(i: int = 0, **changes: Any) -> Callable[[dict], None]:
    """Change annotation ``i`` (annotation 0 is id 1000 on image id 100, 0.png, 400x240)."""
    return lambda data: data["annotations"][i].update(changes)


def text(content: str, split: str = "train") -> Build:
    """Replace ``<split>.json`` by raw text."""
    def build(ctx: Ctx) -> dict[str, Any]:
        (ctx.world / f"{split}.json").write_text(content, encoding="utf-8")
        return ctx.ingest_kw()
    return build


def image(damage: Callable[[Path], Any], seed: int = 1) -> Build:
    """Damage ``images/<seed>.png`` of the world copy (seed 1 = train image id 101, 200x300)."""
    def build(ctx: Ctx) -> dict[str, Any]:
        damage(ctx.world / "images" / f"{seed}.png")
        return ctx.ingest_kw()
    return build


def truncated_jpeg(ctx: Ctx) -> dict[str, Any]:
    """Val image 5 re-saved as JPEG, listed as ``5.jpg``, its last 200 bytes cut off."""
    jpg = ctx.world / "images" / "5.jpg"
    with Image.open(ctx.world / "images" / "5.png") as im:
        im.save(jpg, quality=90)
    jpg.write_bytes(jpg.read_bytes()[:-200])
    data = load(ctx.world / "val.json")
    next(i for i in data["images"] if i["id"] == 105)["file_name"] = "5.jpg"
    dump(ctx.world / "val.json", data)
    return ctx.ingest_kw()


def dup_image(data: dict) -> None:
    data["images"].append(dict(data["images"][1], id=data["images"][0]["id"]))


def dup_annotation(data: dict) -> None:
    data["annotations"].append(dict(data["annotations"][1], id=data["annotations"][0]["id"]))


def rename_category(old: str, new: str) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        cat = next(c for c in data["categories"] if c["name"] == old)
        assert any(a["category_id"] == cat["id"] for a in data["annotations"]), "class unused"
        cat["name"] = new
    return mutate


def model(kind: str, **changes: Any) -> Build:
    """The good world with one of the ``checkpoints`` kinds (or a path under the test folder)."""
    def build(ctx: Ctx) -> dict[str, Any]:
        if kind in {"missing", "not-pt"}:
            path = ctx.tmp / ("nope.pt" if kind == "missing" else "model.yaml")
            if kind == "not-pt":
                path.write_text("nc: 3\n")
        else:
            path = ctx.checkpoint(kind)
        return ctx.ingest_kw(model=path, **changes)
    return build


def failing_decode(name: str) -> Build:
    """A world that validates but whose first image fails to decode during the ingest."""
    def build(ctx: Ctx) -> dict[str, Any]:
        def decode(rec: Any) -> Any:
            raise ValueError(f"{rec.record}: cannot decode {rec.filepath}: broken data stream")
        ctx.monkeypatch.setattr("audit.data.ingest.decode_image", decode)
        return ctx.ingest_kw(name=name)
    return build


def huge_png(path: Path, side: int = 14000) -> None:
    """A valid ``side`` x ``side`` greyscale PNG (all black, a few hundred kB compressed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + one byte per pixel
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def without_cuda(device: str) -> Build:
    """The good world, ingested on ``device`` on a machine where torch sees no CUDA."""
    def build(ctx: Ctx) -> dict[str, Any]:
        ctx.monkeypatch.setattr("torch.cuda.is_available", lambda: False)
        ctx.monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
        return ctx.ingest_kw(device=device)
    return build


def review(action: str = "fix_class", **changes: Any) -> Build:
    """A decision on the first gt box of ``NAME``'s 0.png (400x240), with changes."""
    def build(ctx: Ctx) -> dict[str, Any]:
        ds = fo.load_dataset(NAME)
        sample = next(s for s in ds.select_fields(["filepath", "ground_truth"])
                      if Path(s.filepath).name == "0.png")
        return {"sample_id": sample.id, "box_id": sample.ground_truth.detections[0].id,
                "action": action, "reviewer": "catalogue", "base_revision": 0, **changes}
    return build


def export_kw(out: Callable[[Ctx], Path] | None = None, **kw: Any) -> Build:
    """Export keyword arguments; ``out`` builds the output folder (default: the module's)."""
    def build(ctx: Ctx) -> dict[str, Any]:
        return {"name_or_ds": NAME, "fmt": "coco",
                "out_dir": out(ctx) if out else ctx.good.exports, **kw}
    return build


def out_is_file(ctx: Ctx) -> Path:
    path = ctx.tmp / "exports.txt"
    path.write_text("not a folder\n")
    return path


def out_below_file(ctx: Ctx) -> Path:
    return out_is_file(ctx) / "sub"


def out_not_writable(ctx: Ctx) -> Path:
    """A 0o500 folder holding an older export. Root writes there anyway (permission bits do
    not bind it), so then ``os.access`` answers as the kernel would for its non-root owner."""
    out = ctx.out()
    out.chmod(0o500)
    ctx.undo.append(lambda: out.chmod(0o700))
    try:
        (out / ".probe").touch()
    except PermissionError:
        return out  # a real non-root run: the permission bits themselves refuse
    (out / ".probe").unlink()
    real_access = os.access

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if Path(path) == out:
            return not mode & os.W_OK
        return real_access(path, mode, *args, **kwargs)

    ctx.monkeypatch.setattr(os, "access", access)
    return out


def target_is_folder(ctx: Ctx) -> Path:
    out = ctx.out()
    (out / f"{NAME}-coco.json").unlink()
    (out / f"{NAME}-coco.json").mkdir()
    (out / f"{NAME}-coco.json" / "keep.txt").write_text("mine\n")
    return out


def target_is_file(ctx: Ctx) -> Path:
    out = ctx.out()
    (out / f"{NAME}-yolo").write_text("mine, not an export\n")
    return out


def edited(mutate: Callable[[dict], Any]) -> Build:
    """A resume of ``NAME`` whose train JSON (a copy in the test folder, over the good world's
    own images) was edited after the ingest."""
    def build(ctx: Ctx) -> dict[str, Any]:
        data = load(ctx.good.world / "train.json")
        mutate(data)
        return ctx.ingest_kw(images=ctx.good.world / "images",
                             train_json=dump(ctx.tmp / "train.json", data),
                             val_json=ctx.good.world / "val.json")
    return build


def relabel_first(data: dict) -> None:
    """Annotation 1000 (image id 100) gets another class."""
    first = data["annotations"][0]
    first["category_id"] = 20 if first["category_id"] != 20 else 10


def yolo_export_holding_user_file(ctx: Ctx) -> Path:
    """The output folder holding a YOLO export in which a user kept ``runs/x/best.pt``."""
    out = ctx.out()
    kept = export(NAME, "yolo", out) / "runs" / "x" / "best.pt"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"weights a user trained\n")
    return out


def half_scored(ctx: Ctx) -> Path:
    """``NAME`` marked as a score killed mid-write leaves it (the mark is removed afterwards);
    returns the module's export folder."""
    from audit.data import store

    ds = fo.load_dataset(NAME)
    try:
        with store.scoring_run(ds):
            raise KeyboardInterrupt  # the process is stopped before the scores are committed
    except KeyboardInterrupt:
        pass

    def unmark() -> None:
        ds.reload()
        ds.info = {**ds.info, "audit": {k: v for k, v in ds.info["audit"].items()
                                        if k != store.INCOMPLETE_KEY}}
        ds.save()

    ctx.undo.append(unmark)
    return ctx.good.exports


def attached_elsewhere(build: Build) -> Build:
    """``build``, with FiftyOne set to its own service and data in a folder of the test while
    the connection it holds is to a server whose data is elsewhere: what attaching to another
    process's database service looks like."""
    def wrapped(ctx: Ctx) -> dict[str, Any]:
        from audit.data import database

        ctx.monkeypatch.setattr(fo.config, "database_uri", None)
        ctx.monkeypatch.setattr(fo.config, "database_dir", str(ctx.tmp / "fiftyone-db"))
        ctx.monkeypatch.setattr(database, "_CHECKED", set())
        return build(ctx)
    return wrapped


def name_only(name: str, **kw: Any) -> Build:
    return lambda ctx: {"name": name, **kw}


# --- the table ----------------------------------------------------------------------------------

TRAIN_100 = "train.json: annotation id 1000 (image id 100)"
TRAIN_101 = "train.json: image id 101 (1.png)"
CLI = ("api", "main")
OTHER_DATABASE = "another FiftyOne process of this user started it"
BAD: dict[str, Row] = {
    # images
    "missing-image-file": Row("ingest", image(Path.unlink), ValueError,
                              (TRAIN_101, "image file not found"), CLI),
    "garbage-image": Row("ingest", image(lambda p: p.write_bytes(b"\x00garbage" * 64)),
                         ValueError, (TRAIN_101, "unreadable image"), CLI),
    "truncated-png": Row("ingest", image(lambda p: p.write_bytes(p.read_bytes()[:-30])),
                         ValueError, (TRAIN_101, "truncated image")),
    "truncated-jpeg": Row("ingest", truncated_jpeg, ValueError,
                          ("val.json: image id 105 (5.jpg)", "truncated JPEG")),
    "zero-byte-image": Row("ingest", image(lambda p: p.write_bytes(b"")), ValueError,
                           (TRAIN_101, "empty image file (0 bytes)")),
    "image-too-large": Row("ingest", image(huge_png), ValueError,
                           (TRAIN_101, "image too large", "14000x14000 = 196,000,000 pixels",
                            "downscale or tile"), CLI),
    "image-in-both-splits": Row("ingest", coco(lambda d: d["images"][0].update(
        file_name="0.png", width=400, height=240) or d["annotations"].clear(), "val"), ValueError,
        ("val.json: image id 105 (0.png)", "also in the train split")),
    # COCO records
    "unknown-image-id": Row("ingest", coco(ann(image_id=999)), ValueError,
                            ("train.json: annotation id 1000 (image id 999)",
                             "unknown image id 999")),
    "unknown-category-id": Row("ingest", coco(ann(category_id=11)), ValueError,
                               (TRAIN_100, "unknown category id 11"), CLI),
    "duplicate-image-id": Row("ingest", coco(dup_image), ValueError,
                              ("train.json: image id 100", "duplicate image id")),
    "duplicate-annotation-id": Row("ingest", coco(dup_annotation), ValueError,
                                   ("train.json: annotation id 1000", "duplicate annotation id")),
    "bbox-negative": Row("ingest", coco(ann(bbox=[10, 5, -3, 8])), ValueError,
                         (TRAIN_100, "[10, 5, -3, 8]", "negative width")),
    "bbox-zero-size": Row("ingest", coco(ann(bbox=[10, 5, 0, 8])), ValueError,
                          (TRAIN_100, "zero size")),
    "bbox-outside": Row("ingest", coco(ann(bbox=[390, 5, 20, 8])), ValueError,
                        (TRAIN_100, "outside the 400x240 image")),
    "annotation-id-beyond-int64": Row(
        "ingest", coco(ann(id=2**63)), ValueError,
        ("train.json: annotation id 9223372036854775808 (image id 100)",
         "does not fit a 64-bit integer"), CLI),
    "image-size-not-a-number": Row("ingest", coco(lambda d: d["images"][1].update(width="wide")),
                                   ValueError, (TRAIN_101, "width and height must be integers",
                                                "width='wide', height=300")),
    "bbox-nan": Row("ingest", coco(ann(bbox=[10, 5, float("nan"), 8])), ValueError,
                    (TRAIN_100, "not finite")),
    "two-problems": Row("ingest", coco(lambda d: (ann(0, bbox=[1, 1, -1, 1])(d),
                                                  ann(1, category_id=11)(d))), ValueError,
                        ("2 problem(s) in train.json", "negative width",
                         "annotation id 1001 (image id 100): unknown category id 11"), CLI),
    # JSON files
    "malformed-json": Row("ingest", text('{"images": ['), ValueError,
                          ("train.json", "not valid JSON (line 1"), ("api", "main", "proc")),
    "empty-json": Row("ingest", text(""), ValueError, ("train.json", "empty file")),
    "json-not-coco": Row("ingest", text('{"info": {}, "licenses": []}'), ValueError,
                         ("train.json", "not COCO JSON", "'images', 'annotations', 'categories'")),
    "json-is-a-list": Row("ingest", text("[1, 2]", "val"), ValueError,
                          ("val.json", "top level is list")),
    "missing-json": Row("ingest", lambda ctx: ctx.ingest_kw(val_json=ctx.tmp / "nope.json"),
                        ValueError, ("nope.json: no such file",), CLI),
    "missing-images-folder": Row("ingest", lambda ctx: ctx.ingest_kw(images=ctx.tmp / "nope"),
                                 ValueError, ("images folder", "nope", "does not exist")),
    # checkpoints
    "classification-checkpoint": Row("ingest", model("classifier"), ValueError,
                                     ("classifier.pt", "expected a detection model",
                                      "found a classification model"), CLI),
    "plain-dict-checkpoint": Row("ingest", model("plain-dict"), ValueError,
                                 ("plain-dict.pt", "holds no model")),
    "random-bytes-checkpoint": Row("ingest", model("random"), ValueError,
                                   ("random.pt", "empty, truncated or corrupted")),
    "truncated-checkpoint": Row("ingest", model("truncated"), ValueError,
                                ("truncated.pt", "empty, truncated or corrupted"), CLI),
    "empty-checkpoint": Row("ingest", model("empty"), ValueError,
                            ("empty.pt", "empty, truncated or corrupted")),
    "missing-checkpoint": Row("ingest", model("missing"), ValueError,
                              ("nope.pt", "model file not found")),
    "not-a-pt-file": Row("ingest", model("not-pt"), ValueError,
                         ("model.yaml", "expected an ultralytics .pt")),
    # classes and settings
    "dataset-class-unknown-to-model": Row(
        "ingest", coco(rename_category("book", "lamp")), ValueError,
        ("train.json: class name(s) 'lamp' are not classes of tiny_yolo11n.pt",
         "the model knows: ball, crate, book"), CLI),
    "model-classes-differ": Row("ingest", model("renamed"), ValueError,
                                ("train.json: class name(s) 'book' are not classes of renamed.pt",
                                 "ball, crate, lamp")),
    "resume-with-another-checkpoint": Row("ingest", model("other"), ValueError,
                                          (f"dataset {NAME!r} was ingested with model",
                                           "refusing to resume", "other.pt")),
    "resume-with-another-imgsz": Row("ingest", lambda ctx: ctx.ingest_kw(imgsz=416), ValueError,
                                     ("imgsz=320", "refusing to resume with imgsz=416")),
    "device-unknown": Row("ingest", lambda ctx: ctx.ingest_kw(device="banana"), ValueError,
                          ("--device 'banana'", "the devices available here: cpu"),
                          ("api", "main", "proc")),
    "device-cuda-without-cuda": Row("ingest", without_cuda("cuda:0"), ValueError,
                                    ("--device 'cuda:0'", "CUDA is not available",
                                     "the devices available here: cpu"), CLI),
    "imgsz-not-multiple-of-32": Row("ingest", lambda ctx: ctx.ingest_kw(imgsz=100), ValueError,
                                    ("imgsz must be a positive multiple of 32, got 100",)),
    "layer-out-of-range": Row("ingest", lambda ctx: ctx.ingest_kw(layers=(16, 99)), ValueError,
                              ("tiny_yolo11n.pt: layers must be distinct indices",)),
    "layers-not-numbers": Row("ingest", lambda ctx: ctx.ingest_kw(layers="16,x"), ValueError,
                              ("--layers must be comma-separated layer indices",), ("main",)),
    "resume-with-edited-class": Row("ingest", edited(relabel_first), ValueError,
                                    ("train.json: image id 100 (0.png): box 1 (annotation id "
                                     "1000) is stored as", "1 image(s) already in dataset",
                                     "ingest the edited labels under a new name"), CLI),
    "resume-with-removed-box": Row("ingest", edited(lambda d: d["annotations"].pop(1)),
                                   ValueError, ("train.json: image id 100 (0.png): 3 box(es) "
                                                "stored, 2 in this input", f"--name {NAME}-2"),
                                   ("api", "main", "proc")),
    "resume-with-moved-box": Row("ingest", edited(ann(0, bbox=[1, 2, 30, 40])), ValueError,
                                 ("train.json: image id 100 (0.png): box 1", "[1.0, 2.0, 30.0, "
                                  "40.0]", "never changes stored labels")),
    # dataset names and half-done ingests
    "ingest-name-traversal": Row("ingest", lambda ctx: ctx.ingest_kw(name=EVIL), ValueError,
                                 (f"{EVIL!r} must not contain path separators",), CLI),
    "ingest-name-too-long": Row("ingest", lambda ctx: ctx.ingest_kw(name=f"{FRESH}-{'x' * 300}"),
                                ValueError, ("characters long", "use at most 100 characters"),
                                CLI),
    "bad-json-into-new-dataset": Row("ingest", lambda ctx: text("{")(ctx) | {"name": FRESH},
                                     ValueError, ("train.json", "not valid JSON")),
    "decode-failure-new-dataset": Row("ingest", failing_decode(FRESH), ValueError,
                                      ("train.json: image id 100 (0.png): cannot decode",)),
    "decode-failure-existing-dataset": Row("ingest", failing_decode(NAME), ValueError,
                                           ("train.json: image id 100 (0.png): cannot decode",)),
    # scoring
    "score-unknown-dataset": Row("score", name_only(MISSING), ValueError,
                                 (f"no dataset named {MISSING!r}",), ("api", "main", "proc")),
    "score-unknown-projection": Row("score", name_only(NAME, projections=("pca", "mds")),
                                    ValueError, ("unknown projection method(s) ['mds']",)),
    "score-other-database": Row("score", attached_elsewhere(name_only(NAME)), ValueError,
                                (OTHER_DATABASE, "FIFTYONE_DATABASE_DIR", "Stop that process"),
                                CLI),
    # exports
    "export-out-is-a-file": Row("export", export_kw(out_is_file), ValueError,
                                ("exports.txt is a file, not a folder",), CLI),
    "export-out-below-a-file": Row("export", export_kw(out_below_file), ValueError,
                                   ("exports.txt/sub is not writable",)),
    "export-out-not-writable": Row("export", export_kw(out_not_writable), ValueError,
                                   ("out is not writable",), CLI),
    "export-unknown-dataset": Row("export", export_kw(lambda ctx: ctx.tmp / "new-out",
                                                      name_or_ds=MISSING),
                                  ValueError, (f"no dataset named {MISSING!r}",), CLI),
    "export-name-traversal": Row("export", export_kw(name_or_ds=EVIL), ValueError,
                                 (f"dataset name {EVIL!r} must not contain path separators",),
                                 ("api", "main", "proc")),
    "export-relabel-csv-unscored": Row(
        "export", export_kw(fmt="relabel-csv"), ValueError,
        (f"dataset {NAME!r} is not scored", f"run `python -m audit score --name {NAME}` first"),
        ("api", "main", "proc")),
    "export-unknown-format": Row("export", export_kw(fmt="pdf"), ValueError,
                                 ("export format must be one of", "'pdf'")),
    "export-unknown-split": Row("export", export_kw(split="test"), ValueError,
                                ("split must be one of", "'test'")),
    "export-coco-target-is-a-folder": Row("export", export_kw(target_is_folder), ValueError,
                                          (f"{NAME}-coco.json exists and is a folder",), CLI),
    "export-yolo-target-is-a-file": Row("export", export_kw(target_is_file, fmt="yolo"),
                                        ValueError, (f"{NAME}-yolo exists and is not a folder",)),
    "export-yolo-over-user-files": Row("export", export_kw(yolo_export_holding_user_file,
                                                           fmt="yolo"), ValueError,
                                       (f"{NAME}-yolo holds 1 file(s) the yolo export did not "
                                        "write (runs/x/best.pt)", "move them out of it"), CLI),
    "export-relabel-csv-half-scored": Row(
        "export", export_kw(half_scored, fmt="relabel-csv"), ValueError,
        (f"dataset {NAME!r}: its last scoring", "did not finish",
         f"python -m audit score --name {NAME} --full"), CLI),
    "export-other-database": Row("export", attached_elsewhere(export_kw()), ValueError,
                                 (OTHER_DATABASE, "FIFTYONE_DATABASE_DIR", "Stop that process"),
                                 CLI),
    # reviews (the sample is named in every message, see ``test_bad_input...``)
    "review-label-not-a-class": Row("review", review(new_label="zebra\n; DROP"), ValueError,
                                    ("label 'zebra\\n; DROP' is not a class of dataset",
                                     "choose one of: ball, crate, book")),
    "review-box-outside-image": Row("review", review("accept_prediction",
                                                     box=(500, 250, 600, 400)), ValueError,
                                    ("box (500.0, 250.0, 600.0, 400.0) (xyxy px) lies wholly "
                                     "outside its 400x240 image",)),
    "review-box-not-finite": Row("review", review("accept_prediction",
                                                  box=(10, 10, math.inf, 50)), ValueError,
                                 ("box must be 4 finite numbers", "inf")),
    "review-box-upside-down": Row("review", review("accept_prediction", box=(50, 10, 20, 50)),
                                  ValueError, ("box (50.0, 10.0, 20.0, 50.0) is not xyxy",)),
}
CASES = [pytest.param(row_id, via, id=f"{via}-{row_id}")
         for row_id, row in BAD.items() for via in row.via]


# --- calling and checking -----------------------------------------------------------------------

def call_api(entry: str, kw: dict[str, Any]) -> None:
    if entry == "ingest":
        ingest(**kw, progress=False)
    elif entry == "score":
        score_dataset(kw.pop("name"), **kw, progress=False)
    elif entry == "review":
        record_decision(fo.load_dataset(NAME), Decision(dataset=NAME, **kw))
    else:
        export(**kw)


def cli_args(entry: str, kw: dict[str, Any]) -> list[str]:
    """The ``python -m audit`` arguments of one call."""
    if entry == "ingest":
        args = ["ingest", "--name", kw["name"], "--images", kw["images"], "--train-json",
                kw["train_json"], "--val-json", kw["val_json"], "--model", kw["model"],
                "--imgsz", kw["imgsz"]]
        if "layers" in kw:
            layers = kw["layers"]
            args += ["--layers", layers if isinstance(layers, str) else ",".join(map(str, layers))]
        if "device" in kw:
            args += ["--device", kw["device"]]
    elif entry == "score":
        args = ["score", "--name", kw["name"]]
    else:
        args = ["export", "--name", kw["name_or_ds"], "--format", kw["fmt"], "--out",
                kw["out_dir"]] + (["--split", kw["split"]] if kw.get("split") else [])
    return [str(a) for a in args]


def stored(name: str) -> dict[str, Any] | None:
    """What must not change in a dataset: samples, ids, labels, boxes, info (None: absent)."""
    if not fo.dataset_exists(name):
        return None
    ds = fo.load_dataset(name)
    ds.reload()
    return {"n": len(ds), "ids": ds.values("id"), "filepaths": ds.values("filepath"),
            "labels": ds.values("ground_truth.detections.label"),
            "boxes": ds.values("ground_truth.detections.bounding_box"),
            "coco_ids": ds.values("ground_truth.detections.coco_id"),
            "fields": sorted(ds.get_field_schema()),
            "info": json.dumps(ds.info, sort_keys=True, default=str)}


def files(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots``: folders, links, and files with their size, mtime and bytes."""
    out: dict[str, tuple] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))]:
            st = path.lstat()
            if path.is_symlink():
                out[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                out[str(path)] = ("dir", st.st_mode)
            else:
                out[str(path)] = ("file", st.st_mode, st.st_mtime_ns, path.read_bytes())
    return out


def state(ctx: Ctx) -> dict[str, Any]:
    return {"datasets": sorted(n for n in fo.list_datasets() if NAME in n), NAME: stored(NAME),
            "files": files(ctx.tmp, ctx.good.world, ctx.good.exports),
            "review_log_folder": log_path(NAME).parent.exists()}


@pytest.mark.parametrize(("row_id", "via"), CASES)
def test_bad_input_is_refused_and_changes_nothing(row_id: str, via: str, good: Good,
                                                  checkpoints: Callable[[str], Path],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    row = BAD[row_id]
    ctx = Ctx(tmp_path, Path(shutil.copytree(good.world, tmp_path / "w")), good, checkpoints,
              monkeypatch)
    try:
        kw = row.build(ctx)
        before = state(ctx)
        assert before[NAME] is not None and before[NAME]["n"] == 7
        if via == "api":
            with pytest.raises(row.error) as err:
                call_api(row.entry, kw)
            message = str(err.value)
        else:
            message = run_cli(via, cli_args(row.entry, kw), capsys, monkeypatch)
        for part in row.expect + ((f"sample {kw['sample_id']}",) if row.entry == "review"
                                  else ()):
            assert part in message, f"{part!r} not in {message!r}"
        assert state(ctx) == before
    finally:
        for undo in ctx.undo:
            undo()


def run_cli(via: str, args: list[str], capsys: pytest.CaptureFixture,
            monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the command; check exit code 2 and one ``error:`` line; return that line."""
    if via == "main":
        monkeypatch.setattr("audit.data.checkpoint._PICKLE_WARNED", False)  # warn, as if fresh
        capsys.readouterr()
        code = main(args)
        stderr = capsys.readouterr().err
    else:
        proc = subprocess.run([sys.executable, "-m", "audit", *args], cwd=REPO, text=True,
                              capture_output=True, timeout=120, check=False)
        code, stderr = proc.returncode, proc.stderr
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    others = [ln for ln in lines if not ln.startswith(("error: ", "warning: "))]
    assert len(errors) == 1 and lines[-1] == errors[0] and not others, stderr
    return errors[0]


def test_every_row_runs_somewhere() -> None:
    """The table covers every entry point, and the command line for each that has one."""
    assert {r.entry for r in BAD.values()} == {"ingest", "score", "export", "review"}
    for entry in ("ingest", "score", "export"):
        vias = {v for r in BAD.values() if r.entry == entry for v in r.via}
        assert {"api", "main", "proc"} <= vias, entry


# --- the cases of the "nothing lost, nothing silently wrong" audit, each with where it is held ----
# A case that is a refusal is a row of BAD above; one whose right answer is a behaviour (a round
# trip, a race, a replay) has its own test. This index keeps every case findable, and fails when
# a test it names is gone or renamed.
CASE_TESTS: dict[int, tuple[str, ...]] = {
    1: ("tests/data/test_ingest_concurrency.py::test_two_resumes_at_once_store_each_image_once",),
    2: ("tests/data/test_round_trips.py::test_yolo_export_ingests_again_through_its_data_yaml",),
    3: ("BAD::export-yolo-over-user-files",
        "tests/data/test_exports.py::test_yolo_export_again_keeps_a_users_files_and_refuses"),
    4: ("BAD::score-other-database", "BAD::export-other-database"),
    5: ("tests/data/test_review_replay.py::"
        "test_the_command_line_export_carries_a_decision_a_crash_cut_short",),
    6: ("tests/data/test_review_replay.py::"
        "test_decisions_orphaned_by_a_new_ingest_are_announced_and_reapplied",),
    7: ("tests/data/test_ingest.py::test_sixteen_bit_greyscale_decodes_as_ultralytics_reads_it",),
    8: ("BAD::resume-with-edited-class", "BAD::resume-with-removed-box",
        "BAD::resume-with-moved-box"),
    9: ("BAD::export-relabel-csv-half-scored", "tests/data/test_scoring_partial.py::"
        "test_a_scoring_cut_short_is_marked_and_readers_refuse_it"),
    10: ("tests/data/test_round_trips.py::"
         "test_coco_export_of_each_split_ingests_again_with_the_same_images_root",),
    11: ("tests/data/test_checkpoint_identity.py::"
         "test_a_checkpoint_replaced_since_ingest_is_refused",),
    12: ("tests/data/test_exports.py::test_yolo_leaves_crowd_boxes_out",),
    13: ("BAD::review-label-not-a-class", "BAD::review-box-outside-image"),
    14: ("tests/test_clusters.py::test_cluster_caps_k_at_the_number_of_points_and_says_so",
         "BAD::export-relabel-csv-unscored"),
    15: ("BAD::image-too-large",),
    16: ("BAD::annotation-id-beyond-int64",),
    17: ("tests/data/test_ingest.py::test_classes_differing_in_punctuation_keep_their_own_counts",),
    18: ("BAD::device-unknown", "BAD::device-cuda-without-cuda"),
    19: ("tests/data/test_database.py::test_a_database_lost_mid_run_is_one_line",),
    20: ("tests/data/test_inputs.py::"
         "test_width_and_height_given_as_numbers_in_strings_are_read_as_numbers",),
    21: ("tests/data/test_scoring_partial.py::test_a_small_dataset_scores_whole",),
    22: ("tests/data/test_ingest_concurrency.py::"
         "test_two_fresh_ingests_of_one_name_at_once_both_succeed",),
    23: ("BAD::ingest-name-too-long",),
    24: ("tests/data/test_exports.py::test_exports_get_the_modes_the_umask_gives",
         "tests/data/test_exports.py::test_yolo_command_prints_one_line_saying_what_it_left_out"),
    25: ("tests/data/test_exports.py::test_out_ending_in_the_format_suffix_is_the_file",),
}


def test_every_case_is_held_by_a_row_or_a_test() -> None:
    import ast

    root = Path(__file__).resolve().parents[2]
    assert sorted(CASE_TESTS) == list(range(1, 26))
    for case, refs in CASE_TESTS.items():
        for ref in refs:
            where, name = ref.split("::")
            if where == "BAD":
                assert name in BAD, (case, ref)
                continue
            tree = ast.parse((root / where).read_text(encoding="utf-8"))
            names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            assert name in names, (case, ref)
