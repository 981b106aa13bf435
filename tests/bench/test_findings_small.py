"""Finding-power benchmark: truth mapping, metrics, peer adapters, and the small run end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.metrics import evaluate_boxes, evaluate_images, precision_at, ranked
from benchmarks.truth import (
    ERROR_TYPES,
    box_truth,
    convention_rows,
    image_truth,
    parse_boxes,
    read_noise,
)

HEADER = ("split,image_id,annotation_ids,clean_annotation_ids,error_type,clean_bbox,clean_label,"
          "noisy_bbox,noisy_label\n")
NOISE = HEADER + (
    "train,1,11,11,flip,0 0 10 10,ball,0 0 10 10,book\n"
    "train,1,,12,drop,50 50 10 10,ball,,\n"
    "train,1,20,13;14,merge,100 0 10 10;112 0 10 10,book,100 0 22 10,book\n"
    "train,2,21,,spawn,,,5 5 4 4,cone\n"
    "val,1,11,11,shift,0 0 10 10,ball,3 3 10 10,ball\n"
)


@pytest.fixture()
def noise(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_text(NOISE)
    return read_noise(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("", []),
    ("10 20 5 5", [[10, 20, 15, 25]]),
    ("1 2 3 4;0 0 1 1", [[1, 2, 4, 6], [0, 0, 1, 1]]),
    ("[10, 20, 5, 5]", [[10, 20, 15, 25]]),
    ("[[1, 1, 1, 1], [2, 2, 2, 2]]", [[1, 1, 2, 2], [2, 2, 4, 4]]),
])
def test_parse_boxes_converts_xywh_to_xyxy(text, expected):
    assert parse_boxes(text).tolist() == np.asarray(expected, float).reshape(-1, 4).tolist()


@pytest.mark.parametrize(("row", "message"), [
    ("train,1,5,5,smudge,0 0 1 1,a,0 0 1 1,a", "error_type 'smudge'"),
    ("train,x,5,5,flip,0 0 1 1,a,0 0 1 1,a", "row 2"),
    ("train,1,5,5,flip,0 0 -1 1,a,0 0 1 1,a", "bad box"),
])
def test_read_noise_names_file_and_row(tmp_path, row, message):
    path = tmp_path / "noise.csv"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(ValueError, match=message) as err:
        read_noise(path)
    assert "noise.csv" in str(err.value)


def test_read_noise_rejects_missing_columns(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_text("split,image_id\ntrain,1\n")
    with pytest.raises(ValueError, match="missing"):
        read_noise(path)


def _gt_pred():
    gt = pd.DataFrame({
        "split": ["train"] * 5 + ["val", "val"],
        "image_id": [1, 1, 1, 2, 2, 1, 1],
        "ann_id": [11, 15, 20, 21, 22, 11, 16],
        "box_id": ["flip", "clean1", "merge", "spawn", "clean2", "shift", "clean3"],
    })
    pred = pd.DataFrame({
        "split": ["train"] * 4, "image_id": [1, 1, 1, 1],
        "box_id": ["on_drop", "on_drop_faint", "on_flip", "elsewhere"],
        "x1": [50.5, 50, 0, 200], "y1": [50, 50, 0, 200], "x2": [60, 60, 10, 220],
        "y2": [60, 60, 10, 220], "confidence": [0.9, 0.01, 0.9, 0.3],
    })
    return gt, pred


def test_box_truth_positives_negatives_and_exclusions(noise):
    gt, pred = _gt_pred()
    truth = box_truth(noise, gt, pred, conf_floor=0.1)
    got = {(t, b): e for t, b, e in truth[["error_type", "box_id", "is_error"]].itertuples(
        index=False)}
    assert got[("flip", "flip")] and got[("merge", "merge")] and got[("spawn", "spawn")]
    assert got[("shift", "shift")] and not got[("shift", "clean3")]
    # a box with another error type is no negative; clean boxes are negatives for every type
    assert ("flip", "merge") not in got and ("merge", "flip") not in got
    assert all(not got[(t, "clean1")] for t in ("flip", "shift", "spawn", "merge"))
    # drop: the prediction on the dropped box is positive, the faint one is below the floor,
    # the one on the flipped object is left out, the one on background is a negative
    assert got[("drop", "on_drop")] and not got[("drop", "elsewhere")]
    assert ("drop", "on_drop_faint") not in got and ("drop", "on_flip") not in got


def test_box_truth_keeps_splits_apart(noise):
    gt, pred = _gt_pred()
    truth = box_truth(noise, gt, pred).set_index(["error_type", "box_id"])
    # annotation id 11 is a flip in train and a shift in val: each only in its own split
    assert truth.loc[("flip", "flip"), "split"] == "train"
    assert ("flip", "shift") not in truth.index


def test_convention_boxes_are_left_out(noise):
    noisy = {"train": {"annotations": [
        {"id": 11, "image_id": 1, "bbox": [0, 0, 10, 10]},
        {"id": 30, "image_id": 3, "bbox": [0, 0, 40, 10]}]}}
    clean = {"train": {"annotations": [
        {"id": 11, "image_id": 1, "bbox": [0, 0, 10, 10]},
        {"id": 12, "image_id": 1, "bbox": [50, 50, 10, 10]},
        {"id": 31, "image_id": 3, "bbox": [0, 0, 20, 10]},
        {"id": 32, "image_id": 3, "bbox": [20, 0, 20, 10]}]}}
    conv = convention_rows(noise, noisy, clean)
    assert len(conv) == 1 and conv.iloc[0]["annotation_ids"] == (30,)
    assert conv.iloc[0]["clean_boxes"].tolist() == [[0, 0, 20, 10], [20, 0, 40, 10]]
    gt = pd.DataFrame({"split": ["train"], "image_id": [3], "ann_id": [30], "box_id": ["grp"]})
    pred = pd.DataFrame({"split": ["train"], "image_id": [3], "box_id": ["book"], "x1": [0.0],
                         "y1": [0.0], "x2": [20.0], "y2": [10.0], "confidence": [0.9]})
    truth = box_truth(pd.concat([noise, conv], ignore_index=True), gt, pred)
    assert truth.empty
    images = pd.DataFrame({"sample_id": ["a", "b", "c"], "split": ["train"] * 3,
                           "image_id": [1, 3, 4]})
    assert image_truth(noise, images)["has_error"].tolist() == [True, False, False]
    has = image_truth(pd.concat([noise, conv], ignore_index=True), images)["has_error"]
    assert has.to_dict() == {"a": True, "c": False}  # b: only its convention departs



def test_an_image_with_a_convention_and_an_injected_error_stays_positive(noise):
    images = pd.DataFrame({"sample_id": ["a", "c"], "split": ["train"] * 2, "image_id": [1, 4]})
    conv = pd.DataFrame([{**{c: None for c in noise.columns}, "split": "train", "image_id": i,
                          "error_type": "convention"} for i in (1, 4)])
    has = image_truth(pd.concat([noise, conv], ignore_index=True), images)["has_error"]
    assert has.to_dict() == {"a": True}

def test_flag_precision_and_recall_count_absent_boxes_as_unflagged():
    from benchmarks.metrics import evaluate_flags

    truth = pd.DataFrame({"split": ["val"] * 4 + ["train"] * 2,
                          "error_type": ["flip"] * 4 + ["shift"] * 2,
                          "box_id": ["a", "b", "c", "d", "e", "f"],
                          "is_error": [True, True, False, False, True, False]})
    out = evaluate_flags(truth, {"flip": pd.Series({"a": True, "c": True, "d": False,
                                                    "zz": True}),
                                 "shift": pd.Series(dtype=bool)}).set_index("error_type")
    assert out.loc["flip", ["n_flags", "n_true"]].tolist() == [2, 1]
    assert out.loc["flip", "precision"] == 0.5 and out.loc["flip", "recall"] == 0.5
    assert out.loc["shift", "n_flags"] == 0 and math.isnan(out.loc["shift", "precision"])
    assert out.loc["shift", "recall"] == 0.0


def test_ranked_puts_unscored_last_and_precision_at_k():
    assert ranked(np.array([0.2, np.nan, 0.0])).tolist() == [0.2, -1.0, 0.0]
    assert math.isnan(precision_at(np.array([True]), np.array([1.0]), 0))
    assert precision_at(np.array([False, True, True]), np.array([np.nan, 0.9, 0.1]), 2) == 1.0


def test_evaluate_reports_failures_and_one_class_as_nan_with_reason():
    truth = pd.DataFrame({"error_type": ["flip"] * 4 + ["drop"] * 2, "split": "val",
                          "box_id": list("abcdef"), "is_error": [True, False, False, True,
                                                                  False, False]})
    perfect = pd.Series([0.9, 0.1, 0.2, 0.8, 0.5, 0.5], index=list("abcdef"))
    table = evaluate_boxes(truth, {"good": {"flip": perfect, "drop": perfect}, "bad": "boom"})
    row = table.set_index(["error_type", "method"])
    assert row.loc[("flip", "good"), "auroc"] == 1.0 and row.loc[("flip", "good"), "ap"] == 1.0
    assert math.isnan(row.loc[("drop", "good"), "auroc"])
    assert row.loc[("drop", "good"), "reason"] == "no positives"
    assert row.loc[("flip", "bad"), "reason"] == "boom"
    images = pd.DataFrame({"split": "val", "has_error": [True, False]},
                          index=pd.Index(["a", "b"], name="sample_id"))
    img = evaluate_images(images, {"good": pd.Series({"a": 1.0, "b": 0.0})}, top_k=2)
    assert img.loc[0, "ap"] == 1.0 and img.loc[0, "p_at_100"] == 0.5 and img.loc[0, "k"] == 1


def _frame():
    rows = [("s1", "g_ok", "gt", 10, 10, 50, 50, "a", np.nan),
            ("s1", "g_flip", "gt", 100, 100, 150, 150, "b", np.nan),
            ("s1", "g_spawn", "gt", 300, 300, 330, 330, "a", np.nan),
            ("s1", "p1", "pred", 10, 10, 50, 50, "a", 0.99),
            ("s1", "p2", "pred", 100, 100, 150, 150, "a", 0.98),
            ("s1", "p_missed", "pred", 10, 200, 60, 260, "a", 0.97),
            ("s2", "g2", "gt", 10, 10, 50, 50, "a", np.nan),
            ("s2", "p3", "pred", 10, 10, 50, 50, "a", 0.99)]
    return pd.DataFrame(rows, columns=["sample_id", "box_id", "source", "x1", "y1", "x2", "y2",
                                       "label", "confidence"])


def test_objectlab_scores_point_the_right_way():
    from benchmarks.peers import objectlab_scores

    scores = objectlab_scores(_frame(), ["s1", "s2", "s3"], progress=False)
    box = scores.boxes
    assert box.loc["g_flip", "swap"] > box.loc["g_ok", "swap"]
    assert box.loc["p_missed", "overlooked"] > 0.5 and np.isnan(box.loc["p1", "overlooked"])
    img = scores.samples["image_score"]
    assert img["s1"] > img["s2"] and img["s3"] == 0.0
    values = box.to_numpy().ravel()
    values = values[~np.isnan(values)]
    assert values.size and ((values >= 0) & (values <= 1)).all()


def test_brain_scores_leave_the_dataset_untouched():
    import fiftyone as fo

    from benchmarks.peers import brain_scores

    ds = fo.Dataset()
    frame = _frame()
    for sid in ("s1", "s2"):
        part = frame[frame["sample_id"] == sid]
        dets = {src: [fo.Detection(label=r.label, bounding_box=[r.x1 / 400, r.y1 / 400,
                                                                (r.x2 - r.x1) / 400,
                                                                (r.y2 - r.y1) / 400],
                                   confidence=None if src == "gt" else r.confidence)
                      for r in part[part["source"] == src].itertuples()] for src in ("gt", "pred")}
        ds.add_sample(fo.Sample(filepath=f"/nonexistent/{sid}.png",
                                ground_truth=fo.Detections(detections=dets["gt"]),
                                predictions=fo.Detections(detections=dets["pred"])))
    fields = set(ds.get_field_schema(flat=True))
    scores = brain_scores(ds, progress=False)
    assert set(ds.get_field_schema(flat=True)) == fields and not ds.list_brain_runs()
    ids = ds.values("ground_truth.detections.id")[0]
    box = scores.boxes
    assert box.loc[ids[1], "mistakenness"] > box.loc[ids[0], "mistakenness"]  # the flip
    assert box.loc[ids[2], "possible_spurious"] == 1.0 and box.loc[ids[0], "possible_spurious"] == 0
    assert box["possible_missing"].max() == 1.0
    ds.delete()


def test_run_bench_rejects_unknown_names():
    from benchmarks import run_bench

    with pytest.raises(ValueError, match="unknown benchmark"):
        run_bench("nope")
    with pytest.raises(ValueError, match="size"):
        run_bench("findings", size="huge")
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        run_bench("findings", size="small", seed=-1)


def test_cli_takes_a_world_seed_for_findings_and_leaks_only(capsys):
    from audit.__main__ import main

    assert main(["bench", "speed", "--size", "small", "--seed", "3"]) != 0
    assert "--seed applies to findings and leaks only" in capsys.readouterr().err


def test_another_seed_gets_its_own_world_and_dataset_name(monkeypatch, tmp_path):
    from benchmarks import worlds

    monkeypatch.setattr(worlds.C, "AUDIT_HOME", tmp_path)
    drawn = []
    monkeypatch.setattr("audit.world.generate.generate_world",
                        lambda out, seed, **kw: drawn.append((seed, kw.get("noise_rate")))
                        or out.mkdir(parents=True))
    assert worlds.bench_world("demo", "small").folder.name == "world-small"
    assert drawn == [(worlds.C.SEED, None)]
    assert worlds.bench_world("demo", "small", 7).folder.name == "world-small-seed7"
    assert drawn[-1] == (7, None)
    clean = worlds.bench_world("clean", "small")
    assert clean.folder.name == "world-clean-small" and drawn[-1] == (worlds.C.SEED, 0.0)
    with pytest.raises(ValueError, match="unknown world"):
        worlds.bench_world("moon", "small")


@pytest.mark.slow
def test_small_benchmark_end_to_end(tmp_path):
    from benchmarks import run_bench
    from benchmarks.findings import PEERS

    out = tmp_path / "findings.json"
    report = run_bench("findings", size="small", out=out)
    methods = ("ours", "ours_max", "ours_evidence", *PEERS)
    table = report.boxes.set_index(["split", "error_type", "method"])
    for split in ("train", "val"):
        for etype in ERROR_TYPES:
            for method in methods:
                row = table.loc[(split, etype, method)]
                for metric in ("auroc", "ap"):
                    value = row[metric]
                    assert (0.0 <= value <= 1.0) or (math.isnan(value) and row["reason"]), \
                        (split, etype, method, metric, value, row["reason"])
    images = report.images.set_index(["split", "method"])
    assert set(images.index) == {(s, m) for s in ("train", "val")
                                 for m in ("ours", "ours_max", "brain_sum", *PEERS)}
    for _, row in images.iterrows():
        assert (0.0 <= row["ap"] <= 1.0) or (math.isnan(row["ap"]) and row["reason"])
    merge = report.boxes.query("error_type == 'merge' and method == 'ours'")
    assert (merge["auroc"] > 0.5).all(), merge
    flags = report.flags.set_index(["split", "error_type"])
    assert set(flags.index) == {(s, t) for s in ("train", "val") for t in ERROR_TYPES}
    assert (flags["n_true"] <= flags[["n_flags", "n_pos"]].min(axis=1)).all(), flags
    with_flags = flags[flags["n_flags"] > 0]
    assert ((with_flags["precision"] - with_flags["n_true"] / with_flags["n_flags"]).abs()
            < 1e-12).all()
    assert flags["n_true"].sum() > 0, flags  # the default thresholds find something
    assert out.is_file() and '"boxes"' in out.read_text() and '"flags"' in out.read_text()
    assert "Flags of ours" in report.text()
    clean = report.clean.set_index("split")
    assert set(clean.index) == {"train", "val"}
    assert (clean["n_flagged"] <= clean["n_clean_images"]).all(), clean
    assert report.targets["target"].str.startswith("clean images flagged").any()


def test_a_type_the_world_cannot_hold_makes_no_target():
    from benchmarks.findings import check_targets

    rows = [{"split": "val", "error_type": "flip", "method": m, "auroc": math.nan, "ap": math.nan,
             "n_pos": 0, "n_neg": 5, "coverage": 1.0, "reason": "no positives"}
            for m in ("ours", "brain", "objectlab")]
    rows += [{"split": "val", "error_type": "drop", "method": m, "auroc": a, "ap": a, "n_pos": 3,
              "n_neg": 5, "coverage": 1.0, "reason": ""}
             for m, a in (("ours", 0.9), ("brain", 0.5), ("objectlab", 0.5))]
    images = pd.DataFrame([{"split": "val", "method": "ours", "ap": 0.9},
                           {"split": "val", "method": "brain", "ap": 0.5}])
    targets = check_targets(pd.DataFrame(rows), images)
    assert not targets["target"].str.contains("flip").any()  # one class: nothing to flip
    assert targets.set_index("target").loc["ours ahead on drop", "holds"]
