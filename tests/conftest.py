"""Test-wide environment: every tool's state goes to a temporary folder, nothing to the network.

The variables are set before FiftyOne or ultralytics is imported anywhere, since both read their
configuration at import time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

_STATE = Path(tempfile.mkdtemp(prefix="yolo-audit-tests-"))
os.environ.setdefault("AUDIT_HOME", str(_STATE / "audit-home"))
os.environ["AUDIT_APP_WARM_UP"] = "0"  # rendering a page never starts a FiftyOne App server
os.environ["FIFTYONE_DATABASE_DIR"] = str(_STATE / "fiftyone-db")
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ["FIFTYONE_DATASET_ZOO_DIR"] = str(_STATE / "fiftyone-zoo")
os.environ["FIFTYONE_MODEL_ZOO_DIR"] = str(_STATE / "fiftyone-models")
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_VERBOSE"] = "false"
os.environ["YOLO_CONFIG_DIR"] = str(_STATE / "ultralytics")
os.environ["MPLCONFIGDIR"] = str(_STATE / "matplotlib")

# FiftyOne attaches to any database service of this user already running (another test run, the
# app), whatever FIFTYONE_DATABASE_DIR says: the tests start their own server and point at it.
from audit.data.mongo import start_mongod  # noqa: E402

_MONGO = start_mongod(_STATE / "mongo")
os.environ["FIFTYONE_DATABASE_URI"] = _MONGO.uri

# Property tests draw the same examples on every run (a clean clone has no example database, so a
# random draw could fail CI on a commit that changed nothing). `HYPOTHESIS_PROFILE=explore` draws
# fresh examples on each run, to hunt for counterexamples by hand.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_sessionfinish(session, exitstatus):
    """Stop this session's FiftyOne database service, then remove the temporary state folder."""
    database = sys.modules.get("fiftyone.core.odm.database")
    service = getattr(database, "_db_service", None)
    child = getattr(service, "child", None)
    if child is not None:
        service.stop()  # closes the service's stdin: it shuts mongod down and exits
        with contextlib.suppress(Exception):
            child.wait(timeout=30)
    _MONGO.stop()
    shutil.rmtree(_STATE, ignore_errors=True)
