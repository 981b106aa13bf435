"""Every knob of audit.config.ScoringConfig reaches the scorer it names, through run_all.

Each row changes one knob on a small builder scene chosen so that the knob matters there, and
checks that the evidence, score or flag it feeds moves; each flag threshold turns a flag over
and leaves every score as it was. A knob missing from the tables fails
``test_every_knob_has_a_row``.
"""

from __future__ import annotations

import functools
import inspect
import warnings

import numpy as np
import pandas as pd
import pytest

from audit import clusters as CL
from audit import pipeline
from audit.config import FIELD_NAMES, FLAG_ONLY_FIELDS, ScoringConfig
from audit.inconsistency import score_inconsistency
from audit.mistakenness import score_boxes
from audit.pipeline import AuditResult, run_all
from tests.builders import boxes_frame, gt, pred, samples_frame

BOX = (100, 100, 200, 200)
BASE = ScoringConfig(projections=("pca",), n_clusters=2)  # quick: no t-SNE / UMAP, k given


def _shifted(dx: float) -> tuple[float, ...]:
    """``BOX`` moved by ``dx`` pixels right and down."""
    return tuple(v + dx for v in BOX)


def _model_scene():
    """Model evidence only: one image per situation a knob decides."""
    rows = [
        gt("s0", BOX, "dog", box_id="flip"), pred("s0", _shifted(13), "car", 0.95),  # IoU 0.61
        gt("s1", BOX, "car", box_id="loose"), pred("s1", _shifted(9), "car", 0.95),  # IoU 0.71
        gt("s2", BOX, "car", box_id="near"), pred("s2", _shifted(55), "car", 0.9),  # IoU 0.11
        pred("s3", BOX, "car", 0.6, box_id="unlabelled"),
        gt("s3", (400, 300, 450, 350), "dog", box_id="lonely"),  # spurious 0.83: below 0.9
        # a group box: a confident member, a hesitant one reaching a little outside it
        gt("s4", (100, 100, 300, 200), "book", box_id="group"),
        pred("s4", (100, 100, 195, 200), "book", 0.9),
        pred("s4", (205, 100, 310, 200), "book", 0.1),
        # a book labelled, another left unlabelled
        gt("s5", (10, 10, 60, 100), "book"), pred("s5", (10, 10, 60, 100), "book", 0.9),
        pred("s5", (300, 300, 350, 400), "book", 0.6),
        gt("s6", BOX, "dog", box_id="boosted"), pred("s6", BOX, "car", 0.6),  # high-loss image
        gt("s7", BOX, "car"), pred("s7", BOX, "car", 0.95),
        gt("s8", BOX, "book"), pred("s8", _shifted(13), "book", 0.9),  # a label's loose copy
    ]
    ids = [f"s{i}" for i in range(9)]
    samples = samples_frame(ids, split=["train", "val"] * 4 + ["train"],
                            loss=[1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 9.0, 0.8, 1.0])
    return samples, boxes_frame(rows), None


def _feature_scene():
    """12 images of a confirmed car and dog, three unconfirmed dog labels on car-like objects,
    and the queries: a flip the model memorised, a label on background, an unlabelled faint
    look-alike."""
    rng = np.random.default_rng(0)
    protos = {n: rng.normal(0, 1, 16) for n in ("car", "dog", "background")}
    rows = []
    for i in range(12):
        s = f"r{i}"
        rows += [(gt(s, (10, 10, 110, 110), "car"), "car"),
                 (pred(s, (11, 10, 110, 111), "car", 0.9), "car"),
                 (gt(s, (300, 200, 400, 300), "dog"), "dog"),
                 (pred(s, (300, 201, 401, 300), "dog", 0.9), "dog")]
    for i in range(3):  # a hesitant model agrees with them (0.3: below the reference bar)
        rows += [(gt(f"u{i}", (10, 10, 110, 110), "dog"), "car"),
                 (pred(f"u{i}", (10, 10, 110, 110), "dog", 0.3), "car")]
    rows += [(gt("t", (10, 10, 110, 110), "dog", box_id="memorised"), "car"),
             (pred("t", (10, 10, 110, 110), "dog", 0.95), "car"),
             (gt("t", (200, 200, 300, 300), "car", box_id="background"), "background"),
             (pred("t", (400, 300, 500, 400), "dog", 0.05, box_id="lookalike"), "dog")]
    boxes = boxes_frame([r for r, _ in rows])
    feats = np.stack([protos[k] + rng.normal(0, 0.3, 16) for _, k in rows]).astype(np.float32)
    ids = [*(f"r{i}" for i in range(12)), *(f"u{i}" for i in range(3)), "t"]
    return samples_frame(ids), boxes, feats


def _size_scene():
    """Tiny labels the model matches loosely everywhere, large ones it matches tightly, and a
    tiny query matched at the tiny labels' usual IoU."""
    rows = []
    tiny = (10, 10, 22, 22)
    for i, d in enumerate(np.linspace(1.2, 2.0, 40)):
        rows += [gt(f"t{i}", tiny), pred(f"t{i}", tuple(v + d for v in tiny))]
    for i, d in enumerate(np.linspace(2.0, 4.0, 40)):
        rows += [gt(f"l{i}", BOX), pred(f"l{i}", _shifted(d))]
    rows += [gt("q", tiny, box_id="tiny"), pred("q", tuple(v + 1.61 for v in tiny))]
    ids = [*(f"t{i}" for i in range(40)), *(f"l{i}" for i in range(40)), "q"]
    return samples_frame(ids), boxes_frame(rows), None


SCENES = {"model": _model_scene, "features": _feature_scene, "size": _size_scene}


@functools.cache
def _run(scene: str, overrides: tuple[str, ...] = ()) -> AuditResult:
    """run_all on a scene with ``BASE`` plus ``key=value`` overrides (cached: rows share bases)."""
    samples, boxes, feats = SCENES[scene]()
    emb = np.random.default_rng(1).normal(size=(len(samples), 8)).astype(np.float32)
    with warnings.catch_warnings():  # tiny scenes: degenerate statistics in the insights
        warnings.simplefilter("ignore")
        return run_all(samples, emb, boxes, feats, config=BASE.with_overrides(list(overrides)))


def _value(result: AuditResult, table: str, row: str | None, column: str):
    """One cell of the result's boxes / samples / classes frame (``row`` None: the column).

    ``<issue>_evidence`` is a box issue's raw evidence (:mod:`audit.mistakenness`), which the
    calibration keeps beside its probability; where nothing was calibrated, the score is it.
    """
    frame = {"boxes": result.boxes.set_index("box_id"), "samples": result.samples,
             "classes": result.classes}[table]
    if column.endswith("_evidence") and column not in frame:
        column = column.removesuffix("_evidence") + "_score"
    return frame[column].tolist() if row is None else frame.loc[row, column]


# knob, new value, scene, where it shows (table, row or None for the whole column, column),
# base overrides. The box issues' knobs are read on the raw evidence, before calibration (a
# monotone map per class, whose own knobs have their rows below).
KNOBS = [
    # audit.mistakenness.score_boxes
    ("match_iou", 0.7, "model", ("boxes", "flip", "wrong_class_evidence"), ()),
    ("localization_iou", 0.9, "model", ("boxes", "loose", "bad_box_evidence"), ()),
    ("size_bins", 1, "size", ("boxes", "tiny", "bad_box_evidence"), ()),
    ("size_iou_quantile", 0.9, "size", ("boxes", "tiny", "bad_box_evidence"), ()),
    ("near_iou", 0.2, "model", ("boxes", "near", "bad_box_evidence"), ()),
    ("k", 20, "features", ("boxes", "memorised", "wrong_class_evidence"), ()),
    ("reference_max", 4, "features", ("boxes", "lookalike", "missing_evidence"), ()),
    ("reference_per_class", 2, "features", ("boxes", "lookalike", "missing_evidence"), ()),
    # the bar is at most the matched labels' median confidence: the knob moves it downward
    ("reference_conf", 0.2, "features", ("boxes", "memorised", "wrong_class_evidence"), ()),
    ("atypical_weight", 1.0, "features", ("boxes", "background", "bad_box_evidence"), ()),
    ("gt_knn_weight", 0.0, "features", ("boxes", "background", "bad_box_evidence"), ()),
    ("class_knn_weight", 1.0, "features", ("boxes", "memorised", "wrong_class_evidence"), ()),
    ("loss_boost", 0.0, "model", ("boxes", "boosted", "wrong_class_evidence"), ()),
    ("look_weight", 0.0, "features", ("boxes", "lookalike", "missing_evidence"), ()),
    ("look_conf", 0.5, "features", ("boxes", "lookalike", "missing_evidence"), ()),
    # the seed draws the kNN reference subsample: it matters once there is one to draw
    ("seed", 1, "features", ("boxes", "lookalike", "missing_evidence"),
     ("reference_per_class=3",)),
    # audit.inconsistency.score_inconsistency
    ("match_iou", 0.7, "model", ("samples", "s8", "partial_labels_score"), ()),
    ("group_convention_score", 0.5, "model", ("classes", "book", "n_group"), ()),
    ("group_contain", 0.95, "model", ("boxes", "group", "group_box_evidence"), ()),
    ("group_min_members", 3, "model", ("boxes", "group", "group_box_evidence"), ()),
    ("group_member_conf", 0.05, "model", ("boxes", "group", "n_members"), ()),
    ("group_evidence_conf", 0.2, "model", ("boxes", "group", "group_box_evidence"), ()),
    ("group_member_max_area", 0.4, "model", ("boxes", "group", "group_box_evidence"), ()),
    ("partial_conf", 0.7, "model", ("samples", "s5", "partial_labels_score"), ()),
    ("mixed_convention_min", 0.6, "model", ("classes", "book", "is_mixed_convention"), ()),
    # audit.calibration: the probabilities of the box issues
    ("prior_error_rate", 0.2, "model", ("boxes", "lonely", "spurious_score"), ()),
    ("decoys_per_type", 10, "features", ("boxes", None, "spurious_score"), ()),
    ("decoys_max_per_image", 1, "features", ("boxes", None, "spurious_score"), ()),
]
# flag-only thresholds: knob, scene, (table, row, score column); the new value is read off the
# score (just above it when flagged, at it when not), so the flag must turn over
FLAGS = [
    ("wrong_class_flag", "model", ("boxes", "flip", "wrong_class_score")),
    ("bad_box_flag", "model", ("boxes", "near", "bad_box_score")),
    ("spurious_flag", "model", ("boxes", "lonely", "spurious_score")),
    ("missing_flag", "model", ("boxes", "unlabelled", "missing_score")),
    ("group_box_flag", "model", ("boxes", "group", "group_box_score")),
    ("partial_labels_flag", "model", ("samples", "s5", "partial_labels_score")),
    # the prediction "unlabelled" has confidence 0.6: flagged (threshold at its score), then not
    ("missing_flag_conf", "model", ("boxes", "unlabelled", "missing_score")),
]
# the class offset of the calibration is kept only where it stands three standard errors from 0,
# which no builder scene's few dozen boxes reach: no score can move, so the test checks that the
# knob reaches the calibration (test_calibration_shrink_reaches_the_calibration)
ELSEWHERE = ("n_clusters", "projections", "calibration_shrink")


def test_every_knob_has_a_row():
    covered = {k for k, *_ in KNOBS} | {k for k, *_ in FLAGS} | set(ELSEWHERE)
    assert covered == set(FIELD_NAMES)
    assert {k for k, *_ in FLAGS} == set(FLAG_ONLY_FIELDS)


@pytest.mark.parametrize(("knob", "value", "scene", "where", "base"), KNOBS,
                         ids=[f"{k}-{w[2]}" for k, _, _, w, _ in KNOBS])
def test_knob_moves_what_it_feeds(knob, value, scene, where, base):
    before = _value(_run(scene, base), *where)
    after_result = _run(scene, (*base, f"{knob}={value}"))
    after = _value(after_result, *where)
    assert after_result.config == BASE.with_overrides([*base, f"{knob}={value}"])
    assert not np.array_equal(before, after, equal_nan=True), (knob, before, after)


def _flag_case(knob: str, scene: str, where: tuple[str, str, str]):
    """The base overrides, the runs before and after, and the item's flag in each."""
    table, row, column = where
    issue = column.removesuffix("_score")
    base: tuple[str, ...] = ()
    if knob == "missing_flag_conf":  # flag the prediction on its score, then raise the floor
        base = (f"missing_flag={float(_value(_run(scene), table, row, column))!r}",)
    before = _run(scene, base)
    score = float(_value(before, table, row, column))
    assert 0.0 < score < 1.0, f"{row}: {column} {score}: no threshold can turn its flag over"

    def flagged(result: AuditResult) -> bool:
        if table == "samples":
            return issue in _value(result, table, row, "flagged")
        return bool(_value(result, table, row, f"is_{issue}_issue"))

    if knob == "missing_flag_conf":
        value = 0.7
    else:
        value = (score + 1.0) / 2 if flagged(before) else score
    after = _run(scene, (*base, f"{knob}={value!r}"))
    return before, after, flagged(before), flagged(after)


@pytest.mark.parametrize(("knob", "scene", "where"), FLAGS, ids=[k for k, *_ in FLAGS])
def test_flag_threshold_turns_the_flag_over_and_no_score(knob, scene, where):
    before, after, was, now = _flag_case(knob, scene, where)
    assert was != now
    table, row, _ = where
    sample = row if table == "samples" else before.boxes.set_index("box_id").loc[row, "sample_id"]
    assert _value(before, "samples", sample, "flagged") != _value(after, "samples", sample,
                                                                  "flagged")
    for frame_a, frame_b in ((before.boxes, after.boxes), (before.samples, after.samples)):
        cols = [c for c in frame_a.columns if str(c).endswith(("_score", "_evidence"))]
        pd.testing.assert_frame_equal(frame_a[cols], frame_b[cols])


def test_calibration_shrink_reaches_the_calibration(monkeypatch):
    seen: list[dict] = []
    calibrate = pipeline.calibrated_box_scores

    def spy(*args, **kw):
        seen.append(kw)
        return calibrate(*args, **kw)

    monkeypatch.setattr(pipeline, "calibrated_box_scores", spy)
    samples, boxes, _ = _model_scene()
    emb = np.random.default_rng(1).normal(size=(len(samples), 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_all(samples, emb, boxes, config=BASE.with_overrides(["calibration_shrink=7"]))
    assert seen[-1]["min_fit"] == 7


def test_run_knobs_reach_clustering(monkeypatch):
    seen: dict[str, list] = {"cluster": [], "reduce": []}
    cluster, reduce = CL.cluster, CL.reduce

    def spy_cluster(*args, **kw):
        seen["cluster"].append(kw)
        return cluster(*args, **kw)

    def spy_reduce(*args, **kw):
        seen["reduce"].append(kw)
        return reduce(*args, **kw)

    monkeypatch.setattr(CL, "cluster", spy_cluster)
    monkeypatch.setattr(CL, "reduce", spy_reduce)
    samples, boxes, _ = _model_scene()
    emb = np.random.default_rng(1).normal(size=(len(samples), 8)).astype(np.float32)
    cfg = BASE.with_overrides(["n_clusters=3", "projections=", "seed=7"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_all(samples, emb, boxes, config=cfg)
    assert result.samples["cluster"].nunique() == 3
    assert not [c for c in result.samples.columns if str(c).startswith("proj_")]
    assert seen["cluster"][-1]["seed"] == seen["reduce"][-1]["seed"] == 7
    assert seen["cluster"][-1]["n_clusters"] == 3


def test_run_all_keywords_still_override_the_config():
    samples, boxes, _ = _model_scene()
    emb = np.random.default_rng(1).normal(size=(len(samples), 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_all(samples, emb, boxes, config=BASE.with_overrides(["k=3"]),
                         n_clusters=3, seed=5)
    assert (result.config.n_clusters, result.config.seed, result.config.k) == (3, 5, 3)
    assert result.samples["cluster"].nunique() == 3


@pytest.mark.parametrize(("scorer", "function"), [("mistakenness", score_boxes),
                                                  ("inconsistency", score_inconsistency)])
def test_the_config_feeds_every_keyword_of_each_scorer(scorer, function):
    params = inspect.signature(function).parameters
    keywords = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(ScoringConfig().scorer_kwargs(scorer)) == keywords
