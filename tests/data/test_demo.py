"""The demo end to end: world -> ingest with the committed checkpoint -> score -> insights.

The demo world plants four phenomena (audit/world/generate.py). This test asserts that the
insights name each of them by themselves, measured against the scene kind the world recorded for
every image (not against anything the auditor computed):

1. a train-heavy cluster made of the easy scene kind, and an overfit card on a cluster of the
   easy kind (its val images, heavily occluded, lose far more than their train look-alikes);
2. box loss rising as the median box area falls, and a cluster of the small kind named a weak
   spot on box loss;
3. the book class labelled with mixed conventions (group boxes and one box per book);
4. the metadata that sets the easy cluster apart (few, large objects).

The easy kind spreads over two clusters in the committed checkpoint's embedding (one holding no
val image, one holding four of the ten easy val images), so the two easy cards may name different
clusters; each is asserted to be mostly of the easy kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from audit import constants as C

pytestmark = pytest.mark.slow
NAME = "demo-test"


@pytest.fixture(scope="module")
def demo():
    """The scored demo dataset, its insights, and the scene kind of every sample."""
    assert C.DEMO_CHECKPOINT.is_file(), f"the committed demo checkpoint is missing: " \
                                        f"{C.DEMO_CHECKPOINT}"
    from audit.data import store
    from audit.data.demo import build_demo, demo_world

    ds = build_demo(NAME, progress=False)
    world = demo_world(progress=False)
    scene = {}
    for split in C.SPLITS:
        data = json.loads((world / f"{split}.json").read_text())
        for img in data["images"]:
            scene[str((world / "images" / img["file_name"]).resolve())] = img["scene"]
    ids, paths = ds.values(["id", "filepath"])
    kinds = pd.Series([scene[str(Path(p).resolve())] for p in paths], index=ids)
    yield ds, store.insights(ds), kinds
    ds.delete()


def _share(kinds: pd.Series, sample_ids, kind: str) -> float:
    """Share of these samples whose scene is ``kind``."""
    sub = kinds.reindex([str(s) for s in sample_ids]).dropna()
    return float((sub == kind).mean()) if len(sub) else 0.0


def _cluster_ids(ds, cluster: int) -> list[str]:
    """Sample ids of one cluster."""
    ids, labels = ds.values(["id", "cluster"])
    return [i for i, c in zip(ids, labels, strict=True) if c == cluster]


def test_every_sample_is_scored(demo) -> None:
    from fiftyone import ViewField as F

    ds, _, _ = demo
    n = len(ds)
    assert n > 0
    for field in ("loss", "loss_box", "loss_cls", "loss_dfl", "embedding", "cluster",
                  "mistakenness_score", "proj_pca", "proj_tsne", "proj_umap", "n_objects"):
        assert len(ds.exists(field)) == n, field
    with_boxes = ds.match(F("ground_truth.detections").length() > 0)
    for field in ("median_box_area", "occlusion_mean_iou"):  # None where there is no box
        assert len(with_boxes.exists(field)) == len(with_boxes) > 0.9 * n, field


def test_train_heavy_easy_cluster_is_found(demo) -> None:
    ds, insights, kinds = demo
    heavy = [i for i in insights if i["kind"] == "imbalance" and "train-heavy" in i["title"]]
    assert heavy, [i["sentence"] for i in insights]
    easy = [i for i in heavy if _share(kinds, _cluster_ids(ds, i["cluster"]), "easy") >= 0.6]
    assert easy, [(i["sentence"], _share(kinds, _cluster_ids(ds, i["cluster"]), "easy"))
                  for i in heavy]



def test_easy_cluster_is_overfitted(demo) -> None:
    ds, insights, kinds = demo
    over = [i for i in insights if i["kind"] == "overfit"]
    assert over, [i["sentence"] for i in insights]
    easy = [i for i in over if _share(kinds, _cluster_ids(ds, i["cluster"]), "easy") >= 0.6]
    assert easy, [(i["sentence"], _share(kinds, _cluster_ids(ds, i["cluster"]), "easy"))
                  for i in over]
    # the card lists the cluster's val images first: those are easy ones
    ids, split = ds.values(["id", "split"])
    val = {i for i, sp in zip(ids, split, strict=True) if sp == "val"}
    first = [s for s in easy[0]["sample_ids"] if s in val][:3]
    assert _share(kinds, first, "easy") == 1.0, first
    # where the easy kind is split over two clusters, the two cards say they are one kind
    heavy = {i["cluster"] for i in insights if i["kind"] == "imbalance"
             and "train-heavy" in i["title"]}
    if easy[0]["cluster"] not in heavy:
        related = easy[0]["stats"].get("related_cluster")
        assert related in heavy, easy[0]["sentence"]
        assert _share(kinds, _cluster_ids(ds, related), "easy") >= 0.6


def test_easy_val_images_lose_far_more_than_their_train_look_alikes(demo) -> None:
    """The overfitting, per image: the easy val images stand out by ``neighbour_loss_ratio`` (the
    latent-space page colours by it), wherever the clustering put them."""
    from scipy import stats

    ds, _, kinds = demo
    ids, split, ratio = ds.values(["id", "split", "neighbour_loss_ratio"])
    frame = pd.DataFrame({"split": split, "ratio": ratio, "kind": kinds.reindex(ids).to_numpy()},
                         index=ids)
    val = frame[frame["split"] == "val"].dropna(subset=["ratio"])
    easy, rest = val.loc[val["kind"] == "easy", "ratio"], val.loc[val["kind"] != "easy", "ratio"]
    assert len(easy) >= 3
    assert stats.mannwhitneyu(easy, rest, alternative="greater").pvalue < 0.01, (easy, rest)
    assert easy.min() > rest.median()

def test_train_heavy_easy_cluster_is_described_by_its_metadata(demo) -> None:
    ds, insights, kinds = demo
    heavy = [i["cluster"] for i in insights if i["kind"] == "imbalance"
             and _share(kinds, _cluster_ids(ds, i["cluster"]), "easy") >= 0.6]
    meta = [i for i in insights if i["kind"] == "metadata" and i["cluster"] in heavy]
    assert meta, [i["sentence"] for i in insights if i["kind"] == "metadata"]
    effects = {e["column"]: e["d"] for e in meta[0]["stats"]["effect_sizes"]}
    # the easy kind is 1-3 large objects per image: fewer objects, larger boxes than the rest
    assert effects.get("n_objects", 0) < -0.5 or effects.get("median_box_area", 0) > 0.5, effects


def test_small_object_cluster_is_a_weak_spot_on_box_loss(demo) -> None:
    ds, insights, kinds = demo
    weak = [i for i in insights if i["kind"] == "low_performance"
            and _share(kinds, _cluster_ids(ds, i["cluster"]), "small") >= 0.6]
    assert weak, [i["sentence"] for i in insights if i["kind"] == "low_performance"]
    assert {i["stats"]["loss"] for i in weak} == {"loss_box"}


def test_loss_rises_as_median_box_area_falls(demo) -> None:
    _, insights, _ = demo
    curves = [i for i in insights if i["kind"] == "curve"
              and i["evidence"]["column"] == "median_box_area"]
    assert curves, [i["sentence"] for i in insights if i["kind"] == "curve"]
    assert curves[0]["stats"]["rho"] < 0
    objects = [i for i in insights if i["kind"] == "curve"
               and i["evidence"]["column"] == "n_objects"]
    assert objects and objects[0]["stats"]["rho"] > 0  # loss rises with objects per image
    assert curves[0]["evidence"]["data"], "the curve has no points to plot"


def test_books_are_labelled_inconsistently(demo) -> None:
    _, insights, kinds = demo
    books = [i for i in insights if i["kind"] == "inconsistency" and i["label"] == "book"]
    assert books, [i["sentence"] for i in insights]
    assert _share(kinds, books[0]["sample_ids"], "shelf") >= 0.8
