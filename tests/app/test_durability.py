"""Crash safety of review decisions: nothing a reviewer was told is saved may be lost to a kill.

Two kills:

- the Streamlit server, SIGKILLed after decisions made in a real browser (plus one decision whose
  writer died between its log line and its dataset write): after a restart every decision is in
  the dataset, in the append-only log under AUDIT_HOME, and shown on the triage page;
- a writer process SIGKILLed in the middle of a stream of decisions, and one killed right after
  its log line: every decision reported as recorded is in the dataset and the log, and opening
  the dataset (what a restarted app does) finishes the ones the kills cut.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest

from tests.app import live
from tests.app.conftest import N_SAMPLES, build_app_dataset

pytest.importorskip("fiftyone")

CUT_WRITER = """
import os, signal, sys
from audit.data import review_store, store
from audit.reviews import Decision

name, sample_id, box_id = sys.argv[1:4]
def _die(*args, **kwargs):  # the process dies after the log line, before the dataset write
    os.kill(os.getpid(), signal.SIGKILL)
review_store._write = _die
review_store.record_decision(store.load_dataset(name), Decision(
    dataset=name, sample_id=sample_id, box_id=box_id, action="fix_class", new_label="person",
    reviewer="cut", base_revision=0))
"""

STREAM_WRITER = """
import sys
from audit.data import review_store, store
from audit.reviews import Decision

name = sys.argv[1]
ds = store.load_dataset(name)
for sample_id, box_ids in zip(ds.values("id"), ds.values("ground_truth.detections.id")):
    revision = 0
    for action, box_id, label in (("confirm", box_ids[1], None), ("fix_class", box_ids[0], "book"),
                                  ("relabel", None, None)):
        decision = Decision(dataset=name, sample_id=sample_id, box_id=box_id, action=action,
                            new_label=label, reviewer="stream", base_revision=revision)
        revision = review_store.record_decision(ds, decision).revision
        print(decision.decision_id, flush=True)  # reported to the reviewer as saved
"""


def _by_file(ds) -> dict[str, str]:
    """``img_00k.png -> sample id``."""
    return {os.path.basename(p): i for p, i in zip(ds.values("filepath"), ds.values("id"),
                                                   strict=True)}


def _cut_writer(name: str, sample_id: str, box_id: str) -> subprocess.CompletedProcess:
    """Run a writer that dies (SIGKILL) between logging a fix_class and writing it."""
    return subprocess.run([sys.executable, "-c", CUT_WRITER, name, sample_id, box_id],
                          cwd=live.ROOT, env=dict(os.environ), capture_output=True, text=True,
                          timeout=300)


def _triage_status(page) -> str:
    """The "Review status: X (revision n)" line of the sample the triage page shows."""
    return page.get_by_text("Review status:").first.inner_text()


def _decide(page, button: str, outcome: str) -> None:
    """Click a triage button and wait for its success message."""
    page.get_by_role("button", name=button).click()
    page.get_by_text(outcome).wait_for()
    live.wait_idle(page)


def _next(page, position: int) -> None:
    """Go to the next sample of the queue (now at 1-based ``position``)."""
    page.get_by_role("button", name="Next ▶").click()
    page.get_by_text(f"{position} / {N_SAMPLES}").wait_for()
    live.wait_idle(page)


@pytest.mark.browser
def test_decisions_survive_a_killed_server(tmp_path):
    from audit.data import review_log, review_store, store
    from audit.reviews import read_records

    live.require_browser()
    name = "app-test-durable"
    ds = build_app_dataset(tmp_path / "images", name)
    files = _by_file(ds)
    log = tmp_path / "streamlit.log"
    server = live.StreamlitServer(log).start()
    try:
        with live.chromium_page() as page:
            live.open_app(page, server, name, reviewer="durable")
            live.go(page, "Triage")
            _decide(page, "Fix class", "Fixed the class of the box")  # img_000: cup -> book
            _next(page, 2)
            _decide(page, "Confirm label", "Confirmed the box")  # img_001
            _next(page, 3)
            _decide(page, "Delete box", "Deleted the box")  # img_002
            _next(page, 4)
            page.get_by_label("Note for the relabelling team").fill("blurred")
            _decide(page, "Mark image for relabelling", "Marked the image")  # img_003
            live.screenshot(page, "durability-1-before-kill")

            cut_box = ds[files["img_004.png"]].ground_truth.detections[0].id
            cut = _cut_writer(name, files["img_004.png"], cut_box)
            assert cut.returncode == -signal.SIGKILL, cut.stderr[-2000:]

            server.kill()
            assert server.proc.returncode == -signal.SIGKILL
            server = live.StreamlitServer(log).start()

            live.open_app(page, server, name, reviewer="durable")
            live.go(page, "Triage")
            page.get_by_text(f"Reviewed 5 of {N_SAMPLES} flagged samples").wait_for()
            shown = {}
            for position in range(1, 6):
                shown[position] = _triage_status(page)
                live.screenshot(page, f"durability-2-after-restart-{position}")
                if position < 5:
                    _next(page, position + 1)
            assert page.get_by_text("gt 'person' → book [fixed]").count()  # the cut decision
    finally:
        server.stop()

    expected = {1: "fixed", 2: "confirmed", 3: "fixed", 4: "relabel", 5: "fixed"}
    for position, status in expected.items():
        assert f"{status} (revision 1)" in shown[position], (position, shown[position])

    ds = store.load_dataset(name)
    ds.reload()
    records = read_records(name)
    assert {r.decision.sample_id for r in records} == {files[f"img_00{k}.png"] for k in range(5)}
    assert {r.decision.action for r in records} == {"fix_class", "confirm", "delete", "relabel"}
    applied = review_log.list_decisions(ds)
    assert len(applied) == 5 and set(applied["state"]) == {"applied"}
    labels = {k: ds[files[f"img_00{k}.png"]][review_store.REVIEWED_FIELD].detections
              for k in range(5)}
    assert [d.label for d in labels[0]] == ["book", "cup"]
    assert labels[1][0].get_field("review_status") == "confirmed"
    assert len(labels[2]) == 1  # the book deleted
    assert [d.label for d in labels[4]] == ["person", "cup"]


def test_acknowledged_decisions_survive_a_killed_writer(tmp_path):
    from audit.data import review_log, review_store, store, views
    from audit.reviews import read_records

    name = "app-test-killed-writer"
    build_app_dataset(tmp_path / "images", name)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(STREAM_WRITER), name],
                              cwd=live.ROOT, env=dict(os.environ), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    acknowledged = []
    try:
        while len(acknowledged) < 20:
            line = writer.stdout.readline()
            assert line, f"the writer stopped early ({writer.poll()})"
            acknowledged.append(line.strip())
        os.kill(writer.pid, signal.SIGKILL)  # in the middle of the next decision
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()
    ds = store.load_dataset(name)
    last = ds.last()
    cut = _cut_writer(name, last.id, last.ground_truth.detections[0].id)
    assert cut.returncode == -signal.SIGKILL, cut.stderr[-2000:]

    ds.reload()  # the writers declared the review fields
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line torn by the kill is skipped with a warning
        logged = [r.decision.decision_id for r in read_records(name)]
    in_dataset = [i for ids in ds.values("review_decision_ids") for i in ids or []]
    assert set(acknowledged) <= set(logged) and set(acknowledged) <= set(in_dataset)
    assert 1 <= len(set(logged) - set(in_dataset)) <= 2  # the cut writer's, maybe the stream's
    assert len(logged) == len(set(logged)) and len(in_dataset) == len(set(in_dataset))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = views.open_dataset(name)  # what a restarted app does first: finish cut decisions
        states = review_log.list_decisions(ds)
    assert set(states["state"]) == {"applied"}, states["state"].value_counts().to_dict()
    revisions = ds.values("review_revision")
    lists = [ids or [] for ids in ds.values("review_decision_ids")]
    assert all((r or 0) == len(ids) for r, ids in zip(revisions, lists, strict=True))
    assert ds[last.id][review_store.REVIEWED_FIELD].detections[0].label == "person"
