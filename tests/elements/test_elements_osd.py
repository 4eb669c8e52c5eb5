"""Drawing metadata onto frames: boxes, labels, keypoints, display metadata, the clock."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from panoptes.core.bus import Bus
from panoptes.core.element import BuildContext
from panoptes.core.frame import Batch, Frame
from panoptes.core.geometry import Letterbox
from panoptes.core.meta import Objects
from panoptes.elements.osd import Osd, OsdProperties
from panoptes.render import PALETTE, class_color, draw_frame, object_label

GREY = 100


def make_frame(size_wh: tuple[int, int] = (200, 120), transform: Letterbox | None = None) -> Frame:
    """A grey frame of ``size_wh`` original pixels, its image scaled by ``transform``."""
    transform = transform or Letterbox()
    image_w = round(size_wh[0] * transform.scale_xy[0])
    image_h = round(size_wh[1] * transform.scale_xy[1])
    image = np.full((image_h, image_w, 3), GREY, np.uint8)
    return Frame(0, "cam", 0, 0.0, 0.0, size_wh, image, transform)


def add_object(
    frame: Frame,
    xyxy: tuple[float, float, float, float],
    class_id: int = 0,
    *,
    label: str = "person",
    confidence: float = 0.93,
    track_id: int = -1,
    keypoints: np.ndarray | None = None,
) -> None:
    frame.objects.add(
        np.array([xyxy], np.float32),
        np.array([confidence]),
        np.array([class_id]),
        [label],
        track_id=np.array([track_id]),
        keypoints=None if keypoints is None else keypoints[None],
    )


def changed(image: np.ndarray) -> np.ndarray:
    """Mask [H, W] of the pixels that are no longer the plain grey."""
    return np.any(image != GREY, axis=2)


BOXES_ONLY = OsdProperties(show_label=False, show_confidence=False, show_track_id=False)


def test_box_is_drawn_on_a_copy() -> None:
    frame = make_frame()
    add_object(frame, (20, 30, 120, 90))
    before = frame.image.copy()
    drawn = draw_frame(frame, BOXES_ONLY)
    assert np.array_equal(frame.image, before)
    assert drawn is not frame.image and drawn.shape == frame.image.shape
    assert changed(drawn)[60, 20] and changed(drawn)[30, 70]  # left and top borders
    assert not changed(drawn)[60, 70]  # inside the box
    assert not changed(drawn)[5, 190]  # elsewhere


@pytest.mark.parametrize(
    ("options", "track_id", "expected"),
    [
        ({}, 12, "person 0.93 #12"),
        ({}, -1, "person 0.93"),
        ({"show_track_id": False}, 12, "person 0.93"),
        ({"show_confidence": False}, 12, "person #12"),
        ({"show_label": False}, 12, "0.93 #12"),
        ({"show_label": False, "show_confidence": False, "show_track_id": False}, 12, ""),
    ],
)
def test_label_text(options: dict[str, Any], track_id: int, expected: str) -> None:
    objects = Objects()
    objects.add(np.zeros((1, 4)), np.array([0.934]), np.array([0]), ["person"], track_id=[track_id])
    assert object_label(objects, 0, OsdProperties(**options)) == expected


def test_display_text_replaces_the_label() -> None:
    objects = Objects()
    objects.add(np.zeros((2, 4)), np.array([0.9, 0.8]), np.array([0, 0]), ["person", "person"])
    objects[1].display_text = "visitor 3"
    assert object_label(objects, 0, OsdProperties()) == "person 0.90"
    assert object_label(objects, 1, OsdProperties()) == "visitor 3"


def test_classifier_labels_follow_the_class_name() -> None:
    objects = Objects()
    objects.add(np.zeros((1, 4)), np.array([0.5]), np.array([2]), ["car"], track_id=[4])
    objects.classifications[0].append((2, "red", 0.8))
    assert object_label(objects, 0, OsdProperties()) == "car red 0.50 #4"


def test_label_is_written_above_the_box() -> None:
    frame = make_frame()
    add_object(frame, (60, 50, 150, 110), track_id=12)
    drawn = draw_frame(frame, OsdProperties())
    assert changed(drawn[30:48, 62:140]).mean() > 0.5  # the label's filled background
    plain = draw_frame(frame, BOXES_ONLY)
    assert not changed(plain[30:48, 62:140]).any()


def test_label_stays_inside_the_image() -> None:
    frame = make_frame()
    add_object(frame, (150, 0, 199, 40), track_id=12345)
    drawn = draw_frame(frame, OsdProperties())
    # No room above the box and little on the right: the label moves inside and left.
    assert changed(drawn[2:12, 60:150]).any()


def test_classes_have_distinct_colours_and_class_colors_wins() -> None:
    assert len(set(PALETTE)) == len(PALETTE)
    assert class_color(0) != class_color(1)
    assert class_color(1, {1: (10, 20, 30)}) == (10, 20, 30)
    frame = make_frame()
    add_object(frame, (10, 10, 60, 60), class_id=0)
    add_object(frame, (100, 10, 150, 60), class_id=1)
    drawn = draw_frame(frame, BOXES_ONLY)
    assert tuple(drawn[30, 10]) != tuple(drawn[30, 100])
    assert tuple(drawn[30, 10]) == tuple(reversed(class_color(0)))  # (R, G, B) drawn as BGR
    custom = draw_frame(frame, BOXES_ONLY.model_copy(update={"class_colors": {1: (10, 20, 30)}}))
    assert tuple(custom[30, 100]) == (30, 20, 10)


def test_boxes_follow_the_frame_transform() -> None:
    frame = make_frame((400, 240), Letterbox((0.5, 0.5)))  # the mux halved the image
    add_object(frame, (100, 100, 300, 200))
    drawn = changed(draw_frame(frame, BOXES_ONLY))
    assert drawn.shape == (120, 200)
    assert drawn[75, 50] and drawn[75, 150] and drawn[50, 100] and drawn[100, 100]
    assert not drawn[75, 100]


def test_boxes_follow_a_letterbox_with_padding() -> None:
    transform = Letterbox.fit((400, 200), (200, 200))  # scale 0.5, 50 px of padding above
    frame = make_frame((400, 200), transform)
    frame.image = np.full((200, 200, 3), GREY, np.uint8)
    add_object(frame, (0, 0, 100, 100))
    drawn = changed(draw_frame(frame, BOXES_ONLY))
    assert drawn[50, 25] and drawn[100, 25] and drawn[75, 50]
    assert not drawn[25, 25]


def test_tracker_only_objects_have_a_dashed_border() -> None:
    frame = make_frame()
    add_object(frame, (20, 30, 180, 90))
    add_object(frame, (20, 30, 180, 90))
    frame.objects.column("tracker_only", np.int8)[:] = [0, 1]
    solid, dashed = frame.objects.copy(), frame.objects.copy()
    solid.keep(np.array([True, False]))
    dashed.keep(np.array([False, True]))
    frame.meta.objects = solid
    top_solid = changed(draw_frame(frame, BOXES_ONLY))[30, 20:180]
    frame.meta.objects = dashed
    top_dashed = changed(draw_frame(frame, BOXES_ONLY))[30, 20:180]
    assert top_solid.all()
    assert 0.3 < top_dashed.mean() < 0.8


def test_zero_border_width_draws_no_box() -> None:
    frame = make_frame()
    add_object(frame, (20, 30, 120, 90))
    assert not changed(draw_frame(frame, BOXES_ONLY.model_copy(update={"border_width": 0}))).any()


def test_display_meta_draws_where_asked() -> None:
    frame = make_frame((400, 240), Letterbox((0.5, 0.5)))
    display = frame.meta.display_meta
    display.add_rectangle((0, 0, 100, 100), thickness=-1, alpha=0.5, color=(255, 0, 0))
    display.add_rectangle((200, 0, 300, 100), thickness=-1, color=(0, 255, 0))
    display.add_line((0, 220), (400, 220), color=(0, 0, 255), thickness=2)
    display.add_circle((300, 180), 40, color=(255, 255, 0), thickness=2)
    display.add_text("zone A", (220, 120), color=(255, 255, 255), background=(0, 0, 0))
    drawn = draw_frame(frame, OsdProperties())
    assert tuple(drawn[25, 25]) == (50, 50, 178)  # half red over grey, as BGR
    assert tuple(drawn[25, 125]) == (0, 255, 0)
    assert tuple(drawn[110, 100]) == (255, 0, 0)  # blue line at y = 220 / 2
    assert changed(drawn)[90, 170] and not changed(drawn)[90, 150]  # circle: centre (150, 90), r 20
    assert changed(drawn[60:75, 110:140]).mean() > 0.5  # the text's background
    assert not changed(drawn)[5, 195]


def test_skeleton_is_drawn_along_visible_limbs_only() -> None:
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[5] = (50, 40, 0.9)  # left shoulder
    keypoints[6] = (150, 40, 0.9)  # right shoulder
    keypoints[7] = (50, 100, 0.2)  # left elbow, barely visible
    frame = make_frame()
    add_object(frame, (40, 30, 160, 110), keypoints=keypoints)
    props = BOXES_ONLY.model_copy(update={"border_width": 0})
    drawn = changed(draw_frame(frame, props))
    assert drawn[40, 100]  # the shoulders' limb
    assert not drawn[70, 50]  # shoulder to the hidden elbow
    no_keypoints = props.model_copy(update={"show_keypoints": False})
    assert not changed(draw_frame(frame, no_keypoints)).any()


def test_display_skeleton_uses_its_own_edges() -> None:
    frame = make_frame()
    frame.meta.display_meta.add_skeleton(
        np.array([[10, 60, 1], [190, 60, 1], [100, 10, 1]]), edges=[(0, 1)]
    )
    drawn = changed(draw_frame(frame, OsdProperties()))
    assert drawn[60, 100] and not drawn[35, 55]


def test_clock_is_drawn_top_left() -> None:
    frame = make_frame((320, 120))
    props = OsdProperties(clock=True)
    early = draw_frame(frame, props, now=0.0)
    late = draw_frame(frame, props, now=3_600.0 * 24 * 400 + 7)
    assert changed(early[:30, :80]).mean() > 0.3 and not changed(early[60:, :]).any()
    assert np.array_equal(early, draw_frame(frame, props, now=0.0))
    assert not np.array_equal(early, late)
    assert not changed(draw_frame(frame, OsdProperties())).any()


def test_osd_replaces_images_and_keeps_the_originals() -> None:
    osd = Osd(BOXES_ONLY, name="osd", context=BuildContext(bus=Bus()))
    osd.build()
    frames = [make_frame(), make_frame()]
    add_object(frames[1], (20, 30, 120, 90))
    originals = [frame.image for frame in frames]
    batch = Batch(frames).branch_copy()
    out = osd.process(batch)
    assert out is batch
    assert all(not changed(image).any() for image in originals)
    assert not changed(out.frames[0].image).any() and changed(out.frames[1].image).any()
    assert all(a.image is not b for a, b in zip(out.frames, originals, strict=True))
