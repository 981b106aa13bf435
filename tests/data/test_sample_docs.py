"""Sample documents: the raw bulk insert stores what FiftyOne's own add_samples stores.

The reference is FiftyOne building the same samples from its objects (``fo.Sample`` with
``fo.Detection`` labels, as its docs show) and adding them with ``add_samples``.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")

_VOLATILE = {"_id", "_dataset_id", "created_at", "last_modified_at", "_rand"}


def _inputs(i: int, n_gt: int, n_pred: int, rng: np.random.Generator) -> dict:
    """Keyword arguments of one sample: boxes, NaN feature rows, crowd flags, a NaN metadata."""
    pred_feat = rng.normal(size=(n_pred, 8)).astype(np.float32)
    if n_pred:
        pred_feat[0] = np.nan  # a low-confidence prediction without a feature
    return dict(
        filepath=f"/images/{i:03d}.jpg", split="train" if i % 2 else "val", width=100, height=80,
        gt_boxes=np.tile([[1.0, 2.0, 30.0, 40.0]], (n_gt, 1)), gt_labels=["ball"] * n_gt,
        gt_iscrowd=np.arange(n_gt) % 2, gt_coco_ids=np.arange(n_gt) + 10 * i,
        gt_features=rng.normal(size=(n_gt, 8)).astype(np.float32),
        pred_boxes=np.tile([[2.0, 3.0, 31.0, 41.0]], (n_pred, 1)), pred_labels=["book"] * n_pred,
        pred_conf=rng.random(n_pred).astype(np.float32), pred_features=pred_feat,
        loss=np.array([0.1, 0.2, 0.3], np.float32), embedding=rng.normal(size=5).astype(np.float32),
        metadata={"n_objects": np.int64(n_gt),
                  "median_box_area": np.float64(0.2 if n_gt else np.nan)},
        class_counts={"ball": n_gt, "book": 0})


def _reference_sample(kw: dict) -> fo.Sample:
    """The same sample built from FiftyOne's objects."""
    w, h = kw["width"], kw["height"]

    def rel(b):
        return [b[0] / w, b[1] / h, (b[2] - b[0]) / w, (b[3] - b[1]) / h]

    def feature(row):
        return None if not np.isfinite(row).all() else [float(v) for v in row]

    gt = [fo.Detection(label=lab, bounding_box=rel(kw["gt_boxes"][j]),
                       iscrowd=bool(kw["gt_iscrowd"][j]), coco_id=int(kw["gt_coco_ids"][j]),
                       feature=feature(kw["gt_features"][j]))
          for j, lab in enumerate(kw["gt_labels"])]
    pred = [fo.Detection(label=lab, bounding_box=rel(kw["pred_boxes"][j]),
                         confidence=float(kw["pred_conf"][j]),
                         feature=feature(kw["pred_features"][j]))
            for j, lab in enumerate(kw["pred_labels"])]
    loss = [float(v) for v in kw["loss"]]
    median = kw["metadata"]["median_box_area"]
    return fo.Sample(
        filepath=kw["filepath"], tags=[kw["split"]], split=kw["split"],
        metadata=fo.ImageMetadata(width=w, height=h, num_channels=3),
        ground_truth=fo.Detections(detections=gt), predictions=fo.Detections(detections=pred),
        loss_box=loss[0], loss_cls=loss[1], loss_dfl=loss[2], loss=sum(loss),
        embedding=[float(v) for v in kw["embedding"]], class_counts=kw["class_counts"],
        n_objects=int(kw["metadata"]["n_objects"]),
        median_box_area=None if np.isnan(median) else float(median))


def _stored(ds: fo.Dataset) -> list[dict]:
    """The stored documents in insertion order, without ids and timestamps."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in _VOLATILE}
        return [strip(x) for x in v] if isinstance(v, list) else v

    return [strip(d) for d in ds._sample_collection.find().sort("_id")]


@pytest.fixture()
def datasets():
    made = []

    def make() -> fo.Dataset:
        made.append(fo.Dataset(f"sample-docs-{uuid.uuid4().hex[:8]}"))
        return made[-1]

    yield make
    for ds in made:
        ds.delete()


def test_raw_insert_stores_what_add_samples_stores(datasets) -> None:
    from audit.data.sample_docs import add_sample_docs, sample_doc

    rng = np.random.default_rng(0)
    # the first sample has no boxes (median_box_area missing): a later one declares the field
    kws = [_inputs(0, 0, 0, rng), _inputs(1, 3, 4, rng), _inputs(2, 2, 5, rng),
           _inputs(3, 1, 1, rng)]
    reference, ours = datasets(), datasets()
    reference.add_samples([_reference_sample(k) for k in kws], progress=False)
    add_sample_docs(ours, [sample_doc(**kws[0])])
    add_sample_docs(ours, [sample_doc(**k) for k in kws[1:]])
    assert _stored(ours) == _stored(reference)
    assert ours.get_field_schema().keys() == reference.get_field_schema().keys()
    rand = [d["_rand"] for d in ours._sample_collection.find({}, {"_rand": 1})]
    assert len(rand) == len(kws) and all(0 <= r <= 1 for r in rand)  # views' take() needs it
    # the label ids are fresh and the samples read back through FiftyOne's objects
    det = ours.skip(1).first().ground_truth.detections[1]
    assert det.iscrowd is True and det.coco_id == 11 and len(det.feature) == 8
    assert ours.skip(1).first().predictions.detections[0].feature is None
    assert len(set(ours.values("predictions.detections.id", unwind=True))) == 10


def test_a_stored_filepath_is_skipped_and_another_refusal_raises(datasets) -> None:
    """A sample a concurrent ingest stored first (the filepath index is unique) is skipped;
    a document refused for another reason raises, and the others of its batch are kept."""
    from audit.data.sample_docs import add_sample_docs, sample_doc

    rng = np.random.default_rng(1)
    ds = datasets()
    ds.create_index("filepath", unique=True)
    add_sample_docs(ds, [sample_doc(**_inputs(1, 2, 2, rng)), sample_doc(**_inputs(2, 2, 2, rng))])
    add_sample_docs(ds, [sample_doc(**_inputs(3, 1, 1, rng)),
                         sample_doc(**_inputs(2, 1, 1, rng))])
    assert sorted(ds.values("filepath")) == [f"/images/{i:03d}.jpg" for i in (1, 2, 3)]
    other = datasets()
    add_sample_docs(other, [sample_doc(**_inputs(4, 1, 1, rng))])
    other.create_index("loss", unique=True)  # every document's loss is 0.6: the next is refused
    with pytest.raises(ValueError, match="duplicate key"):
        add_sample_docs(other, [sample_doc(**_inputs(5, 1, 1, rng)),
                                sample_doc(**_inputs(6, 1, 1, rng))])
    assert other.values("filepath") == ["/images/004.jpg"]
