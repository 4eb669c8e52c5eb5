from __future__ import annotations

import numpy as np
import pytest

from panoptes import Objects
from panoptes.core.geometry import Letterbox
from panoptes.core.meta import NO_ID


def make_objects() -> Objects:
    objects = Objects()
    objects.add(
        np.array([[0, 0, 10, 10], [5, 5, 20, 25], [1, 2, 3, 4]], np.float32),
        np.array([0.9, 0.5, 0.3], np.float32),
        np.array([0, 2, 0]),
        ["person", "car", "person"],
        component_id=1,
    )
    return objects


def test_columns_and_views_agree() -> None:
    objects = make_objects()
    assert len(objects) == 3
    assert objects.xyxy.dtype == np.float32 and objects.xyxy.shape == (3, 4)
    second = objects[1]
    assert second.label == "car"
    assert second.bbox == (5.0, 5.0, 20.0, 25.0)
    assert second.confidence == pytest.approx(0.5)
    assert second.track_id is None
    assert [o.label for o in objects] == ["person", "car", "person"]


def test_view_writes_go_to_the_columns() -> None:
    objects = make_objects()
    view = objects[0]
    view.label = "worker"
    view.bbox = (1, 1, 2, 2)
    view.confidence = 0.1
    view.user_meta["zone"] = "A"
    assert objects.labels[0] == "worker"
    assert objects.xyxy[0].tolist() == [1, 1, 2, 2]
    assert objects.confidence[0] == pytest.approx(0.1)
    assert objects.user_meta[0] == {"zone": "A"}


def test_keep_renumbers_parents_and_drops_orphans() -> None:
    objects = make_objects()
    objects.add(
        np.array([[6, 6, 8, 8], [1, 1, 2, 2]]),
        np.array([0.7, 0.6]),
        np.array([5, 5]),
        ["face", "face"],
        component_id=2,
        parent=np.array([1, 0]),
    )
    objects.column("track_age", np.int32)[:] = np.arange(5)
    objects.keep(np.array([False, True, True, True, True]))
    assert objects.labels == ["car", "person", "face", "face"]
    assert objects.parent.tolist() == [NO_ID, NO_ID, 0, NO_ID]
    assert objects[2].parent is not None and objects[2].parent.label == "car"
    assert objects.extra["track_age"].tolist() == [1, 2, 3, 4]


def test_remove_and_bad_mask() -> None:
    objects = make_objects()
    objects.remove(0)
    assert objects.labels == ["car", "person"]
    with pytest.raises(ValueError, match="mask has shape"):
        objects.keep(np.ones(5, bool))
    with pytest.raises(IndexError):
        objects[7]


def test_to_dicts_matches_the_jsonl_schema() -> None:
    record = make_objects().to_dicts()[0]
    assert record == {
        "class_id": 0,
        "label": "person",
        "confidence": 0.9,
        "bbox": [0.0, 0.0, 10.0, 10.0],
        "track_id": None,
    }


def test_letterbox_round_trip_and_composition() -> None:
    first = Letterbox.fit((1920, 1080), (1280, 720))
    second = Letterbox.fit((1280, 720), (416, 416), pad_position="center")
    both = first.then(second)
    boxes = np.array([[100, 200, 500, 900]], np.float32)
    through = second.to_destination(first.to_destination(boxes))
    np.testing.assert_allclose(both.to_destination(boxes), through, rtol=1e-5)
    np.testing.assert_allclose(both.to_source(through), boxes, rtol=1e-4)


def test_letterbox_warp_pads_where_the_boxes_say() -> None:
    image = np.full((100, 200, 3), 200, np.uint8)
    box = Letterbox.fit((200, 100), (64, 64), pad_position="center")
    out = box.warp(image, (64, 64), pad_value=114)
    top = int(box.pad_xy[1])
    assert out.shape == (64, 64, 3)
    assert (out[: top - 1] == 114).all() and (out[top + 1 : 64 - top - 1] == 200).all()
    stretched = Letterbox.fit((200, 100), (64, 64), keep_ratio=False)
    assert stretched.pad_xy == (0.0, 0.0) and stretched.scale_xy == (0.32, 0.64)
