"""audit.mistakenness: wrong class, bad box, spurious and missing scores, and the sample roll-up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import constants as C
from audit.mistakenness import BOX_ISSUES, MistakennessSummary, score_boxes
from audit.rollup import score_samples
from tests.builders import boxes_frame, empty_boxes, gt, pred, random_scene, samples_frame

BOX = (100, 100, 200, 200)
GT_ISSUES = ("wrong_class", "bad_box", "spurious")


def _scores(rows, features=None, samples=None, **kw) -> pd.DataFrame:
    """Score a list of rows; frame indexed by box id."""
    return score_boxes(boxes_frame(rows), features, samples, **kw)[0]


def _shifted(dx: float) -> tuple[float, float, float, float]:
    """``BOX`` moved by ``dx`` pixels right and down."""
    return (BOX[0] + dx, BOX[1] + dx, BOX[2] + dx, BOX[3] + dx)


# --- empty and bad input ------------------------------------------------------------------------


def test_empty_boxes_give_an_empty_frame_and_a_zero_summary():
    frame, summary = score_boxes(empty_boxes())
    assert frame.empty and frame.index.name == "box_id"
    for issue in BOX_ISSUES:
        assert {f"{issue}_score", f"is_{issue}_issue"} <= set(frame.columns)
    assert "suggested_label" in frame.columns
    assert summary == MistakennessSummary(0, 0, 0, 0, 0, 0, "none", 0)


def test_empty_boxes_with_features_and_samples():
    with pytest.warns(UserWarning, match="too few labelled boxes with features"):
        frame, summary = score_boxes(empty_boxes(), np.zeros((0, 8)), samples_frame(["s0"]))
    assert frame.empty and summary.n_gt == 0


@pytest.mark.parametrize(
    ("boxes", "features", "samples", "message"),
    [
        (empty_boxes().drop(columns="confidence"), None, None,
         r"boxes: missing columns \['confidence'\]"),
        (boxes_frame([gt("s0", BOX, box_id="x"), pred("s0", BOX, box_id="x")]), None, None,
         "box_id 'x' appears more than once"),
        (boxes_frame([gt("s0", BOX)]), np.zeros((2, 4)), None,
         r"box_features: expected shape \(1, F\), got \(2, 4\)"),
        (boxes_frame([gt("s0", BOX)]), np.zeros(1), None,
         r"box_features: expected shape \(1, F\), got \(1,\)"),
        (boxes_frame([gt("s0", BOX), gt("s9", BOX)]), None, samples_frame(["s0"]),
         "sample_id 's9' is not in samples"),
        (boxes_frame([gt("s0", BOX)]).assign(source="label"), None, None,
         "expected 'gt' or 'pred'"),
        (boxes_frame([gt("s0", (0, 0, np.inf, 5))]), None, None, "non-finite coordinates"),
    ],
)
def test_score_boxes_rejects_bad_input(boxes, features, samples, message):
    with pytest.raises(ValueError, match=message):
        score_boxes(boxes, features, samples)


# --- gets worse in the right direction (model evidence only) -------------------------------------


def test_scores_apply_only_to_their_source():
    frame = _scores([gt("s0", BOX), pred("s0", BOX, conf=0.95), pred("s0", (300, 300, 350, 350))])
    gt_rows, pred_rows = frame["source"] == "gt", frame["source"] == "pred"
    for issue in GT_ISSUES:
        assert frame.loc[gt_rows, f"{issue}_score"].notna().all()
        assert frame.loc[pred_rows, f"{issue}_score"].isna().all()
        assert not frame.loc[pred_rows, f"is_{issue}_issue"].any()
    assert frame.loc[gt_rows, "missing_score"].isna().all()
    assert frame.loc[pred_rows, "missing_score"].notna().all()


def test_clean_label_scores_low_on_everything():
    frame = _scores([gt("s0", BOX), pred("s0", BOX, conf=0.95)])
    row = frame.loc["b0"]
    for issue in GT_ISSUES:
        assert row[f"{issue}_score"] < 0.1
        assert not row[f"is_{issue}_issue"]
    assert frame.loc["b1", "missing_score"] == 0.0


def test_bad_box_score_rises_with_the_shift():
    shifts = (0, 5, 10, 20, 30, 40)
    scores = [_scores([gt("s0", _shifted(dx)), pred("s0", BOX, conf=0.95)]).loc["b0"]
              ["bad_box_score"] for dx in shifts]
    assert np.all(np.diff(scores) >= 0)
    assert scores[0] < 0.1 < 0.5 < scores[-1]
    shifted = _scores([gt("s0", _shifted(40)), pred("s0", BOX, conf=0.95)])
    assert shifted.loc["b0", "is_bad_box_issue"]
    assert shifted.loc["b0", "wrong_class_score"] == 0.0  # a shift is not a class error


def test_bad_box_expects_the_iou_the_model_reaches_on_boxes_of_that_size():
    """Tiny labels that the model matches loosely everywhere (IoU ~0.55-0.65 at a 1-2 pixel
    offset) are not localisation suspects at IoU 0.6; a large label at IoU 0.6 is, where large
    labels match at 0.9."""
    rows = []
    for i, d in enumerate(np.linspace(1.2, 2.0, 40)):  # references: tiny boxes, loose matches
        tiny = (10, 10, 22, 22)
        rows += [gt(f"t{i}", tiny), pred(f"t{i}", tuple(v + d for v in tiny))]
    for i, d in enumerate(np.linspace(2.0, 4.0, 40)):  # references: large boxes, tight matches
        rows += [gt(f"l{i}", BOX), pred(f"l{i}", _shifted(d))]
    tiny = (10, 10, 22, 22)
    rows += [gt("tq", tiny, box_id="tiny"), pred("tq", tuple(v + 1.61 for v in tiny)),
             gt("lq", BOX, box_id="large"), pred("lq", _shifted(13.4))]
    scores = _scores(rows)
    assert scores.loc["large", "is_bad_box_issue"] and scores.loc["large", "bad_box_score"] > 0.5
    assert scores.loc["tiny", "bad_box_score"] < 0.1 and not scores.loc["tiny", "is_bad_box_issue"]


def test_size_expected_iou_needs_enough_matches_per_size_class():
    from audit.mistakenness import size_expected_iou

    few = size_expected_iou(np.full(20, 0.5), np.ones(20), np.arange(1.0, 21.0), 0.75)
    assert (few == 0.75).all()  # 20 confident matches: one size class, the global threshold
    unsure = size_expected_iou(np.full(80, 0.5), np.full(80, 0.2), np.arange(1.0, 81.0), 0.75)
    assert (unsure == 0.75).all()  # hesitant matches say nothing about localisation
    loose = size_expected_iou(np.full(80, 0.5), np.ones(80), np.arange(1.0, 81.0), 0.75)
    assert (loose == 0.5).all() and (size_expected_iou(
        np.full(80, 0.95), np.ones(80), np.arange(1.0, 81.0), 0.75) == 0.75).all()


def test_a_weak_overlap_with_a_neighbours_prediction_is_no_bad_box():
    """A label that the only nearby prediction overlaps weakly is a bad box when nothing else
    explains that prediction, not when it is a labelled neighbour's."""
    neighbour, echo = _shifted(40), _shifted(35)  # IoU 0.22 and 0.27 with BOX
    alone = _scores([gt("s0", BOX), pred("s0", echo, conf=0.6)])
    # the neighbour's own prediction takes it; a second, weaker one is left for BOX
    beside = _scores([gt("s0", BOX), gt("s0", neighbour), pred("s0", neighbour, conf=0.95),
                      pred("s0", echo, conf=0.6)])
    assert alone.loc["b0", "bad_box_score"] > 0.5  # flagged: the echo is BOX boxed badly
    assert beside.loc["b0", "bad_box_score"] < 0.5 * alone.loc["b0", "bad_box_score"]
    assert beside.loc["b1", "bad_box_score"] < 0.1  # the neighbour itself is well boxed


def test_dropped_label_gives_a_high_missing_score_on_the_prediction():
    clean = _scores([gt("s0", BOX), pred("s0", BOX, conf=0.95)])
    dropped = _scores([gt("s0", (400, 300, 450, 350)), pred("s0", BOX, conf=0.95)])
    assert dropped.loc["b1", "missing_score"] >= 0.9
    assert dropped.loc["b1", "is_missing_issue"]
    assert clean.loc["b1", "missing_score"] < dropped.loc["b1", "missing_score"]


def test_missing_score_follows_the_prediction_confidence():
    confs = (0.05, 0.3, 0.6, 0.9)
    scores = [_scores([pred("s0", BOX, conf=c)]).loc["b0", "missing_score"] for c in confs]
    assert np.all(np.diff(scores) > 0)



def test_a_faint_unlabelled_prediction_ranks_but_is_not_flagged_missing():
    rows = [pred("s0", BOX, conf=0.2)]
    faint = _scores(rows, thresholds={"missing": 0.1})
    assert faint.loc["b0", "missing_score"] > 0.1  # over the threshold, ranked as usual
    assert not faint.loc["b0", "is_missing_issue"]  # but below the confidence floor
    assert _scores(rows, thresholds={"missing": 0.1}, missing_flag_conf=0.15).loc[
        "b0", "is_missing_issue"]

def test_prediction_inside_a_larger_same_class_box_is_not_missing():
    frame = _scores([gt("s0", (100, 100, 300, 200)), pred("s0", (110, 110, 190, 190), conf=0.9)])
    assert frame.loc["b1", "missing_score"] == 0.0


def test_prediction_around_several_labelled_objects_of_its_class_is_not_missing():
    """The model drawing one box around a run of individually labelled books (the group
    convention learnt elsewhere) is no unlabelled object; around one labelled book and empty
    space, or around objects of another class, it still is one."""
    around = (98, 98, 330, 202)  # wide: IoU 0.12 with each book
    books = [gt("s0", (100, 100, 130, 200), "book"), gt("s0", (130, 100, 160, 200), "book")]
    group = _scores([*books, pred("s0", around, "book", conf=0.9)])
    assert group.loc["b2", "missing_score"] == 0.0 and not group.loc["b2", "is_missing_issue"]
    one = _scores([books[0], pred("s0", around, "book", conf=0.9)])
    assert one.loc["b1", "missing_score"] > 0.5 and one.loc["b1", "is_missing_issue"]
    cups = [gt("s0", (100, 100, 130, 200), "cup"), gt("s0", (130, 100, 160, 200), "cup")]
    other_class = _scores([*cups, pred("s0", around, "book", conf=0.9)])
    assert other_class.loc["b2", "missing_score"] > 0.5


def test_flipped_class_gets_a_high_wrong_class_score_and_the_predicted_label():
    flipped = _scores([gt("s0", BOX, "dog"), pred("s0", BOX, "car", conf=0.95)])
    clean = _scores([gt("s0", BOX, "car"), pred("s0", BOX, "car", conf=0.95)])
    assert flipped.loc["b0", "wrong_class_score"] >= 0.9
    assert flipped.loc["b0", "is_wrong_class_issue"]
    assert flipped.loc["b0", "suggested_label"] == "car"
    assert clean.loc["b0", "wrong_class_score"] == 0.0
    assert clean.loc["b0", "suggested_label"] is None  # not NaN: the documented "no label"
    assert flipped.loc["b1", "suggested_label"] is None  # pred rows get none


def test_same_class_prediction_weakens_the_wrong_class_evidence():
    alone = _scores([gt("s0", BOX, "dog"), pred("s0", BOX, "car", conf=0.9)])
    contested = _scores([gt("s0", BOX, "dog"), pred("s0", BOX, "car", conf=0.9),
                         pred("s0", BOX, "dog", conf=0.6)])
    assert contested.loc["b0", "wrong_class_score"] < alone.loc["b0", "wrong_class_score"]
    # the model evidence is the other class's margin: 0.9 - 0.6
    assert contested.loc["b0", "wrong_class_score"] == pytest.approx(0.3)
    outvoted = _scores([gt("s0", BOX, "dog"), pred("s0", BOX, "car", conf=0.6),
                        pred("s0", BOX, "dog", conf=0.9)])
    assert outvoted.loc["b0", "wrong_class_score"] == 0.0


def test_prediction_of_an_overlapping_labelled_object_is_no_class_evidence():
    """Two overlapping objects, a crate behind a ball: the model sees the ball (IoU 0.92 with the
    ball's label, 0.66 with the crate's) and misses the crate. The ball prediction is the ball's,
    not a sign that the crate is mislabelled; without the ball's label it is."""
    crate, ball = (100, 100, 200, 200), (125, 100, 225, 200)  # IoU 0.6
    seen = (120, 100, 222, 200)  # IoU 0.92 with the ball, 0.66 with the crate
    both = _scores([gt("s0", crate, "crate"), gt("s0", ball, "ball"),
                    pred("s0", seen, "ball", conf=0.93)])
    assert both.loc["b0", "wrong_class_score"] == 0.0
    assert both.loc["b1", "wrong_class_score"] == 0.0
    alone = _scores([gt("s0", crate, "crate"), pred("s0", seen, "ball", conf=0.93)])
    assert alone.loc["b0", "wrong_class_score"] >= 0.9
    assert alone.loc["b0", "suggested_label"] == "ball"


def test_unsupported_box_scores_above_a_supported_one():
    supported = _scores([gt("s0", BOX), pred("s0", BOX, conf=0.95)])
    unsupported = _scores([gt("s0", BOX), pred("s0", (400, 300, 450, 350), conf=0.95)])
    assert unsupported.loc["b0", "spurious_score"] > supported.loc["b0", "spurious_score"]


def test_union_of_two_adjacent_objects_gets_a_high_bad_box_score():
    merged = _scores([gt("s0", (100, 100, 300, 200)), pred("s0", (100, 100, 195, 200), conf=0.9),
                      pred("s0", (205, 100, 300, 200), conf=0.9)])
    single = _scores([gt("s0", (100, 100, 195, 200)), pred("s0", (100, 100, 195, 200), conf=0.9),
                      gt("s0", (205, 100, 300, 200)), pred("s0", (205, 100, 300, 200), conf=0.9)])
    assert merged.loc["b0", "bad_box_score"] >= 0.8
    assert merged.loc["b0", "is_bad_box_issue"]
    assert single.loc[["b0", "b2"], "bad_box_score"].max() < 0.1


def test_thresholds_decide_the_flags():
    rows = [gt("s0", _shifted(40)), pred("s0", BOX, conf=0.95)]
    default = _scores(rows)
    strict = _scores(rows, thresholds={"bad_box": 0.99, "missing": 0.99})
    assert default.loc["b0", "is_bad_box_issue"] and not strict.loc["b0", "is_bad_box_issue"]
    assert default.loc["b1", "is_missing_issue"] and not strict.loc["b1", "is_missing_issue"]
    np.testing.assert_allclose(default["bad_box_score"], strict["bad_box_score"])


# --- kNN evidence on per-box features -----------------------------------------------------------


def _feature_scene(extra: list[tuple[dict, str]]):
    """12 reference images of a confirmed car and dog, plus ``extra`` (row, feature kind)."""
    rng = np.random.default_rng(0)
    protos = {name: rng.normal(0, 1, 16) for name in ("car", "dog", "background")}
    rows: list[tuple[dict, str]] = []
    for i in range(12):
        s = f"r{i}"
        rows += [(gt(s, (10, 10, 110, 110), "car"), "car"),
                 (pred(s, (11, 10, 110, 111), "car", 0.9), "car"),
                 (gt(s, (300, 200, 400, 300), "dog"), "dog"),
                 (pred(s, (300, 201, 401, 300), "dog", 0.9), "dog")]
    rows += extra
    boxes = boxes_frame([r for r, _ in rows])
    feats = np.stack([protos[k] + rng.normal(0, 0.3, 16) for _, k in rows]).astype(np.float32)
    ids = boxes["box_id"].iloc[-len(extra):].tolist() if extra else []
    return boxes, feats, ids


def test_box_on_background_gets_a_high_spurious_score():
    boxes, feats, (spurious, clean, _) = _feature_scene([
        (gt("t", (200, 200, 300, 300), "car"), "background"),
        (gt("t", (400, 10, 500, 110), "car"), "car"),
        (pred("t", (400, 10, 500, 110), "car", 0.95), "car"),
    ])
    frame, summary = score_boxes(boxes, feats, k=5)
    assert summary.reference == "confirmed" and summary.n_reference > 5
    assert frame.loc[spurious, "spurious_score"] >= 0.9
    assert frame.loc[spurious, "is_spurious_issue"]
    assert frame.loc[clean, "spurious_score"] < 0.1
    model_only = score_boxes(boxes, None, k=5)[0]
    assert frame.loc[spurious, "spurious_score"] > model_only.loc[spurious, "spurious_score"]


def test_neighbours_catch_a_flip_the_model_memorised():
    boxes, feats, (flipped, _) = _feature_scene([
        (gt("t", (10, 10, 110, 110), "dog"), "car"),  # looks like a car, labelled dog
        (pred("t", (10, 10, 110, 110), "dog", 0.95), "car"),  # the model learnt the wrong label
    ])
    with_knn = score_boxes(boxes, feats, k=5, class_knn_weight=1.0)[0]
    model_only = score_boxes(boxes, None)[0]
    assert model_only.loc[flipped, "wrong_class_score"] == 0.0
    assert with_knn.loc[flipped, "wrong_class_score"] >= 0.8
    assert with_knn.loc[flipped, "suggested_label"] == "car"
    # the default weight keeps a share of that evidence; weight 0 turns it off
    default = score_boxes(boxes, feats, k=5)[0].loc[flipped, "wrong_class_score"]
    assert 0.0 < default < with_knn.loc[flipped, "wrong_class_score"]
    off = score_boxes(boxes, feats, k=5, class_knn_weight=0.0)[0]
    assert off.loc[flipped, "wrong_class_score"] == 0.0


def test_unlabelled_look_alike_scores_above_unlabelled_background():
    boxes, feats, (look_alike, background) = _feature_scene([
        (pred("t", (400, 300, 500, 400), "dog", 0.3), "dog"),
        (pred("t", (500, 300, 600, 400), "dog", 0.3), "background"),
    ])
    frame = score_boxes(boxes, feats, k=5)[0]
    assert frame.loc[look_alike, "missing_score"] > frame.loc[background, "missing_score"] + 0.3
    assert frame.loc[look_alike, "is_missing_issue"]


def test_too_few_features_turn_knn_evidence_off_with_a_warning():
    boxes = boxes_frame([gt("s0", BOX), pred("s0", BOX, conf=0.9)])
    feats = np.full((2, 4), np.nan)
    with pytest.warns(UserWarning, match="kNN evidence off"):
        frame, summary = score_boxes(boxes, feats)
    assert summary.reference == "none"
    pd.testing.assert_frame_equal(frame, score_boxes(boxes)[0])


# --- loss boost ---------------------------------------------------------------------------------


def test_high_loss_image_lifts_its_suspects_but_not_its_clean_boxes():
    rows = []
    for i in range(8):
        rows += [gt(f"s{i}", BOX, "dog"), pred(f"s{i}", BOX, "car", conf=0.6),  # a flip suspect
                 gt(f"s{i}", (300, 300, 400, 400)), pred(f"s{i}", (300, 300, 400, 400), conf=0.95)]
    losses = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8, 9.0]  # s7 has a very high loss
    samples = samples_frame([f"s{i}" for i in range(8)], loss=losses)
    plain = _scores(rows)
    boosted = _scores(rows, samples=samples)
    suspect_s7, clean_s7, suspect_s0 = "b28", "b30", "b0"
    assert boosted.loc[suspect_s7, "wrong_class_score"] > plain.loc[suspect_s7, "wrong_class_score"]
    assert boosted.loc[suspect_s7, "wrong_class_score"] <= 1.0
    assert boosted.loc[clean_s7, "wrong_class_score"] == 0.0
    assert boosted.loc[suspect_s0, "wrong_class_score"] == pytest.approx(
        plain.loc[suspect_s0, "wrong_class_score"], abs=0.02)
    no_boost = _scores(rows, samples=samples, loss_boost=0.0)
    pd.testing.assert_frame_equal(no_boost, plain)


# --- properties ---------------------------------------------------------------------------------


def _random_features(boxes: pd.DataFrame, seed: int) -> np.ndarray:
    """Per-box features: class prototype plus noise (NaN for a few rows)."""
    rng = np.random.default_rng(seed)
    protos = {"car": rng.normal(0, 1, 8), "dog": rng.normal(0, 1, 8)}
    feats = np.stack([protos[lab] + rng.normal(0, 0.8, 8) for lab in boxes["label"]])
    feats[rng.random(len(feats)) < 0.1] = np.nan
    return feats.astype(np.float32)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), with_features=st.booleans())
def test_scores_are_probabilities_or_nan(seed, with_features):
    boxes = random_scene(seed, n_samples=6, per_sample=4)
    feats = _random_features(boxes, seed) if with_features else None
    samples = samples_frame([f"s{i}" for i in range(6)],
                            loss=np.random.default_rng(seed).lognormal(0, 1, 6),
                            split=["train", "val"] * 3)
    frame, summary = score_boxes(boxes, feats, samples, k=3)
    for issue in BOX_ISSUES:
        col = frame[f"{issue}_score"].to_numpy(float)
        ok = np.isnan(col) | ((col >= 0) & (col <= 1))
        assert ok.all(), issue
        assert summary.__getattribute__(f"n_{issue}") == int(frame[f"is_{issue}_issue"].sum())
    assert summary.n_gt + summary.n_pred == len(boxes)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), order_seed=st.integers(0, 10_000),
       with_features=st.booleans())
def test_box_order_within_a_frame_does_not_change_any_score(seed, order_seed, with_features):
    boxes = random_scene(seed, n_samples=5, per_sample=4)
    feats = _random_features(boxes, seed) if with_features else None
    samples = samples_frame([f"s{i}" for i in range(5)],
                            loss=np.random.default_rng(seed).lognormal(0, 1, 5))
    order = np.random.default_rng(order_seed).permutation(len(boxes))
    shuffled = boxes.iloc[order].reset_index(drop=True)
    a = score_boxes(boxes, feats, samples, k=3)[0]
    b = score_boxes(shuffled, None if feats is None else feats[order], samples, k=3)[0]
    b = b.loc[a.index]
    cols = [f"{i}_score" for i in BOX_ISSUES]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), atol=1e-6)
    flags = [f"is_{i}_issue" for i in BOX_ISSUES]
    pd.testing.assert_frame_equal(a[flags], b[flags])


def test_score_boxes_does_not_mutate_its_inputs():
    boxes = random_scene(3)
    feats = _random_features(boxes, 3)
    samples = samples_frame([f"s{i}" for i in range(4)], loss=[1, 2, 3, 4])
    before = boxes.copy(), feats.copy(), samples.copy()
    score_boxes(boxes, feats, samples)
    pd.testing.assert_frame_equal(boxes, before[0])
    np.testing.assert_array_equal(feats, before[1])
    pd.testing.assert_frame_equal(samples, before[2])


# --- per-sample roll-up (unit tests in test_rollup.py) --------------------------------------


def test_end_to_end_roll_up_of_scored_boxes():
    rows = [gt("s0", _shifted(40)), pred("s0", BOX, conf=0.95), gt("s1", BOX),
            pred("s1", BOX, conf=0.95)]
    box_scores = _scores(rows)
    out = score_samples(box_scores, samples_frame(["s0", "s1"]))
    assert out.loc["s0", "mistakenness_score"] > 0.5 > out.loc["s1", "mistakenness_score"]
    # the moved label (and the object it left unlabelled) are flagged; at the common threshold
    # its lack of support may flag it spurious too
    assert {"bad_box", "missing"} <= set(out.loc["s0", "flagged_issues"])
    assert out.loc["s1", "flagged_issues"] == []
    assert C.BAD_BOX_SCORE <= out.loc["s0", "bad_box_score"] <= 1.0


def test_knn_reference_keeps_rare_classes_and_caps_common_ones():
    from audit.neighbours import per_class_sample as _per_class

    labels = np.r_[np.zeros(1000, int), np.ones(50, int), np.full(5, 2)]
    ref = np.arange(len(labels)) * 3  # row numbers of the reference boxes
    rng = np.random.default_rng(0)
    out = _per_class(ref, labels, per_class=300, total=4000, rng=rng)
    kept = labels[np.searchsorted(ref, out)]
    assert np.bincount(kept).tolist() == [300, 50, 5]
    assert np.all(np.diff(out) > 0) and set(out) <= set(ref)
    # the total cap lowers the per-class cap: 3 classes, 90 in all -> 30 each at most
    out = _per_class(ref, labels, per_class=300, total=90, rng=rng)
    assert np.bincount(labels[np.searchsorted(ref, out)]).tolist() == [30, 30, 5]
    # nothing over the cap: the reference set is returned as is
    small = np.arange(20)
    assert _per_class(small, np.arange(20) % 4, 300, 4000, rng) is small
