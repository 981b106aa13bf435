"""Launch the FiftyOne App on a view, bound to 127.0.0.1; one App per process.

The first call starts the App server on a free local port (or ``port``); later calls point the
same session at the new view and return the same URL, so clicking "Open in FiftyOne App" twice
never starts a second server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Any

ADDRESS = "127.0.0.1"  # the App is never exposed beyond this machine
_LOCK = threading.Lock()
_SESSION: dict[str, Any] = {}  # "session": the process's one fiftyone Session


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ADDRESS, 0))
        return int(sock.getsockname()[1])


def launch_app(name: str, *, sample_ids: Sequence[str] | None = None,
               port: int | None = None) -> str:
    """Show dataset ``name`` (optionally only ``sample_ids``) in this process's FiftyOne App.

    Args:
        name: a persistent dataset name.
        sample_ids: restrict the view to these samples, in this order; None = whole dataset.
        port: port of a newly started App (default: a free one); ignored when one is running.

    Returns:
        The App's URL, ``http://127.0.0.1:<port>/``.

    Raises:
        ValueError: unknown dataset, or sample ids not in it.

    Example:
        >>> launch_app("yolo-audit-demo", sample_ids=["64f0..."])  # doctest: +SKIP
        'http://127.0.0.1:5151/'
    """
    import fiftyone as fo

    from audit.data.store import load_dataset

    ds = load_dataset(name)
    view = ds.view()
    if sample_ids is not None:
        ids = [str(s) for s in sample_ids]
        view = ds.select(ids, ordered=True)
        if len(view) != len(set(ids)):
            raise ValueError(f"dataset {name!r}: {len(set(ids)) - len(view)} of the "
                             f"{len(set(ids))} sample ids are not in it")
    with _LOCK:
        session = _SESSION.get("session")
        if session is None:
            session = fo.launch_app(view=view, address=ADDRESS, port=port or free_port(),
                                    remote=True, auto=False)
            _SESSION["session"] = session
        else:
            session.view = view
    return f"http://{ADDRESS}:{session.server_port}/"


def running_url() -> str | None:
    """URL of this process's App, or None if none was launched."""
    session = _SESSION.get("session")
    return None if session is None else f"http://{ADDRESS}:{session.server_port}/"
