"""The scoring modules stay pure: importing one never pulls in the app, FiftyOne or the model.

Each module is imported in a fresh interpreter (``python -c``), so nothing another test imported
can hide or fake a dependency. The interpreters start together to keep the file quick.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("streamlit", "fiftyone", "torch", "ultralytics")
# every module at the top of audit/ (the subpackages data/, ui/, world/ and bench/ may import them)
PURE_MODULES = tuple(f"audit.{p.stem}" for p in sorted((ROOT / "audit").glob("*.py"))
                     if not p.stem.startswith("__"))
_PROBE = (
    "import importlib, sys; importlib.import_module({module!r}); "
    "print(','.join(m for m in {forbidden!r} if m in sys.modules))"
)


@pytest.fixture(scope="module")
def imports() -> dict[str, subprocess.Popen]:
    """One fresh interpreter per module, all started at once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {
        module: subprocess.Popen(
            [sys.executable, "-c", _PROBE.format(module=module, forbidden=FORBIDDEN)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for module in PURE_MODULES
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("module", PURE_MODULES)
def test_module_imports_nothing_forbidden(imports, module):
    out, err = imports[module].communicate(timeout=120)
    assert imports[module].returncode == 0, err
    assert out.strip() == "", f"{module} imports {out.strip()}"


def test_probe_detects_a_forbidden_import():
    """The check itself works: a module that imports one of them is caught."""
    code = _PROBE.format(module="json", forbidden=("json", *FORBIDDEN))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "json"


def test_every_scoring_module_is_probed():
    """The glob finds the scoring modules (an empty list would make the probe vacuous)."""
    assert {"audit.mistakenness", "audit.insight", "audit.insights", "audit.pipeline",
            "audit.inconsistency", "audit.clusters"} <= set(PURE_MODULES)
