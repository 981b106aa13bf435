"""Loading a YOLO11 checkpoint and checking that it is a detector, with errors naming the file.

``load_detector`` returns the :class:`~audit.data.model.Detector` that runs the forward pass.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from audit import constants as C
from audit.data.model import Detector

_TASK_WORDS = {"classify": "a classification model", "segment": "a segmentation model",
               "pose": "a pose model", "obb": "an oriented-box model"}
_PICKLE_WARNED = False


def load_detector(path: str | Path, *, device: str = "cpu",
                  layers: Sequence[int] = C.EMBED_LAYERS) -> Detector:
    """Load and validate a YOLO detection checkpoint.

    Args:
        path: an ultralytics ``.pt`` detection checkpoint (a pickle: load trusted files only).
        device: torch device, e.g. ``"cpu"`` or ``"cuda:0"``.
        layers: layer indices hooked for embeddings and box features.

    Returns:
        A :class:`Detector` in eval mode on ``device``.

    Raises:
        ValueError: naming the file, if it is missing, not a PyTorch checkpoint (empty,
            truncated, corrupted), holds no ultralytics model, or not a detection model.
    """
    global _PICKLE_WARNED
    device = check_device(device)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: model file not found")
    if path.suffix.lower() != ".pt":
        raise ValueError(f"{path}: expected an ultralytics .pt checkpoint, got '{path.suffix}'")
    if not _PICKLE_WARNED:
        _PICKLE_WARNED = True
        warnings.warn(".pt checkpoints are pickles that can run code when loaded: load only files "
                      "from a trusted source", UserWarning, stacklevel=2)
    yolo = _load_yolo(path)
    found = _not_a_detector(yolo)
    if found is not None:
        raise ValueError(f"{path}: expected a detection model, found {found}")
    yolo.model.to(device)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return Detector(yolo, path, device=device, layers=layers)


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of the file's SHA-256: identifies a checkpoint (recorded at ingest)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def load_ingested_detector(path: str | Path, sha: str | None, *, dataset: str,
                           device: str = "cpu",
                           layers: Sequence[int] = C.EMBED_LAYERS) -> Detector:
    """The checkpoint dataset ``dataset`` was ingested with, refused when the file now at its
    recorded ``path`` is not the one whose digest (:func:`file_digest`) ingest recorded.

    A replaced ``.pt`` is never unpickled (it can run code), and heatmaps never come from a model
    other than the one whose predictions the dataset holds.

    Raises:
        ValueError: naming the file, the dataset and what to do: the file is gone, it changed
            since ingest, or the dataset records no digest; else as :func:`load_detector`.

    Example:
        >>> info = store.audit_info(ds)  # doctest: +SKIP
        >>> det = load_ingested_detector(info["model"], info["model_sha"], dataset=ds.name)
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: the checkpoint dataset {dataset!r} was ingested with is "
                         "gone: put it back at this path, or ingest the dataset again")
    if not sha:
        raise ValueError(f"{path}: dataset {dataset!r} records no digest of its checkpoint, so "
                         "this file cannot be told from another: ingest the dataset again")
    found = file_digest(path)
    if found != sha:
        raise ValueError(f"{path}: this checkpoint changed since dataset {dataset!r} was "
                         f"ingested (sha256 {sha}... then, {found}... now) and was not loaded: "
                         "its heatmaps would come from another model, and a replaced .pt can "
                         "run code. Put the original file back at this path, or ingest the "
                         "dataset again with the new model")
    return load_detector(path, device=device, layers=layers)


def available_devices() -> list[str]:
    """The torch devices this machine can run the model on: ``cpu``, ``cuda:<i>``, ``mps``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(device: object) -> str:
    """Return ``device`` if the model can run there, else a ValueError naming the option and the
    devices available (``cuda`` alone means ``cuda:0``).

    Example:
        >>> check_device("cpu")
        'cpu'
    """
    available = available_devices()
    try:
        parsed = torch.device(device) if isinstance(device, str) and device.strip() else None
    except (RuntimeError, ValueError):
        parsed = None
    ok = parsed is not None and (parsed.type == "cpu" or (
        f"{parsed.type}:{parsed.index or 0}" if parsed.type == "cuda" else parsed.type)
        in available)
    if not ok:
        why = ("CUDA is not available on this machine" if parsed is not None
               and parsed.type == "cuda" and not torch.cuda.is_available()
               else "not a device this machine has" if parsed is not None
               else "not a torch device name")
        raise ValueError(f"--device {device!r}: {why}; the devices available here: "
                         f"{', '.join(available)}")
    return device  # type: ignore[return-value]


def _not_a_detector(yolo: Any) -> str | None:
    """None for a YOLO detection model, else what the checkpoint holds (for the error message).

    The head decides first (Segment, Pose and OBB heads subclass Detect; a checkpoint saved without
    ``train_args`` may carry a wrong task), then ultralytics' task.
    """
    from ultralytics.nn.modules.head import OBB, Classify, Detect, Pose, Segment

    net = getattr(yolo, "model", None)
    layers = getattr(net, "model", None)
    head = layers[-1] if isinstance(layers, torch.nn.Sequential) and len(layers) else None
    kind = type(net).__name__
    for head_type, task in ((Segment, "segment"), (Pose, "pose"), (OBB, "obb"),
                            (Classify, "classify")):
        if isinstance(head, head_type):
            return f"{_TASK_WORDS[task]} ({kind} with a {type(head).__name__} head)"
    task = getattr(yolo, "task", None)
    if isinstance(head, Detect) and task == "detect":
        return None
    if task in _TASK_WORDS:
        return _TASK_WORDS[task]
    return f"a {kind} whose last layer is {type(head).__name__}, not a Detect head"


def _first_line(exc: BaseException) -> str:
    """First non-empty line of an exception's message without ultralytics' decorations."""
    text = str(exc).replace("ERROR ❌️", "").strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    return line.split(". ")[0] if len(line) > 120 else line  # torch's zip errors run on


# torch.save's legacy (pre-zip) format opens with its magic number pickled at protocol 2.
_LEGACY_TORCH_HEADER = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


def _torch_container(path: Path) -> bool:
    """Whether ``path`` is laid out as torch.save writes a file: a complete zip archive (the
    default since torch 1.6) or the legacy pickle stream that opens with torch's magic number."""
    import zipfile

    try:
        with path.open("rb") as f:
            head = f.read(len(_LEGACY_TORCH_HEADER))
        return head == _LEGACY_TORCH_HEADER or zipfile.is_zipfile(path)
    except OSError:
        return False


def _load_yolo(path: Path) -> Any:
    """``ultralytics.YOLO(path)``, any loading failure turned into a ValueError naming the file."""
    import pickle
    import zipfile

    from ultralytics import YOLO

    try:
        return YOLO(str(path))
    except Exception as exc:  # ultralytics raises TypeError, pickle errors, RuntimeError, ...
        cause = exc.__cause__ or exc
        # Arbitrary bytes fail the unpickler in arbitrary ways (ValueError, KeyError, ...), so the
        # container decides first: torch writes a zip archive (or, before 1.6, a pickle that opens
        # with its magic number); a file that is neither cannot be a checkpoint at all.
        damaged = (not _torch_container(path)
                   or "not a loadable checkpoint" in str(exc)
                   or isinstance(cause, EOFError | OSError | pickle.UnpicklingError
                                 | zipfile.BadZipFile)
                   or (isinstance(cause, RuntimeError) and any(
                       w in str(cause) for w in ("PytorchStreamReader", "magic number"))))
        if damaged and "outside the supported" not in str(exc):
            raise ValueError(f"{path}: not a PyTorch checkpoint: the file is empty, truncated or "
                             f"corrupted ({type(cause).__name__}: {_first_line(cause)})") from exc
        if "outside the supported" in str(exc) or isinstance(exc, AttributeError | KeyError):
            reason = "it holds no model (expected a dict whose 'model' is the nn.Module)"
        else:
            reason = _first_line(exc).replace(str(path), "the file")
        raise ValueError(f"{path}: not a PyTorch checkpoint of an ultralytics YOLO model: "
                         f"{reason}") from exc
