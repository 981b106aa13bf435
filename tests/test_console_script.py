"""The console script: `yolo-audit` is `python -m audit` (pyproject [project.scripts])."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_script_entry_is_the_cli_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    module, func = project["scripts"]["yolo-audit"].split(":")
    from importlib import import_module

    assert getattr(import_module(module), func)(["config", "--show"]) == 0


def test_yolo_audit_runs_from_the_environment():
    script = Path(sys.executable).parent / "yolo-audit"
    assert script.is_file(), "make setup installs the project (pip install -e .)"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: yolo-audit")
    for verb in ("ingest", "score", "export", "demo", "bench"):
        assert verb in out.stdout
