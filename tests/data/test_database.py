"""The auditor knows which database it writes to (issue 17, cases 4 and 19).

- Connected to a FiftyOne database service whose data is not in ``FIFTYONE_DATABASE_DIR`` (a
  service another process of the user started, which FiftyOne attaches to whatever that variable
  says), every command refuses before it reads or writes, naming both folders and what to do.
- A database that goes away or cannot be reached ends a command with one line naming it, not
  pymongo's ``ServerSelectionTimeoutError`` traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fiftyone")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_ds():
    from benchmarks.review_load import build_review_dataset

    ds = build_review_dataset(f"database-{uuid.uuid4().hex[:8]}", 2)
    ds.persistent = True
    yield ds
    ds.delete()


def _server_folder() -> str:
    """The data folder of the server this test process is connected to."""
    import fiftyone.core.odm.database as fodb

    opts = fodb.get_db_client().admin.command("getCmdLineOpts")
    return opts["parsed"]["storage"]["dbPath"]


@pytest.fixture
def attached_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FiftyOne set to use its own service with data in a folder of ours, while the connection it
    holds is to a server whose data is elsewhere (what attaching to another process's does)."""
    import fiftyone as fo

    from audit.data import database

    mine = tmp_path / "my-fiftyone-db"
    monkeypatch.setattr(fo.config, "database_uri", None)
    monkeypatch.setattr(fo.config, "database_dir", str(mine))
    monkeypatch.setattr(database, "_CHECKED", set())
    return mine


def test_a_database_with_its_data_elsewhere_is_refused(small_ds, attached_elsewhere: Path,
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from audit.__main__ import main
    from audit.data import store

    out = tmp_path / "out"
    assert main(["export", "--name", small_ds.name, "--format", "coco", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    for part in (_server_folder(), str(attached_elsewhere), "FIFTYONE_DATABASE_DIR",
                 "FIFTYONE_DATABASE_URI", "Stop that process"):
        assert part in err, part
    assert not out.exists()  # nothing written
    with pytest.raises(ValueError, match="another FiftyOne process"):
        store.create_dataset(f"{small_ds.name}-new", {})
    import fiftyone as fo

    assert not fo.dataset_exists(f"{small_ds.name}-new")


def test_the_database_in_its_own_folder_is_used(small_ds, attached_elsewhere: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import fiftyone as fo

    from audit.data import store

    monkeypatch.setattr(fo.config, "database_dir", _server_folder())
    assert store.load_dataset(small_ds.name).name == small_ds.name


def test_a_database_lost_mid_run_is_one_line(small_ds, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    from pymongo.errors import ServerSelectionTimeoutError

    from audit.__main__ import main

    def lost(*_args, **_kwargs):
        raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused, "
                                          "Timeout: 30s, Topology Description: <...>")

    monkeypatch.setattr("audit.data.exports._export_coco", lost)
    assert main(["export", "--name", small_ds.name, "--format", "coco",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot reach the database ")
    assert os.environ["FIFTYONE_DATABASE_URI"] in err and "run the command again" in err
    assert "Topology" not in err


def test_an_unreachable_database_is_named_at_the_command_line(tmp_path: Path) -> None:
    from audit.data.mongo import free_port

    uri = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=1500"
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri}
    proc = subprocess.run([sys.executable, "-m", "audit", "export", "--name", "any",
                           "--format", "coco", "--out", str(tmp_path / "out")], cwd=REPO,
                          env=env, text=True, capture_output=True, timeout=180, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and uri in errors[0] and "cannot reach the database" in errors[0]
