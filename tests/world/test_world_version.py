"""World versions: demo and benchmark worlds written by another generator version are redrawn."""

from __future__ import annotations

import json

import pytest


def test_world_version_is_read_from_the_coco_info(tmp_path) -> None:
    from audit.world.generate import WORLD_VERSION, generate_world
    from audit.world.generate import world_version as _world_version

    assert _world_version(tmp_path / "absent") is None
    generate_world(tmp_path / "w", n_images=8, progress=False)
    assert _world_version(tmp_path / "w") == str(WORLD_VERSION)
    train = tmp_path / "w" / "train.json"
    data = json.loads(train.read_text())
    data["info"].pop("version")  # a world written before worlds carried a version
    train.write_text(json.dumps(data))
    assert _world_version(tmp_path / "w") is None
    train.write_text("{not json")
    assert _world_version(tmp_path / "w") is None


def test_stale_demo_world_is_regenerated(tmp_path, monkeypatch) -> None:
    pytest.importorskip("fiftyone")
    from audit import constants as C
    from audit.data import demo
    from audit.world.generate import WORLD_VERSION

    monkeypatch.setattr(C, "AUDIT_HOME", tmp_path)
    calls = []
    monkeypatch.setattr("audit.world.generate.generate_world",
                        lambda world, **kw: calls.append(world))
    world = tmp_path / demo.DEMO_WORLD_DIR
    world.mkdir()
    for split in ("train", "val"):
        (world / f"{split}.json").write_text(json.dumps({"info": {"version": "0"}}))
    (world / "noise.csv").write_text("split\n")
    assert demo.demo_world(progress=False) == world and calls == [world]
    (world / "train.json").write_text(json.dumps({"info": {"version": str(WORLD_VERSION)}}))
    demo.demo_world(progress=False)
    assert calls == [world]  # current: kept
