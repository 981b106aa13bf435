"""The FiftyOne App on a view, bound to 127.0.0.1; one App per process, started in the background.

Starting the App server takes 10-20 s on a busy machine. :func:`start_app` starts it in a
background thread (pages call it when they show an "Open in FiftyOne App" button, so it is
usually up by the time of a click); :func:`launch_app` points it at the view at once, or says at
once why it cannot: a bad dataset or sample id, an App that failed to start (with the reason),
or one still starting (with the URL it will answer at). The view hides predictions below
``C.APP_MIN_CONFIDENCE`` (a ``filter_labels`` stage the reviewer can remove in the App).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from audit import constants as C

ADDRESS = "127.0.0.1"  # the App is never exposed beyond this machine
_LOCK = threading.Lock()
# "session": the process's one fiftyone Session; "thread": the thread starting it; "error": why
# the last start failed; "port": the port it was started on
_APP: dict[str, Any] = {"session": None, "thread": None, "error": None, "port": None}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ADDRESS, 0))
        return int(sock.getsockname()[1])


def _url(port: int) -> str:
    """The App's URL on ``port``."""
    return f"http://{ADDRESS}:{port}/"


def app_view(name: str, *, sample_ids: Sequence[str] | None = None,
             min_confidence: float = C.APP_MIN_CONFIDENCE) -> Any:
    """The view the App shows: the samples (in this order; None = all) with predictions below
    ``min_confidence`` filtered out (0 keeps them all).

    Raises:
        ValueError: unknown dataset, or sample ids not in it.
    """
    from fiftyone import ViewField as F

    from audit.data.store import load_dataset

    ds = load_dataset(name)
    view = ds.view()
    if sample_ids is not None:
        ids = [str(s) for s in sample_ids]
        view = ds.select(ids, ordered=True)
        if len(view) != len(set(ids)):
            raise ValueError(f"dataset {name!r}: {len(set(ids)) - len(view)} of the "
                             f"{len(set(ids))} sample ids are not in it")
    if min_confidence > 0:
        view = view.filter_labels("predictions", F("confidence") >= float(min_confidence),
                                  only_matches=False)
    return view


def _start(name: str, port: int) -> None:
    """Body of the starting thread: launch the App on dataset ``name``, or keep why not."""
    try:
        import fiftyone as fo

        session = fo.launch_app(app_view(name), address=ADDRESS, port=port, remote=True,
                                auto=False)
        with _LOCK:
            _APP["session"] = session
    except Exception as exc:  # any failure is reported to the next click, not lost in a thread
        with _LOCK:
            _APP["error"] = f"{type(exc).__name__}: {exc}".strip()


def start_app(name: str) -> None:
    """Start this process's App in the background (nothing when it is running or starting)."""
    with _LOCK:
        thread = _APP["thread"]
        if _APP["session"] is not None or (thread is not None and thread.is_alive()):
            return
        _APP["error"], _APP["port"] = None, free_port()
        thread = threading.Thread(target=_start, args=(name, _APP["port"]), daemon=True,
                                  name="fiftyone-app-start")
        _APP["thread"] = thread
    thread.start()


def app_status() -> tuple[str, str | None]:
    """``("stopped" | "starting" | "running" | "failed", URL or the failure's reason)``."""
    with _LOCK:
        session, thread, error, port = (_APP[k] for k in ("session", "thread", "error", "port"))
    if session is not None:
        return "running", _url(session.server_port)
    if thread is not None and thread.is_alive():
        return "starting", _url(port)
    if error:
        return "failed", error
    return "stopped", None


def _show(session: Any, view: Any, connect_s: float) -> None:
    """Point the session at ``view``; a new session may need a moment to connect."""
    deadline = time.monotonic() + connect_s
    while True:
        try:
            session.view = view
            return
        except RuntimeError as exc:  # "Client is not connected": the App's event stream not yet
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the FiftyOne App did not take the view: {exc}") from exc
            time.sleep(0.2)


def launch_app(name: str, *, sample_ids: Sequence[str] | None = None,
               min_confidence: float = C.APP_MIN_CONFIDENCE, wait_s: float = C.APP_WAIT_S,
               connect_s: float = C.APP_CONNECT_S) -> str:
    """Show dataset ``name`` (optionally only ``sample_ids``) in this process's FiftyOne App.

    Args:
        name: a persistent dataset name.
        sample_ids: restrict the view to these samples, in this order; None = whole dataset.
        min_confidence: predictions below it are filtered out of the view.
        wait_s: how long to wait for an App still starting before saying so.
        connect_s: how long a new App may take to accept the view.

    Returns:
        The App's URL, ``http://127.0.0.1:<port>/``, showing the view.

    Raises:
        ValueError: unknown dataset, or sample ids not in it.
        RuntimeError: the App failed to start (the reason; the next call tries again), or is
            still starting after ``wait_s`` (the URL it will answer at).

    Example:
        >>> launch_app("yolo-audit-demo", sample_ids=["64f0..."])  # doctest: +SKIP
        'http://127.0.0.1:5151/'
    """
    view = app_view(name, sample_ids=sample_ids, min_confidence=min_confidence)
    start_app(name)
    thread = _APP["thread"]
    if thread is not None:
        thread.join(timeout=wait_s)
    status, detail = app_status()
    if status == "failed":
        with _LOCK:
            _APP["thread"], _APP["error"] = None, None  # the next click starts it again
        raise RuntimeError(f"the FiftyOne App could not start: {detail}")
    if status != "running":
        raise RuntimeError(f"the FiftyOne App is still starting (10-20 s on a busy machine); "
                           f"click again in a moment, it will answer at {detail}")
    _show(_APP["session"], view, connect_s)
    return str(detail)


def running_url() -> str | None:
    """URL of this process's App, or None if none is running."""
    status, detail = app_status()
    return detail if status == "running" else None
