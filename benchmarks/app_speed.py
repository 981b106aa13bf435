"""App speed benchmark (``python -m audit bench app``): page render times at 100k samples.

The triage and latent-space pages run through ``streamlit.testing.v1.AppTest`` on a synthetic
samples table shaped like :func:`audit.data.views.samples_table`'s (100,000 samples at the full
size, 2,000 at the small one; built from :func:`benchmarks.synthetic.make_frames` with its
metadata, per-issue scores, flags, clusters and three projections). Building and ingesting a real
FiftyOne dataset of that size takes far longer than the benchmark, so the data-layer functions
under the page caches are replaced for the run: ``views.samples_table`` returns the synthetic
table, ``views.sample_boxes`` the synthetic boxes of one sample with their scores, and the
dataset handle, version token, overview, review state and review progress are stubs. Everything
above them is the real code: ``streamlit_app.py``, the pages, ``audit.ui.cache`` with its
``st.cache_data`` (which pickles the table on every hit), the queue, the filters, the Altair
scatter with its hulls, and drawing the sample image (real JPEG files). What the stubs leave out
is FiftyOne's own time: reading the table from the database on a cold cache, and the per-rerun
review-progress counts and one-sample reads.

Measured, per page: the first render after switching to it from the Start page with every cache
cleared (``cold``) and in a new session whose caches are filled (``warm``); on triage, the
``Next`` button (median of ``NEXT_CLICKS`` clicks); on latent space, a colour change (median of
``NEXT_CLICKS`` reruns). Page modules' imports are paid before the timings.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from audit import constants as C
from benchmarks.app_data import SyntheticApp, write_images
from benchmarks.tables import check_out, write_tables

SIZES = {"small": 2_000, "full": 100_000}  # synthetic samples per benchmark size
FIRST_RENDER_TARGET_S = 2.0  # a page's first render must take less than this
NEXT_SAMPLE_TARGET_S = 0.3  # the triage page's next sample must take less than this
NEXT_CLICKS = 5  # timed Next clicks (and latent-space colour changes); the median counts
N_IMAGES = 16  # distinct JPEG files the synthetic samples point to
BENCH_DATASET = "bench-app-synthetic"  # name of the stub dataset
APP_TIMEOUT_S = 600.0  # AppTest run timeout (a cold 100k render is slow on a busy machine)
_BARE_MODE_LOGGERS = ("scriptrunner_utils.script_run_context", "caching.cache_data_api",
                      "caching.cache_resource_api")  # warn that AppTest has no server runtime


@dataclass(frozen=True)
class AppReport:
    """Tables of one app-speed run.

    Attributes:
        table: one row per (page, measure): ``seconds``, ``target_s``, ``holds``, ``note``.
        info: samples, flagged samples, queue length.
    """

    table: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The table as plain text."""
        head = ", ".join(f"{k} {v}" for k, v in self.info.items())
        return "\n\n".join([f"App speed ({head})",
                            self.table.to_string(index=False, float_format=lambda v: f"{v:.3f}")])


def bench_app(*, size: str = "full", out: str | Path | None = None, progress: bool = True,
              echo: bool = True) -> AppReport:
    """Time the triage and latent-space pages on a synthetic samples table.

    Args:
        size: "small" (2,000 samples) or "full" (100,000).
        out: also write the table here (``.json`` or ``.csv``; temporary file, then rename).
        progress: show a progress bar over the measurements.
        echo: print the table (this is a command-line report).

    Returns:
        AppReport.

    Raises:
        ValueError: unknown size or output suffix; ``streamlit_app.py`` not found.
        RuntimeError: a page raised or showed an error while being timed.

    Example:
        >>> report = bench_app(size="small", echo=False)  # doctest: +SKIP
    """
    if size not in SIZES:
        raise ValueError(f"bench app: size must be one of {tuple(SIZES)}, got {size!r}")
    check_out(out, "app")
    app = Path(__file__).resolve().parents[1] / "streamlit_app.py"
    if not app.is_file():
        raise ValueError(f"bench app: the Streamlit entry point {app} is missing")
    n = SIZES[size]
    bar = tqdm(total=2 + 2 * 3, desc="bench app", unit="step", disable=not progress)
    with bar, tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        bar.set_postfix_str("synthetic table")
        data = SyntheticApp.build(n, write_images(Path(tmp), N_IMAGES), seed=C.SEED)
        bar.update(1)
        with _quiet_streamlit(), _stubbed_data_layer(data):
            bar.set_postfix_str("imports")
            _import_pages()
            bar.update(1)
            rows = _measure(app, bar)
    table = pd.DataFrame(rows, columns=["page", "measure", "seconds", "target_s", "holds",
                                        "note"])
    report = AppReport(table, {"samples": n, "flagged": int(data.table["flagged"].map(bool).sum()),
                               "size": size})
    if out is not None:
        write_tables(out, {"table": report.table}, {"info": report.info})
    if echo:
        print(report.text())
    return report


@contextmanager
def _stubbed_data_layer(data: SyntheticApp) -> Iterator[None]:
    """Replace the FiftyOne-backed view functions under the page caches for the block."""
    from audit.data import review_store, views

    handle = SimpleNamespace(name=BENCH_DATASET, info={})  # nothing stored: default settings
    flagged = int(data.table["flagged"].map(bool).sum())
    overview = {"name": BENCH_DATASET, "n_samples": len(data.table),
                "splits": data.table["split"].value_counts().to_dict(),
                "classes": list(data.classes), "scored_at": "synthetic", "model": None,
                "ingest": {}, "complete": True}
    stubs = [
        (views, "list_datasets", lambda: [BENCH_DATASET]),
        (views, "open_dataset", lambda name: handle),
        (views, "dataset_version", lambda ds: "synthetic-1"),
        (views, "samples_table", lambda ds: data.table),
        (views, "sample_boxes", lambda ds, sid: data.sample_boxes(sid)),
        (views, "sample_review", lambda ds, sid: {"revision": 0, "status": "unreviewed"}),
        (views, "dataset_overview", lambda ds: dict(overview)),
        (views, "insights", lambda ds: []),
        (review_store, "review_progress", lambda ds: (0, flagged)),
    ]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in stubs]
    try:
        for mod, name, value in stubs:
            setattr(mod, name, value)
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


# --- timing the pages ------------------------------------------------------------------------

@contextmanager
def _quiet_streamlit() -> Iterator[None]:
    """Silence Streamlit's bare-mode warnings (no runtime, no script context) for the block."""
    import logging

    def drop(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    loggers = [logging.getLogger(f"streamlit.runtime.{name}") for name in _BARE_MODE_LOGGERS]
    for lg in loggers:
        lg.addFilter(drop)  # a filter, since AppTest resets the log levels on every run
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(drop)


def _import_pages() -> None:
    """Import what the pages import, so module imports stay out of the timings."""
    import altair  # noqa: F401
    from streamlit.testing.v1 import AppTest  # noqa: F401

    from audit.data import review_store, views  # noqa: F401
    from audit.ui import cache, charts, common, decide, draw, queue  # noqa: F401


def _clear_caches() -> None:
    """Empty every ``st.cache_data`` / ``st.cache_resource`` cache of this process."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def _start(app: Path) -> Any:
    """A new session on the Start page with the synthetic dataset picked (untimed)."""
    from streamlit.testing.v1 import AppTest

    from audit.ui.state import STATE_KEY, AppState

    at = AppTest.from_file(str(app), default_timeout=APP_TIMEOUT_S)
    at.session_state[STATE_KEY] = AppState(dataset=BENCH_DATASET, reviewer="bench")
    _check(at.run(), "the Start page")
    return at


def _timed(at: Any, what: str, must_show: str | None = None) -> float:
    """Seconds of one ``at.run()``, which must end without an exception or error box."""
    t = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t
    _check(at, what, must_show)
    return seconds


def _check(at: Any, what: str, must_show: str | None = None) -> Any:
    """Raise when the page raised, showed an error, or lacks a ``must_show`` element type."""
    if at.exception:
        raise RuntimeError(f"bench app: {what} raised: {at.exception[0].value}")
    if at.error:
        raise RuntimeError(f"bench app: {what} showed an error: {at.error[0].value}")
    if must_show and must_show not in _element_types(at._tree):
        raise RuntimeError(f"bench app: {what} rendered no {must_show} element")
    return at


def _element_types(node: Any) -> set[str]:
    """Types of every element under an AppTest tree node."""
    children = getattr(node, "children", None) or {}
    found = {str(getattr(node, "type", ""))}
    for child in (children.values() if isinstance(children, dict) else children):
        found |= _element_types(child)
    return found


def _row(page: str, measure: str, seconds: float, target: float, note: str = "") -> dict:
    """One table row."""
    return {"page": page, "measure": measure, "seconds": seconds, "target_s": target,
            "holds": bool(seconds < target), "note": note}


def _measure(app: Path, bar: tqdm) -> list[dict[str, Any]]:
    """First renders (cold, warm) of both pages and their per-interaction reruns."""
    rows = []
    pages = {"triage": ("pages/triage.py", "image"),
             "latent_space": ("pages/latent_space.py", "vega_lite_chart")}
    for page, (path, must_show) in pages.items():
        at = None
        for state in ("cold", "warm"):
            bar.set_postfix_str(f"{page} first render ({state})")
            at = _start(app)
            if state == "cold":
                _clear_caches()
            seconds = _timed(at.switch_page(path), f"the {page} page ({state})", must_show)
            rows.append(_row(page, f"first render ({state} caches)", seconds,
                             FIRST_RENDER_TARGET_S))
            bar.update(1)
        bar.set_postfix_str(f"{page} interaction")
        rows.append(_interaction(page, at))
        bar.update(1)
    return rows


def _interaction(page: str, at: Any) -> dict[str, Any]:
    """Median seconds of the page's repeated interaction: Next (triage) or a colour change."""
    times = []
    if page == "triage":
        first = at.session_state["app_state"].triage_position
        for _ in range(NEXT_CLICKS):
            at.button(key="triage_next").click()
            times.append(_timed(at, "the triage page (next sample)", "image"))
        moved = at.session_state["app_state"].triage_position - first
        if moved != NEXT_CLICKS:
            raise RuntimeError(f"bench app: Next moved the queue {moved} places, not "
                               f"{NEXT_CLICKS}")
        return _row(page, f"next sample (median of {NEXT_CLICKS})", statistics.median(times),
                    NEXT_SAMPLE_TARGET_S, f"max {max(times):.3f} s")
    colours = ["mistakenness", "cluster", "split", "loss_cls", "loss"]
    for i in range(NEXT_CLICKS):
        at.selectbox(key="latent_color").set_value(colours[i % len(colours)])
        times.append(_timed(at, "the latent-space page (colour change)", "vega_lite_chart"))
    return _row(page, f"colour change (median of {NEXT_CLICKS})", statistics.median(times),
                FIRST_RENDER_TARGET_S, f"max {max(times):.3f} s; no target given, first-render's")
