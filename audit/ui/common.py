"""Small helpers every page uses: the dataset guard, error display, drawing one sample."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st
from PIL import Image
from pymongo.errors import ConnectionFailure

from audit.data.database import database_lost
from audit.data.images import open_image, rgb_array
from audit.ui import cache, draw
from audit.ui.state import get_state

# Library errors a page shows with st.error instead of a traceback (a lost database included).
SHOWN_ERRORS = (ValueError, FileNotFoundError, PermissionError, NotADirectoryError, OSError,
                KeyError, RuntimeError, ConnectionFailure)


def require_dataset() -> str:
    """Name of the dataset picked on the Start page; stops the page with a hint if none is."""
    name = get_state().dataset
    if not name:
        st.info("Pick or build a dataset on the **Start** page first.")
        st.stop()
    incomplete = cache.overview(name, cache.version(name)).get("score_incomplete")
    if incomplete:  # a scoring killed mid-write: its scores are partly old, partly new
        st.warning(f"{incomplete}. Scores and flags on this page may be wrong until it is "
                   "scored again (Start page).")
    return name


@contextmanager
def shown_errors(what: str) -> Iterator[None]:
    """Show a library error raised inside the block with ``st.error`` (the page goes on)."""
    try:
        yield
    except SHOWN_ERRORS as exc:
        st.error(f"{what} failed: {database_lost(exc) or exc}")


def load_image(path: str) -> Image.Image:
    """Open an image file as the model saw it at ingest: RGB, EXIF orientation applied, 16-bit
    greyscale scaled to 8 bit (:func:`audit.data.images.rgb_array`); raises FileNotFoundError /
    OSError with the path."""
    with open_image(path) as img:
        return Image.fromarray(rgb_array(img))


def draw_sample(
    path: str, boxes: pd.DataFrame, *, highlight_box: str | None = None, show_pred: bool = True,
    min_confidence: float = 0.0,
) -> Image.Image:
    """The sample's image with ground truth (solid green) and predictions (dashed orange).

    Args:
        path: image file.
        boxes: ``views.sample_boxes`` frame (absolute pixel xyxy).
        highlight_box: ``box_id`` drawn in red, thicker, on top.
        show_pred: draw predictions too.
        min_confidence: predictions below this confidence are not drawn (the highlighted one is).

    Returns:
        A new RGB image.
    """
    shown = boxes
    if not show_pred:
        shown = boxes[(boxes["source"] == "gt") | (boxes["box_id"] == highlight_box)]
    else:
        low = (boxes["source"] == "pred") & (boxes["confidence"] < min_confidence)
        shown = boxes[~low | (boxes["box_id"] == highlight_box)]
    is_pred = (shown["source"] == "pred").tolist()
    labels = [f"{lab} {conf:.2f}" if p else str(lab)
              for lab, conf, p in zip(shown["label"], shown["confidence"], is_pred, strict=True)]
    return draw.draw_boxes(
        load_image(path), shown[["x1", "y1", "x2", "y2"]].to_numpy(dtype=float), labels,
        colors=[draw.PRED_COLOR if p else draw.GT_COLOR for p in is_pred],
        highlight=(shown["box_id"] == highlight_box).tolist() if highlight_box else None,
        dashed=is_pred,
    )
