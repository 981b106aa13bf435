"""Speed benchmarks at the small size: each produces a complete, sane table.

Timings are never asserted (the machine may be busy): only that every stage was measured, with
positive finite seconds, and that the ratios are finite.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from audit import constants as C


def _positive_finite(values) -> bool:
    """All values are finite and > 0."""
    return all(math.isfinite(float(v)) and float(v) > 0 for v in values)


@pytest.mark.slow
def test_speed_small_times_every_stage(tmp_path, monkeypatch):
    from benchmarks import run_bench, speed
    from benchmarks.speed import STAGES

    # the "small" run with half its samples: t-SNE and UMAP (each run twice, alone and inside
    # run_all) dominate it, and the test should stay near a minute on two cores
    monkeypatch.setitem(speed.SIZES, "small", 1_000)
    out = tmp_path / "speed.json"
    report = run_bench("speed", size="small", out=out)
    stages = report.stages.set_index("stage")
    assert list(stages.index) == ["inputs", *STAGES, "suite"]
    assert _positive_finite(stages["seconds"]), stages
    assert _positive_finite(stages["peak_mb"]), stages
    assert stages.loc["suite", "peak_mb"] >= stages.loc["run_all", "peak_mb"]
    if report.comparison.empty:
        assert report.skipped.startswith("skipped")
    else:
        methods = report.comparison.set_index("method")["seconds"]
        assert set(methods.index) == {"ours_read", "ours_score", "ours", "brain"}
        assert _positive_finite(methods), methods
        assert math.isfinite(report.ratio) and report.ratio > 0
    assert set(report.targets["target"].str.split().str[0]) == {"suite", "peak", "brain"}
    written = json.loads(out.read_text())
    assert [row["stage"] for row in written["stages"]] == list(stages.index)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_ingest_small_compares_with_bare_predict(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    from benchmarks import run_bench
    from benchmarks.ingest_speed import SIZES

    out = tmp_path / "ingest.csv"
    report = run_bench("ingest", size="small", out=out)
    table = report.table.set_index("method")
    assert set(table.index) == {"ingest", "bare_predict"}
    assert _positive_finite(table["seconds"]) and _positive_finite(table["ms_per_image"])
    assert math.isfinite(report.ratio) and report.ratio > 0
    assert report.info["images"] == SIZES["small"]
    assert out.read_text().startswith("method,seconds")


@pytest.mark.slow
def test_app_small_times_both_pages(tmp_path):
    from benchmarks import run_bench
    from benchmarks.app_speed import NEXT_CLICKS

    out = tmp_path / "app.json"
    report = run_bench("app", size="small", out=out)
    table = report.table.set_index(["page", "measure"])
    for page in ("triage", "latent_space"):
        for state in ("cold", "warm"):
            assert (page, f"first render ({state} caches)") in table.index
    assert ("triage", f"next sample (median of {NEXT_CLICKS})") in table.index
    assert _positive_finite(table["seconds"]), table
    assert table["holds"].map(lambda v: isinstance(v, bool)).all()
    assert len(json.loads(out.read_text())["table"]) == len(table)


def test_benchmarks_reject_bad_output_suffix(tmp_path):
    from benchmarks.app_speed import bench_app
    from benchmarks.ingest_speed import bench_ingest
    from benchmarks.speed import bench_speed

    for bench in (bench_speed, bench_ingest, bench_app):
        with pytest.raises(ValueError, match=r"json or \.csv"):
            bench(size="small", out=tmp_path / "table.txt")
        with pytest.raises(ValueError, match="size"):
            bench(size="huge")


def test_synthetic_app_flags_by_the_scorers_rule():
    """The app benchmark's synthetic flags follow :func:`audit.mistakenness.is_flagged`: a
    prediction scored over the missing threshold but fainter than the confidence floor flags
    neither its box nor its sample."""
    from audit.data.views import BOX_ISSUES
    from audit.mistakenness import is_flagged
    from benchmarks.app_data import SyntheticApp

    app = SyntheticApp.build(300, ["a.jpg"], seed=0)
    boxes = app.boxes
    faint = ((boxes["missing_score"] >= C.FLAG_SCORES["missing"])
             & (boxes["confidence"] < C.MISSING_FLAG_CONF))
    assert faint.any(), "the synthetic world has no faint prediction over the missing threshold"
    for sample_id in boxes.loc[faint, "sample_id"].unique()[:20]:
        rows = app.sample_boxes(sample_id)
        want = np.stack([is_flagged(k, rows[f"{k}_score"], rows["confidence"])
                         for k in BOX_ISSUES], axis=1).any(axis=1)
        assert (rows["flagged_issue"].notna().to_numpy() == want).all()
        missing = boxes[(boxes["sample_id"] == sample_id)]
        expect = is_flagged("missing", missing["missing_score"], missing["confidence"]).any()
        assert ("missing" in app.table.loc[sample_id, "flagged"]) == expect
