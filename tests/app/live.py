"""A real ``streamlit run`` server and a headless Chromium for the end-to-end tests.

The server runs as a subprocess with this process's environment (tests/conftest.py pointed
FIFTYONE_DATABASE_DIR, AUDIT_HOME, ... at temporary folders), so it sees the same FiftyOne
database and review logs as the test. The browser is Debian's ``/usr/bin/chromium`` driven by
playwright's sync API; playwright downloads nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
START_TIMEOUT_S = 90  # the server's first answer on /_stcore/health
RENDER_TIMEOUT_MS = 90_000  # a page's first render (opens FiftyOne, reads the dataset)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def artifacts_dir() -> Path:
    """Folder for screenshots: ``$ARTIFACTS_DIR`` or ``<repo>/artifacts/screenshots``."""
    folder = Path(os.environ.get("ARTIFACTS_DIR") or ROOT / "artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def require_browser() -> None:
    """Skip when ``/usr/bin/chromium`` is absent, unless ``$CI`` is set: then fail.

    playwright itself is a test requirement (requirements-dev.txt): its absence is an error.
    """
    if CHROMIUM.exists():
        return
    reason = f"end-to-end browser test needs Debian's chromium at {CHROMIUM} (`make browser`)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; $CI is set, so this fails instead of skipping")
    pytest.skip(reason)


class StreamlitServer:
    """``streamlit run streamlit_app.py`` on a free port; start, stop, SIGKILL, restart.

    Attributes:
        port: the TCP port.
        url: ``http://127.0.0.1:<port>``.
        log: file receiving the server's stdout and stderr (appended across restarts).
    """

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The command line (the options the project's notes give for a headless server)."""
        return [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
                "--server.headless", "true", "--server.address", "127.0.0.1",
                "--server.port", str(self.port), "--browser.gatherUsageStats", "false",
                "--server.fileWatcherType", "none"]

    def start(self) -> StreamlitServer:
        """Start the server and wait until ``/_stcore/health`` answers 200."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit did not answer in {START_TIMEOUT_S} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL the server process (a crash: no shutdown handler runs) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server politely (SIGTERM), SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, n: int = 4000) -> str:
        """The end of the server's log, for failure messages."""
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@contextlib.contextmanager
def running_server(log: Path) -> Iterator[StreamlitServer]:
    """A started :class:`StreamlitServer`, stopped afterwards."""
    server = StreamlitServer(log).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1300) -> Iterator:
    """A playwright ``Page`` in a fresh headless Chromium (closed afterwards)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(RENDER_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


# --- driving the app -----------------------------------------------------------------------------

def wait_idle(page, timeout_ms: int = RENDER_TIMEOUT_MS) -> None:
    """Wait until the script run is over: no "Running" status, no stale (greyed) element."""
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-stale="true"]')
                 && document.querySelector('[data-testid="stMain"]') !== null""",
        timeout=timeout_ms, polling=200)
    page.wait_for_timeout(300)  # a rerun queued by the last event starts within this
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
                 && !document.querySelector('[data-stale="true"]')""",
        timeout=timeout_ms, polling=200)


def open_app(page, server: StreamlitServer, dataset: str, reviewer: str = "e2e") -> None:
    """Load the Start page, pick ``dataset`` and type the reviewer's name."""
    page.goto(server.url)
    page.get_by_text("YOLO label auditor").first.wait_for()
    wait_idle(page)
    choose(page, "Dataset", dataset)
    page.get_by_text("Scored at").wait_for()
    box = page.get_by_label("Reviewer")
    box.fill(reviewer)
    box.press("Enter")
    wait_idle(page)


def selected(select) -> str:
    """The option a ``stSelectbox`` locator shows (the value of its combobox input)."""
    return select.get_by_role("combobox").input_value()


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (no-op when already chosen)."""
    select = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    if selected(select) == option:
        return
    select.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def go(page, title: str, heading: str | None = None) -> None:
    """Open a page through the sidebar navigation (keeps the session) and wait for it."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=heading or title).first.wait_for()
    wait_idle(page)


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot ``<artifacts>/<name>.png``; returns its path."""
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
