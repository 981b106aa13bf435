"""Model competence: recall, precision, AP50 and localisation per class, verdicts, sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import constants as C
from audit.competence import COLUMNS, average_precision, model_competence
from tests.builders import boxes_frame, empty_boxes, gt, pred, random_scene, samples_frame

N_IMAGES = 12  # val images of the built scenes
PER_IMAGE = 3  # boxes per class per image: 36 labels per class, over COMPETENCE_MIN_BOXES


def _slot(k: int, row: int = 0) -> tuple[float, float, float, float]:
    """The ``k``-th box of a row of disjoint 40x40 boxes."""
    return (10.0 + 60 * k, 10.0 + 60 * row, 50.0 + 60 * k, 50.0 + 60 * row)


def _shifted(box, dx: float) -> tuple[float, ...]:
    """``box`` moved right by ``dx`` px."""
    x1, y1, x2, y2 = box
    return (x1 + dx, y1, x2 + dx, y2)


def _scene(*, keep_dog=lambda i, k: True, false_alarms: int = 0, dx: float = 0.0,
           split: str = "val"):
    """Cars and dogs in ``N_IMAGES`` images, each labelled box found by a prediction of its class
    (dogs only where ``keep_dog(image, k)``), plus ``false_alarms`` unlabelled car predictions
    per image; predictions moved right by ``dx``."""
    rows, ids = [], [f"s{i}" for i in range(N_IMAGES)]
    for i, sid in enumerate(ids):
        for k in range(PER_IMAGE):
            car, dog = _slot(k, 0), _slot(k, 1)
            rows += [gt(sid, car, "car"), pred(sid, _shifted(car, dx), "car", 0.9 - 0.01 * k),
                     gt(sid, dog, "dog")]
            if keep_dog(i, k):
                rows.append(pred(sid, _shifted(dog, dx), "dog", 0.8 - 0.01 * k))
        rows += [pred(sid, _slot(k, 3), "car", 0.6) for k in range(false_alarms)]
    return boxes_frame(rows), samples_frame(ids, split=split)


@pytest.mark.parametrize(("boxes", "ids", "split"), [
    (empty_boxes(), [], "all"),
    (empty_boxes(), ["a", "b"], "val"),
])
def test_empty_input_gives_no_classes_and_no_warning(boxes, ids, split):
    samples = samples_frame(ids, split="val")
    res = model_competence(boxes, samples)
    assert res.classes.empty and list(res.classes.columns) == list(COLUMNS)
    assert res.split == split and res.n_gt == 0 and res.verdict == "too few labels"
    assert np.isnan(res.recall) and np.isnan(res.map50)
    assert res.warnings == []


def test_missing_split_column_is_refused():
    with pytest.raises(ValueError, match="split"):
        model_competence(empty_boxes(), pd.DataFrame(index=pd.Index(["a"], name="sample_id")))


def test_a_perfect_model_is_reliable_everywhere():
    res = model_competence(*_scene())
    assert (res.classes["verdict"] == "reliable").all()
    for col in ("recall", "precision", "ap50", "median_iou"):
        np.testing.assert_allclose(res.classes[col], 1.0)
    assert res.classes["n_gt"].tolist() == [N_IMAGES * PER_IMAGE] * 2
    assert res.verdict == "reliable" and res.map50 == pytest.approx(1.0)
    assert res.warnings == []


def test_a_model_that_misses_half_of_one_class_is_weak_on_its_recall():
    res = model_competence(*_scene(keep_dog=lambda i, k: (i * PER_IMAGE + k) % 2 == 0))
    dog = res.classes.loc["dog"]
    assert dog["recall"] == pytest.approx(0.5) and dog["precision"] == pytest.approx(1.0)
    assert dog["verdict"] == "weak" and dog["weak_on"] == "recall"
    assert dog["ap50"] == pytest.approx(0.5)  # every prediction right, half never made
    assert res.classes.loc["car", "verdict"] == "reliable"
    sentences = [w for w in res.warnings if "dog" in w]
    assert len(sentences) == 1 and "spurious" in sentences[0] and "missing" not in sentences[0]
    assert sentences[0].startswith("The model is weak on dog (recall 50%, precision 100%")
    assert not any("car" in w for w in res.warnings)


def test_one_weak_class_alone_gets_one_sentence():
    boxes, samples = _scene(keep_dog=lambda i, k: k == 0)
    res = model_competence(boxes[boxes["label"] == "dog"], samples)
    assert res.verdict == "weak" and len(res.warnings) == 1
    assert res.warnings[0].startswith("The model is weak on dog (")
    assert "the model misses many real dog objects: 'spurious' flags on dog" in res.warnings[0]


def test_recall_just_over_half_is_not_weak():
    res = model_competence(*_scene(keep_dog=lambda i, k: (i * PER_IMAGE + k) % 2 == 0 or i == 0))
    assert res.classes.loc["dog", "recall"] > 0.5
    assert res.classes.loc["dog", "verdict"] == "reliable" and res.warnings == []


def test_a_model_with_many_false_alarms_is_weak_on_its_precision():
    res = model_competence(*_scene(false_alarms=2 * PER_IMAGE))
    car = res.classes.loc["car"]
    assert car["recall"] == pytest.approx(1.0) and car["precision"] == pytest.approx(1 / 3)
    assert car["verdict"] == "weak" and car["weak_on"] == "precision"
    # the false alarms (conf 0.6) rank below every right detection: AP stays 1
    assert car["ap50"] == pytest.approx(1.0)
    sentence = next(w for w in res.warnings if "on car" in w)
    assert "'missing' flags on car are often model false alarms" in sentence
    assert "spurious" not in sentence
    assert res.verdict == "weak" and any(w.startswith("The model is weak on this data")
                                         for w in res.warnings)


def test_loose_boxes_make_bad_box_flags_less_reliable():
    res = model_competence(*_scene(dx=10.0))  # 40 px boxes moved by 10 px: IoU 0.6
    assert res.classes["median_iou"].tolist() == pytest.approx([0.6, 0.6])
    assert (res.classes["weak_on"] == "localisation").all()
    assert all("'bad_box' flags" in w for w in res.warnings if "weak on car" in w)


def test_false_alarms_ranked_first_lower_the_ap():
    boxes, samples = _scene()
    extra = boxes_frame([pred(f"s{i}", _slot(0, 4), "car", 0.99) for i in range(N_IMAGES)])
    res = model_competence(pd.concat([boxes, extra], ignore_index=True), samples)
    car = res.classes.loc["car"]
    # 12 false alarms above 36 right detections: the envelope is 36 / 48 at every recall
    assert car["recall"] == pytest.approx(1.0) and car["ap50"] == pytest.approx(0.75)


@pytest.mark.parametrize(("matched", "n_gt", "expected"), [
    ([], 0, np.nan), ([], 3, 0.0), ([True], 1, 1.0), ([True, False, True], 4, 0.25 + 0.25 * 2 / 3),
    ([False, True], 1, 0.5),
])
def test_average_precision_is_the_area_under_the_precision_envelope(matched, n_gt, expected):
    np.testing.assert_allclose(average_precision(np.array(matched, bool), n_gt), expected)


def test_crowd_labels_are_neither_targets_nor_false_alarm_sinks():
    boxes, samples = _scene()
    crowd_box = (300.0, 300.0, 500.0, 460.0)
    extra = boxes_frame([row for i in range(N_IMAGES) for row in (
        gt(f"s{i}", crowd_box, "car", iscrowd=True),
        pred(f"s{i}", (320.0, 320.0, 380.0, 380.0), "car", 0.95))])
    res = model_competence(pd.concat([boxes, extra], ignore_index=True), samples)
    car = res.classes.loc["car"]
    assert car["n_gt"] == N_IMAGES * PER_IMAGE and car["n_pred"] == N_IMAGES * PER_IMAGE
    assert car["recall"] == car["precision"] == car["ap50"] == pytest.approx(1.0)


def test_classes_with_few_labels_get_no_verdict():
    boxes, samples = _scene()
    extra = boxes_frame([gt("s0", _slot(k, 5), "cat") for k in range(3)])
    res = model_competence(pd.concat([boxes, extra], ignore_index=True), samples)
    cat = res.classes.loc["cat"]
    assert cat["verdict"] == "too few labels" and cat["weak_on"] == "" and cat["recall"] == 0
    assert [w for w in res.warnings if "cat" in w] == [
        f"Too few val labels to judge the model on cat (under {C.COMPETENCE_MIN_BOXES} each): "
        "flags on them rest on an unmeasured model."]


def test_only_the_val_split_is_measured():
    val_boxes, val_samples = _scene()
    train_boxes, _ = _scene(keep_dog=lambda i, k: False)
    train_boxes["sample_id"] = "t" + train_boxes["sample_id"]
    train_samples = samples_frame([f"ts{i}" for i in range(N_IMAGES)], split="train")
    res = model_competence(pd.concat([val_boxes, train_boxes], ignore_index=True),
                           pd.concat([val_samples, train_samples]))
    assert res.split == "val" and res.n_images == N_IMAGES
    assert (res.classes["verdict"] == "reliable").all() and res.warnings == []


def test_without_a_val_split_every_sample_is_measured_and_the_user_told():
    res = model_competence(*_scene(split="train"))
    assert res.split == "all" and res.n_images == N_IMAGES
    assert (res.classes["verdict"] == "reliable").all()
    assert len(res.warnings) == 1 and res.warnings[0].startswith("There is no val split")


def test_to_dict_keeps_the_classes_and_the_sentences():
    res = model_competence(*_scene(keep_dog=lambda i, k: k == 0))
    stored = res.to_dict()
    assert stored["split"] == "val" and stored["warnings"] == res.warnings
    assert [r["label"] for r in stored["classes"]] == ["car", "dog"]
    assert stored["overall"]["verdict"] == res.verdict


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), order_seed=st.integers(0, 10_000),
       val_share=st.floats(0.0, 1.0))
def test_figures_in_range_and_independent_of_row_order(seed, order_seed, val_share):
    boxes = random_scene(seed, n_samples=6, per_sample=6, classes=("car", "dog", "cat"))
    ids = [f"s{i}" for i in range(6)]
    rng = np.random.default_rng(seed)
    samples = samples_frame(ids, split=np.where(rng.random(6) < val_share, "val", "train"))
    res = model_competence(boxes, samples, min_boxes=3)
    for col in ("recall", "precision", "ap50", "median_iou"):
        x = res.classes[col].to_numpy(float)
        assert np.all(np.isnan(x) | ((x >= 0) & (x <= 1))), col
    assert set(res.classes["verdict"]) <= {"reliable", "weak", "too few labels"}
    shuffled = boxes.sample(frac=1.0, random_state=order_seed).reset_index(drop=True)
    other = model_competence(shuffled, samples.sample(frac=1.0, random_state=order_seed),
                             min_boxes=3)
    pd.testing.assert_frame_equal(res.classes, other.classes)
    assert res.warnings == other.warnings


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_and_precision_agree_with_matching_image_by_image(seed):
    from audit.boxes import match_boxes

    boxes = random_scene(seed, n_samples=8, per_sample=6)
    res = model_competence(boxes, samples_frame([f"s{i}" for i in range(8)], split="val"),
                           min_boxes=1)
    for label, row in res.classes.iterrows():
        hits = n_gt = n_pred = 0
        for _, image in boxes[boxes["label"] == label].groupby("sample_id"):
            g, p = image[image["source"] == "gt"], image[image["source"] == "pred"]
            m = match_boxes(g[["x1", "y1", "x2", "y2"]], p[["x1", "y1", "x2", "y2"]],
                            p["confidence"])
            confident = p["confidence"].to_numpy() >= C.COMPETENCE_CONF
            hits += int((m.pred_to_gt[confident] >= 0).sum())
            n_gt, n_pred = n_gt + len(g), n_pred + int(confident.sum())
        assert (row["n_gt"], row["n_pred"]) == (n_gt, n_pred)
        np.testing.assert_allclose([row["recall"], row["precision"]],
                                   [hits / n_gt, hits / n_pred])


def test_equal_confidences_give_the_same_answer_in_any_row_order():
    # two predictions of equal confidence compete for one label: who wins decides recall
    rows = [gt("a", (0, 0, 40, 40)), gt("a", (30, 0, 70, 40)),
            pred("a", (10, 0, 50, 40), conf=0.7), pred("a", (0, 0, 38, 40), conf=0.7),
            pred("b", (0, 0, 40, 40), conf=0.7), gt("b", (0, 0, 40, 40))]
    samples = samples_frame(["a", "b"], split="val")
    first = model_competence(boxes_frame(rows), samples, min_boxes=1)
    for seed in range(6):
        order = np.random.default_rng(seed).permutation(len(rows))
        other = model_competence(boxes_frame([rows[i] for i in order]), samples, min_boxes=1)
        pd.testing.assert_frame_equal(first.classes, other.classes)
