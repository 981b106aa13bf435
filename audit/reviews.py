"""Review decisions: the ``Decision`` record, its append-only JSONL log, and replay helpers.

The log of a dataset lives at ``<AUDIT_HOME>/<dataset>/reviews.jsonl``. One line per decision,
appended under an exclusive ``fcntl`` lock and made durable with ``os.fsync`` before the dataset
is touched; the file is never rewritten. A line torn by a crash mid-write is skipped with a
warning when read (the writer first ends such a line, so later appends are never glued onto it);
earlier and later decisions are kept.

Each line holds a :class:`LogRecord`: the decision plus the sample's state before and after it,
as plain JSON written by the data layer (``audit.data.review_store``). Undo and replay use those
states; this module treats them as opaque dicts and has no FiftyOne dependency.

Box format of ``Decision.box``: absolute pixel ``xyxy`` (``x1 < x2``, ``y1 < y2``), as everywhere
in ``audit/``; the data layer converts it to FiftyOne's relative ``[x, y, w, h]``.

Example:
    >>> d = Decision(dataset="demo", sample_id="64f0", box_id="64f1", action="fix_class",
    ...              new_label="cat", base_revision=0, reviewer="ana")
    >>> Decision.from_json(d.to_json()) == d
    True
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import unicodedata
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit import constants as C

LOG_NAME = "reviews.jsonl"  # file name of a dataset's review log inside <AUDIT_HOME>/<dataset>/
LOCK_NAME = "reviews.lock"  # writer lock file next to a dataset's review log
LOG_VERSION = 1  # written into every line, so a later format can still read old logs
REVIEW_STATUSES = ("unreviewed", "confirmed", "fixed", "relabel")  # weakest to strongest
ACTION_STATUS = {  # the review status a decision gives its box / sample (undo restores instead)
    "confirm": "confirmed",
    "fix_class": "fixed",
    "delete": "fixed",
    "accept_prediction": "fixed",
    "dismiss": "confirmed",  # a prediction that is no object: the labels stand as they are
    "relabel": "relabel",
}
_NEEDS_BOX_ID = ("fix_class", "delete", "accept_prediction", "dismiss")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
MAX_NAME_CHARS = 100  # longest dataset name ingest accepts (a folder and file names hold it)


def safe_name(name: object, what: str = "dataset name") -> str:
    """Return ``name`` if it can be used as one path component, else raise ``ValueError``.

    Refuses empty names, path separators, ``.``/``..`` components and NUL bytes, so a dataset or
    file name can never lead a write outside the folder it is meant for.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if any(s in name for s in seps) or ".." in name or name in {".", ".."} or "\0" in name:
        raise ValueError(f"{what} {name!r} must not contain path separators or '..'")
    return name


def new_dataset_name(name: object) -> str:
    """Return ``name`` if a new dataset may take it, else ``ValueError`` saying why.

    On top of :func:`safe_name`: at most ``MAX_NAME_CHARS`` characters (and twice that in UTF-8
    bytes), so ``<name>/reviews.jsonl`` and ``<name>-<split>-relabel.csv`` stay within a file
    system's 255-byte name limit, and no control characters (newlines, tabs, ...).
    """
    name = safe_name(name)
    size = (f"{len(name)} characters" if len(name) > MAX_NAME_CHARS else
            f"{len(name.encode('utf-8'))} bytes in UTF-8"
            if len(name.encode("utf-8")) > 2 * MAX_NAME_CHARS else None)
    if size is not None:
        raise ValueError(f"dataset name {name[:40]!r}... is {size} long; use at most "
                         f"{MAX_NAME_CHARS} characters ({2 * MAX_NAME_CHARS} bytes): it also "
                         "names a folder and the export files")
    bad = sorted({c for c in name if unicodedata.category(c).startswith("C")})
    if bad:
        raise ValueError(f"dataset name {name!r} holds control or invisible character(s) "
                         f"{', '.join(map(repr, bad))}; use letters, digits, spaces and "
                         "punctuation other than '/' and '\\'")
    return name


def _now() -> str:
    """Current UTC time, ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, kw_only=True)
class Decision:
    """One reviewer decision on one sample or one box.

    Attributes:
        decision_id: 32 hex characters (uuid4), unique over all logs.
        dataset: FiftyOne dataset name.
        sample_id: FiftyOne sample id.
        box_id: FiftyOne detection id the decision is about (a ``ground_truth`` box, or a
            ``predictions`` box for ``accept_prediction`` of a missing object and for
            ``dismiss``, which marks a prediction as no object); None for an image-level
            decision.
        action: one of ``constants.REVIEW_ACTIONS``.
        new_label: class name for ``fix_class`` (required) and optionally for
            ``accept_prediction``.
        box: absolute pixel ``(x1, y1, x2, y2)`` replacement box (``accept_prediction`` on a
            ground-truth box), or None.
        note: free text.
        reviewer: who decided.
        base_revision: the sample's review revision the reviewer saw (0 = never reviewed). The
            decision applies only if the sample is still at that revision.
        created_at: ISO 8601 UTC timestamp.
    """

    decision_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    dataset: str
    sample_id: str
    box_id: str | None = None
    action: str
    new_label: str | None = None
    box: tuple[float, float, float, float] | None = None
    note: str = ""
    reviewer: str = ""
    base_revision: int
    created_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        """Validate every field; ``box`` is normalised to a float tuple."""
        if not isinstance(self.decision_id, str) or not _HEX32.match(self.decision_id):
            raise ValueError(f"decision_id must be 32 hex characters, got {self.decision_id!r}")
        safe_name(self.dataset)
        for key in ("sample_id", "created_at"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"decision {self.decision_id}: {key} must be a non-empty string")
        if self.action not in C.REVIEW_ACTIONS:
            raise ValueError(f"decision {self.decision_id}: action must be one of "
                             f"{C.REVIEW_ACTIONS}, got {self.action!r}")
        if isinstance(self.base_revision, bool) or not isinstance(self.base_revision, int) \
                or self.base_revision < 0:
            raise ValueError(f"decision {self.decision_id}: base_revision must be an int >= 0, "
                             f"got {self.base_revision!r}")
        if self.action in _NEEDS_BOX_ID and not self.box_id:
            raise ValueError(f"decision {self.decision_id}: action {self.action!r} needs a box_id")
        if self.action == "fix_class" and not self.new_label:
            raise ValueError(f"decision {self.decision_id}: fix_class needs a new_label")
        if self.box is not None:
            object.__setattr__(self, "box", _check_box(
                self.box, f"decision {self.decision_id} (sample {self.sample_id})"))

    def to_json(self) -> str:
        """One-line JSON (sorted keys) of this decision."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of this decision (``box`` as a list)."""
        d = asdict(self)
        d["box"] = list(self.box) if self.box is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        """Build a decision from :meth:`to_dict` output; ``ValueError`` on unknown keys."""
        if not isinstance(d, dict):
            raise ValueError(f"a decision must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"decision has unknown key(s) {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        """Parse :meth:`to_json` output; ``ValueError`` if it is not a valid decision."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"decision is not valid JSON ({exc})") from None
        try:
            return cls.from_dict(d)
        except TypeError as exc:  # missing required keys
            raise ValueError(f"decision is incomplete ({exc})") from None


def _check_box(box: Sequence[float], who: str) -> tuple[float, float, float, float]:
    """Validate one absolute pixel ``xyxy`` box; ``who`` names the decision and its sample."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: box must be 4 numbers, got {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{who}: box must be 4 finite numbers, got {box!r}")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{who}: box {values} is not xyxy with x1<x2, y1<y2")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class LogRecord:
    """One log line: a decision and the sample's review state just before and after it.

    Attributes:
        decision: the decision.
        before: JSON state the data layer needs to undo the decision (opaque here).
        after: JSON state the data layer needs to (re)apply the decision (opaque here).
    """

    decision: Decision
    before: dict[str, Any]
    after: dict[str, Any]

    def to_json(self) -> str:
        """One line of JSON, no newline."""
        line = {"v": LOG_VERSION, "decision": self.decision.to_dict(),
                "before": self.before, "after": self.after}
        return json.dumps(line, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> LogRecord:
        """Parse one log line; ``ValueError`` if it is not a record."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
        if not isinstance(d, dict) or d.get("v") != LOG_VERSION:
            raise ValueError(f"not a version-{LOG_VERSION} review record")
        if not isinstance(d.get("before"), dict) or not isinstance(d.get("after"), dict):
            raise ValueError("record lacks its before/after state")
        try:
            decision = Decision.from_dict(d.get("decision"))
        except TypeError as exc:
            raise ValueError(f"decision is incomplete ({exc})") from None
        return cls(decision, d["before"], d["after"])


def log_path(dataset: str, *, home: Path | str | None = None) -> Path:
    """Path of a dataset's review log: ``<home or AUDIT_HOME>/<dataset>/reviews.jsonl``."""
    return Path(home if home is not None else C.AUDIT_HOME) / safe_name(dataset) / LOG_NAME


@contextlib.contextmanager
def _locked(fd: int, mode: int) -> Iterator[None]:
    """Hold an ``fcntl.flock`` lock on ``fd`` for the duration of the block."""
    fcntl.flock(fd, mode)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def writer_lock(dataset: str, *, home=None) -> Iterator[None]:
    """Hold the dataset's exclusive review writer lock (blocks until it is free).

    An ``flock`` on its own open file, so it excludes other processes and other threads alike
    (Streamlit serves sessions from threads of one process); the kernel drops it if the holder
    dies, so a killed writer never leaves it stuck.
    """
    path = log_path(dataset, home=home).with_name(LOCK_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def append_record(record: LogRecord, *, home: Path | str | None = None) -> Path:
    """Append one record to its dataset's log, durably; returns the log path.

    Under an exclusive lock: if the file does not end with a newline (a torn line from a crash)
    a newline is written first, then the record's line in one ``write``, then ``os.fsync``. A new
    log's folder is fsynced too, so the file itself survives a crash.
    """
    path = log_path(record.decision.dataset, home=home)
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (record.to_json() + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with _locked(fd, fcntl.LOCK_EX):
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """fsync a directory so a newly created entry in it is durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(dataset: str, *, sample_id: str | None = None,
                 home: Path | str | None = None) -> list[LogRecord]:
    """All readable records of a dataset's log, in append order; ``[]`` if there is no log.

    Args:
        dataset: dataset name.
        sample_id: only this sample's records (lines are pre-filtered on the raw bytes, so
            reading one sample's history from a large log stays cheap).
        home: folder holding the logs (default ``constants.AUDIT_HOME``).

    Unreadable lines (a crash mid-write, a hand edit) are skipped with one ``warnings.warn``
    each, naming the file and line number; they never hide the other lines.
    """
    path = log_path(dataset, home=home)
    if not path.exists():
        return []
    fd = os.open(path, os.O_RDONLY)
    try:
        with _locked(fd, fcntl.LOCK_SH), os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read()
    finally:
        os.close(fd)
    needle = json.dumps({"sample_id": sample_id}, separators=(",", ":"))[1:-1].encode()
    records = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip() or (sample_id is not None and needle not in line):
            continue
        try:
            record = LogRecord.from_json(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            warnings.warn(f"{path}: line {number}: skipped unreadable review record ({exc})",
                          stacklevel=2)
            continue
        if sample_id is None or record.decision.sample_id == sample_id:
            records.append(record)
    return records


def merge_status(current: str | None, action: str) -> str:
    """Sample status after ``action``: the stronger of the current one and the action's.

    Order: unreviewed < confirmed < fixed < relabel (a pending relabel outlives a later fix).
    """
    now = current if current in REVIEW_STATUSES else "unreviewed"
    new = ACTION_STATUS[action]
    return max(now, new, key=REVIEW_STATUSES.index)


def in_force(applied: Sequence[LogRecord]) -> list[LogRecord]:
    """The applied records no undo reverted, in the order they were applied.

    Args:
        applied: one sample's applied records in the order they were applied.

    Example:
        >>> d = lambda a: LogRecord(Decision(dataset="x", sample_id="s", action=a,
        ...                                  base_revision=0), {}, {})
        >>> [r.decision.action for r in in_force([d("relabel"), d("confirm"), d("undo")])]
        ['relabel']
    """
    stack: list[LogRecord] = []
    for record in applied:
        if record.decision.action == "undo":
            if stack:
                stack.pop()
        else:
            stack.append(record)
    return stack


def undo_target(applied: Sequence[LogRecord]) -> LogRecord | None:
    """The record an ``undo`` reverts: the last applied decision not yet undone.

    Args:
        applied: the sample's applied records in the order they were applied.

    Returns:
        The record on top of the undo stack (each undo pops one), or None if there is none.
    """
    stack = in_force(applied)
    return stack[-1] if stack else None
