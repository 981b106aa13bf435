"""Review decisions that never reached the dataset reach every reader (issue 17, cases 5 and 6).

- A process killed between the log append and the dataset update: the command-line export (not
  only the app) carries the logged decision.
- A dataset deleted and ingested again under its name: ingest warns that the log holds decisions
  on samples no longer there, and ``python -m audit reviews --reapply`` re-applies them to the
  samples now at their file paths, matching boxes by label and place, once.
"""

from __future__ import annotations

import json
import uuid
import warnings
from pathlib import Path

import pytest

from tests.data.coco_world import write_coco_world

pytest.importorskip("fiftyone")


def _crash_after_log(monkeypatch: pytest.MonkeyPatch, ds, decision) -> None:
    """Record ``decision`` in a writer that dies after its log line, before the dataset write."""
    from audit.data import review_store

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # the process is stopped here

    with monkeypatch.context() as patch:
        patch.setattr(review_store, "_write", killed)
        with pytest.raises(KeyboardInterrupt):
            review_store.record_decision(ds, decision)


def test_the_command_line_export_carries_a_decision_a_crash_cut_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from audit.__main__ import main
    from audit.data.review_log import list_decisions
    from audit.reviews import Decision
    from benchmarks.review_load import build_review_dataset

    ds = build_review_dataset(f"replay-export-{uuid.uuid4().hex[:8]}", 2)
    try:
        sample = ds.first()
        box = sample.ground_truth.detections[0]
        new_label = next(c for c in ("ball", "crate", "book") if c != box.label)
        _crash_after_log(monkeypatch, ds, Decision(
            dataset=ds.name, sample_id=sample.id, box_id=box.id, action="fix_class",
            new_label=new_label, base_revision=0))
        assert list(list_decisions(ds)["state"]) == ["pending"]  # logged, not in the dataset

        assert main(["export", "--name", ds.name, "--format", "coco",
                     "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
        coco = json.loads((tmp_path / "out" / f"{ds.name}-coco.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        labels = {a["coco_id"]: names[a["category_id"]] for a in coco["annotations"]}
        assert labels[box.coco_id] == new_label
        assert list(list_decisions(ds)["state"]) == ["applied"]
    finally:
        ds.delete()


def _ingest(name: str, world: Path, checkpoint: Path):
    from audit.data.ingest import ingest

    return ingest(name, images=world / "images", train_json=world / "train.json",
                  val_json=world / "val.json", model=checkpoint, imgsz=320, progress=False)


def _decide(ds) -> dict[str, object]:
    """Four decisions on the first two samples: what each should look like after a re-ingest."""
    from audit.data.review_store import current_revision, record_decision
    from audit.reviews import Decision

    first, second = ds.head(2)
    fixed, deleted = first.ground_truth.detections[0], second.ground_truth.detections[0]
    new_label = next(c for c in ("ball", "crate", "book") if c != fixed.label)
    accepted = max(first.predictions.detections, key=lambda d: d.confidence)

    def decide(sample, **kw):
        record_decision(ds, Decision(dataset=ds.name, sample_id=sample.id, reviewer="ana",
                                     base_revision=current_revision(ds, sample.id), **kw))

    decide(first, box_id=fixed.id, action="fix_class", new_label=new_label)
    decide(first, box_id=accepted.id, action="accept_prediction")
    decide(second, box_id=deleted.id, action="delete")
    decide(second, action="relabel")
    return {"first": first.filepath, "second": second.filepath, "fixed": fixed.coco_id,
            "label": new_label, "deleted": deleted.coco_id, "accepted": accepted.label,
            "n_first": len(first.ground_truth.detections),
            "n_second": len(second.ground_truth.detections)}


def test_decisions_orphaned_by_a_new_ingest_are_announced_and_reapplied(
        tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    import fiftyone as fo

    from audit.__main__ import main
    from audit.data import store
    from audit.data.review_log import list_decisions
    from audit.data.review_store import REVIEWED_FIELD

    name = f"reingest-{uuid.uuid4().hex[:8]}"
    world = write_coco_world(tmp_path / "w", {"train": [0, 1, 2], "val": [4]})
    ds = _ingest(name, world, tiny_checkpoint)
    try:
        expected = _decide(ds)
        ds.delete()
        with pytest.warns(UserWarning, match=r"4 decision\(s\) on 2 sample\(s\) no longer in "
                          rf"the dataset.*python -m audit reviews --name {name} --reapply"):
            ds = _ingest(name, world, tiny_checkpoint)
        assert set(list_decisions(ds)["state"]) == {"sample_missing"}

        capsys.readouterr()
        assert main(["reviews", "--name", name, "--reapply"]) == 0
        out = capsys.readouterr().out
        assert "re-applied 4 of 4 orphaned review decision(s)" in out
        assert "4 reapplied" in out and "4 applied" in out

        ds = store.load_dataset(name)
        by_path = {s.filepath: s for s in ds}
        first, second = by_path[expected["first"]], by_path[expected["second"]]
        boxes = first[REVIEWED_FIELD].detections
        assert len(boxes) == expected["n_first"] + 1
        assert next(d for d in boxes if d.coco_id == expected["fixed"]).label == expected["label"]
        assert any(d.has_field("accepted_from") and d.label == expected["accepted"]
                   for d in boxes)
        left = second[REVIEWED_FIELD].detections
        assert len(left) == expected["n_second"] - 1
        assert expected["deleted"] not in {d.coco_id for d in left}
        assert second.review_status == "relabel"

        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing orphaned is left to warn about
            assert main(["reviews", "--name", name, "--reapply"]) == 0
        assert "re-applied 0 of 0" in capsys.readouterr().out
    finally:
        if fo.dataset_exists(name):
            fo.load_dataset(name).delete()


def test_a_decision_whose_box_changed_is_left_with_its_reason(tmp_path: Path,
                                                             tiny_checkpoint: Path) -> None:
    from audit.data.review_log import reapply_orphaned
    from tests.data.coco_world import dump, load

    name = f"reingest-changed-{uuid.uuid4().hex[:8]}"
    world = write_coco_world(tmp_path / "w", {"train": [0, 1], "val": [4]})
    ds = _ingest(name, world, tiny_checkpoint)
    try:
        expected = _decide(ds)
        ds.delete()
        data = load(world / "train.json")
        for a in data["annotations"]:
            if a["id"] == expected["fixed"]:
                a["bbox"] = [a["bbox"][0] + 5, *a["bbox"][1:]]  # the label was moved since
        dump(world / "train.json", data)
        with pytest.warns(UserWarning, match="no longer in the dataset"):
            ds = _ingest(name, world, tiny_checkpoint)
        report = reapply_orphaned(ds)
        assert (report.orphaned, report.reapplied) == (4, 2)  # the second sample's two
        reasons = [reason for _, reason in report.skipped]
        assert expected["first"] in reasons[0] and "holds no gt box" in reasons[0]
        assert reasons[1].startswith("after an earlier one")
    finally:
        ds.delete()


def test_a_log_written_before_keys_is_placed_by_annotation_id(tmp_path: Path,
                                                             tiny_checkpoint: Path) -> None:
    from audit.data.review_log import reapply_orphaned
    from audit.reviews import log_path

    name = f"reingest-legacy-{uuid.uuid4().hex[:8]}"
    world = write_coco_world(tmp_path / "w", {"train": [0, 1], "val": [4]})
    ds = _ingest(name, world, tiny_checkpoint)
    try:
        expected = _decide(ds)
        log = log_path(name)
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        for line in lines:
            line["before"].pop("key")  # as the log was written before records kept it
        log.write_text("".join(json.dumps(line) + "\n" for line in lines))
        ds.delete()
        with pytest.warns(UserWarning, match="no longer in the dataset"):
            ds = _ingest(name, world, tiny_checkpoint)
        report = reapply_orphaned(ds)
        # the accepted prediction has no label to be found by: it and nothing else is left
        assert (report.orphaned, report.reapplied) == (4, 3)
        assert "was logged without its label and place" in report.skipped[0][1]
        second = next(s for s in ds if s.filepath == expected["second"])
        assert second.review_status == "relabel"  # an image-level decision followed its sample
        left = second.ground_truth_reviewed.detections
        assert expected["deleted"] not in {d.coco_id for d in left}
    finally:
        ds.delete()
