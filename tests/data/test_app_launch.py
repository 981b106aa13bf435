"""The FiftyOne App launcher: the view it shows, and a click answered at once (link or reason)."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("fiftyone")

from audit.data import app_launch
from tests.app.conftest import N_SAMPLES, build_app_dataset

NAME = "app-launch-test"


@pytest.fixture
def dataset(tmp_path):
    import fiftyone as fo

    ds = build_app_dataset(tmp_path / "images", NAME)
    yield ds
    fo.delete_dataset(NAME)


@pytest.fixture(autouse=True)
def no_app(monkeypatch):
    """Each test starts with no App in this process."""
    monkeypatch.setattr(app_launch, "_APP", {"session": None, "thread": None, "error": None,
                                             "port": None})


class FakeSession:
    """Stands in for fiftyone's Session: a port, and a view that refuses until connected."""

    def __init__(self, port: int, refusals: int = 0) -> None:
        self.server_port, self.views, self._refusals = port, [], refusals

    @property
    def view(self):
        return self.views[-1] if self.views else None

    @view.setter
    def view(self, value) -> None:
        if self._refusals:
            self._refusals -= 1
            raise RuntimeError("Client is not connected")
        self.views.append(value)


def _fake_launch(monkeypatch, *, delay: float = 0.0, error: Exception | None = None,
                 refusals: int = 0) -> list:
    """Replace fiftyone.launch_app; returns the list of sessions it made."""
    import fiftyone as fo

    made = []

    def launch(view, *, address, port, remote, auto):
        assert address == "127.0.0.1" and remote and not auto
        time.sleep(delay)
        if error is not None:
            raise error
        made.append(FakeSession(port, refusals))
        return made[-1]

    monkeypatch.setattr(fo, "launch_app", launch)
    return made


def _pred_confidences(view) -> list[float]:
    return [d.confidence for s in view for d in s.predictions.detections]


def test_the_view_hides_faint_predictions_and_keeps_the_order(dataset):
    ids = list(reversed(dataset.values("id")[:5]))
    view = app_launch.app_view(NAME, sample_ids=ids, min_confidence=0.75)
    assert view.values("id") == ids
    assert min(_pred_confidences(view)) >= 0.75  # the 0.7 person predictions are hidden
    everything = app_launch.app_view(NAME, min_confidence=0.0)
    assert len(everything) == N_SAMPLES and min(_pred_confidences(everything)) == 0.7
    assert len(dataset.values("predictions.detections")) == N_SAMPLES  # the dataset untouched


@pytest.mark.parametrize(("name", "ids", "message"), [
    ("no-such-dataset", None, "no dataset named 'no-such-dataset'"),
    (NAME, ["000000000000000000000000"], "1 of the 1 sample ids are not in it"),
])
def test_bad_requests_are_refused_at_once_without_starting_an_app(dataset, name, ids, message):
    start = time.monotonic()
    with pytest.raises(ValueError, match=message):
        app_launch.launch_app(name, sample_ids=ids)
    assert time.monotonic() - start < 5
    assert app_launch.app_status() == ("stopped", None)


def test_a_failed_start_says_why_and_the_next_click_tries_again(dataset, monkeypatch):
    _fake_launch(monkeypatch, error=OSError("address already in use"))
    with pytest.raises(RuntimeError, match="could not start: OSError: address already in use"):
        app_launch.launch_app(NAME)
    made = _fake_launch(monkeypatch)
    url = app_launch.launch_app(NAME)
    assert url == f"http://127.0.0.1:{made[0].server_port}/"
    assert app_launch.running_url() == url


def test_an_app_still_starting_is_said_with_its_url_then_opens(dataset, monkeypatch):
    made = _fake_launch(monkeypatch, delay=1.0)
    ids = dataset.values("id")[:3]
    with pytest.raises(RuntimeError, match=r"still starting.*http://127\.0\.0\.1:\d+/"):
        app_launch.launch_app(NAME, sample_ids=ids, wait_s=0.05)
    status, url = app_launch.app_status()
    assert status == "starting"
    assert app_launch.launch_app(NAME, sample_ids=ids, wait_s=5) == url
    assert len(made) == 1 and made[0].view.values("id") == ids  # one App, showing the view


def test_a_new_app_is_given_the_view_once_it_connects(dataset, monkeypatch):
    made = _fake_launch(monkeypatch, refusals=2)
    app_launch.launch_app(NAME, sample_ids=dataset.values("id")[:2])
    assert len(made[0].views) == 1
    made = _fake_launch(monkeypatch, refusals=10**6)
    monkeypatch.setattr(app_launch, "_APP", {"session": None, "thread": None, "error": None,
                                             "port": None})
    with pytest.raises(RuntimeError, match="did not take the view: Client is not connected"):
        app_launch.launch_app(NAME, connect_s=0.3)


def test_start_app_starts_one_thread_only(dataset, monkeypatch):
    made = _fake_launch(monkeypatch, delay=0.3)
    for _ in range(3):
        app_launch.start_app(NAME)
    app_launch._APP["thread"].join(5)
    assert len(made) == 1 and app_launch.app_status()[0] == "running"
    assert not [t for t in threading.enumerate() if t.name == "fiftyone-app-start"]


@pytest.mark.slow
def test_the_real_app_answers_and_shows_the_filtered_view(dataset):
    import urllib.request

    import fiftyone as fo

    ids = dataset.values("id")[:4]
    try:
        url = app_launch.launch_app(NAME, sample_ids=ids, wait_s=120)
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
        session = app_launch._APP["session"]
        assert session.view.values("id") == ids
        assert min(_pred_confidences(session.view)) >= 0.25
    finally:
        fo.close_app()
