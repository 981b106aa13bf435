"""How exports land on disk: atomically, with the user's modes, never over a user's files.

Every export is written to a fresh temporary file or folder next to its final path and moved
into place with ``os.replace``, so a failure leaves the output folder as it was. A YOLO export
that replaces an older one swaps two renames and removes the older copy after the swap, but only
when that folder holds nothing but what an export writes there (:func:`foreign_files`): a file a
user kept in it (a trained ``runs/x/best.pt``, notes, a real image copy) makes the export refuse
instead, naming the files, and nothing is changed. Files and folders get the modes ``open`` and
``mkdir`` would give them (0644 / 0755 under the usual umask 022), not a temporary file's 0600 /
0700.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from audit import constants as C

FOREIGN_SHOWN = 3  # user files named in the refusal of a YOLO export


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and check it is a writable folder (``ValueError`` naming it).

    ``os.access`` answers for the real user (it says no to a 0o500 folder unless run as root); the
    probe file then catches what it cannot see (read-only mounts, root on some file systems).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file, not a folder")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {out} is not writable (permission denied)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"output folder {out} is not writable ({exc.strerror or exc})") from None
    return out


def temporary_path(final: Path) -> Path:
    """A fresh hidden name next to ``final`` for its temporary copy."""
    return final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.tmp"


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success fsync it and ``os.replace`` it.

    The file is created as ``open`` creates one (0o666 less the umask), so the export gets the
    mode any file of the user gets, not ``mkstemp``'s 0o600.
    """
    tmp = temporary_path(final)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _is_export_file(rel: Path, path: Path) -> bool:
    """Whether ``path`` (``rel`` inside the folder) is one a YOLO export writes: dataset.yaml,
    label txt files (and ultralytics' ``*.cache`` of them, stale once labels change) under
    ``labels/<split>/``, image symlinks under ``images/<split>/``."""
    parts = rel.parts
    if parts == ("dataset.yaml",):
        return True
    if len(parts) >= 2 and parts[0] == "labels":
        return (len(parts) >= 3 and parts[1] in C.SPLITS and rel.suffix == ".txt") \
            or (len(parts) == 2 and rel.suffix == ".cache")
    return len(parts) >= 3 and parts[0] == "images" and parts[1] in C.SPLITS \
        and path.is_symlink()


def foreign_files(folder: Path) -> list[Path]:
    """Files under ``folder`` that a YOLO export does not write there (paths relative to it)."""
    out = []
    for root, dirs, names in os.walk(folder):
        for name in names + [d for d in dirs if Path(root, d).is_symlink()]:
            path = Path(root, name)
            rel = path.relative_to(folder)
            if not _is_export_file(rel, path):
                out.append(rel)
    return sorted(out)


def check_replaceable(final: Path) -> None:
    """Refuse (``ValueError``) to replace the folder ``final`` when it holds a user's files."""
    if not final.is_dir() or final.is_symlink():
        return
    foreign = foreign_files(final)
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:FOREIGN_SHOWN])
        more = f" and {len(foreign) - FOREIGN_SHOWN} more" if len(foreign) > FOREIGN_SHOWN else ""
        raise ValueError(
            f"{final} holds {len(foreign)} file(s) the yolo export did not write ({shown}{more}); "
            "the export replaces that folder as a whole: move them out of it, or export with "
            "another --out")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``final``; on success swap it into place.

    An older ``final`` is replaced only when :func:`check_replaceable` allows it (checked before
    and again just before the swap). The folder is made as ``mkdir`` makes one (0o777 less the
    umask), not ``mkdtemp``'s 0o700.
    """
    check_replaceable(final)
    tmp = temporary_path(final)
    tmp.mkdir(0o777)
    old = None
    try:
        yield tmp
        if final.exists() or final.is_symlink():
            check_replaceable(final)
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old / "previous")
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


class _DropMergeNotice(logging.Filter):
    """Drops FiftyOne's "Directory ... already exists; export will be merged" about ``folder``:
    the YOLO export writes each split into its own fresh temporary folder on purpose."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = str(folder)

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the merge notice about this export's folder, True for anything else."""
        args = record.args if isinstance(record.args, tuple) else ()
        return not (str(record.msg).startswith("Directory '%s' already exists")
                    and bool(args) and str(args[0]).startswith(self.folder))


@contextlib.contextmanager
def quiet_merge_notice(folder: Path) -> Iterator[None]:
    """Silence FiftyOne's merge notice about ``folder`` for the duration of the block."""
    logger = logging.getLogger("fiftyone.core.collections")
    notice = _DropMergeNotice(folder)
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)
