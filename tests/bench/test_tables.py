"""The benchmarks' one table writer: JSON or CSV, atomic, NaN as null."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.tables import check_out, write_tables

A = pd.DataFrame({"method": ["ours", "peer"], "seconds": [1.5, np.nan]})
B = pd.DataFrame({"target": ["x <= 1"], "holds": [True]})


def test_json_holds_every_table_and_the_extra_keys(tmp_path) -> None:
    out = tmp_path / "sub" / "t.json"
    write_tables(out, {"a": A, "b": B}, {"ratio": float("nan"), "info": {"n": 3}})
    data = json.loads(out.read_text())
    assert data["a"] == [{"method": "ours", "seconds": 1.5}, {"method": "peer", "seconds": None}]
    assert data["b"] == [{"target": "x <= 1", "holds": True}]
    assert data["ratio"] is None and data["info"] == {"n": 3}
    assert [p.name for p in out.parent.iterdir()] == ["t.json"]  # no temporary file left


def test_csv_is_the_table_or_the_tables_stacked(tmp_path) -> None:
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    write_tables(one, {"a": A})
    assert one.read_text().startswith("method,seconds\n")
    write_tables(two, {"a": A, "empty": A.iloc[:0], "b": B})
    stacked = pd.read_csv(two)
    assert stacked["table"].tolist() == ["a", "a", "b"]


def test_a_failed_write_leaves_the_old_file(tmp_path) -> None:
    out = tmp_path / "t.json"
    out.write_text("old")
    with pytest.raises(TypeError):
        write_tables(out, {"a": A}, {"bad": object()})
    assert out.read_text() == "old" and not list(tmp_path.glob("*.tmp"))


def test_only_json_and_csv_are_accepted() -> None:
    check_out(None, "x")
    check_out("t.CSV", "x")
    with pytest.raises(ValueError, match=r"bench x: --out must end in \.json or \.csv"):
        check_out("t.txt", "x")
