"""Drawing frames' metadata onto their pixels with OpenCV: what the ``osd`` does, and what the
``snapshot`` sink and the ``tiler`` reuse.

Metadata speaks in original-frame pixels and ``frame.image`` may have been scaled by the mux, so
every coordinate goes through ``frame.transform`` before it is drawn. Colours in the metadata
and the properties are (R, G, B); OpenCV draws (B, G, R), and the conversion happens here only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from panoptes.core.meta import COCO_SKELETON, NO_ID, Color, DisplayMeta, Objects

if TYPE_CHECKING:
    from panoptes.core.frame import Frame
    from panoptes.core.geometry import Letterbox
    from panoptes.elements.osd import OsdProperties

__all__ = [
    "PALETTE",
    "class_color",
    "draw_display_meta",
    "draw_frame",
    "draw_objects",
    "draw_text",
    "object_label",
]

BGR = tuple[int, int, int]

PALETTE: tuple[Color, ...] = (
    (255, 56, 56), (0, 194, 255), (72, 249, 10), (255, 178, 29), (132, 56, 255),
    (0, 212, 187), (255, 112, 31), (203, 56, 255), (207, 210, 49), (100, 115, 255),
    (255, 149, 200), (26, 147, 52), (255, 157, 151), (44, 153, 168), (146, 204, 23),
    (82, 0, 133), (61, 219, 134), (0, 24, 236), (255, 55, 199), (52, 69, 147),
)  # fmt: skip
"""(R, G, B) colours of classes by ``class_id % len(PALETTE)``: neighbouring ids differ in hue,
so a person next to a bicycle never shares its colour."""

FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_PAD = 3
_DASH_PX = 8
"""Length of a dash (and of the gap after it) of a tracker-only object's border."""
_MARGIN = 4
"""Distance of the clock from the image's corner."""


def class_color(class_id: int, class_colors: Mapping[int, Color] | None = None) -> Color:
    """The (R, G, B) colour of ``class_id``: ``class_colors``'s when it names one, else the
    palette's."""
    if class_colors and class_id in class_colors:
        return class_colors[class_id]
    return PALETTE[class_id % len(PALETTE)]


def _bgr(rgb: Color) -> BGR:
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


def _text_color(background: BGR) -> BGR:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    b, g, r = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def object_label(objects: Objects, index: int, props: OsdProperties) -> str:
    """The text drawn with object ``index``: its ``display_text`` when a probe set one, else
    ``person 0.93 #12`` from the parts the properties ask for (classifiers' labels follow the
    class name, as nvdsosd writes them). Empty when nothing is asked for."""
    if objects.display_text and objects.display_text[index] is not None:
        return str(objects.display_text[index])
    parts: list[str] = []
    if props.show_label:
        parts.append(objects.labels[index])
        parts.extend(label for _, label, _ in objects.classifications[index])
    if props.show_confidence:
        parts.append(f"{float(objects.confidence[index]):.2f}")
    track = int(objects.track_id[index])
    if props.show_track_id and track != NO_ID:
        parts.append(f"#{track}")
    return " ".join(parts)


def draw_text(
    image: np.ndarray,
    text: str,
    xy: tuple[float, float],
    *,
    color: BGR = (255, 255, 255),
    font_scale: float = 0.5,
    background: BGR | None = (0, 0, 0),
) -> tuple[int, int, int, int]:
    """Draw ``text`` in place with its top-left corner at ``xy`` (``image`` pixels), moved as
    little as needed to stay inside the image. Returns the xyxy box it took."""
    height, width = image.shape[:2]
    thickness = max(1, round(font_scale * 2))
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    box_w, box_h = text_w + 2 * _TEXT_PAD, text_h + baseline + 2 * _TEXT_PAD
    x = int(min(max(round(xy[0]), 0), max(width - box_w, 0)))
    y = int(min(max(round(xy[1]), 0), max(height - box_h, 0)))
    if background is not None:
        cv2.rectangle(image, (x, y), (x + box_w - 1, y + box_h - 1), background, -1)
    origin = (x + _TEXT_PAD, y + _TEXT_PAD + text_h)
    cv2.putText(image, text, origin, FONT, font_scale, color, thickness, cv2.LINE_AA)
    return (x, y, x + box_w, y + box_h)


def _dashed_rectangle(image: np.ndarray, xyxy: Sequence[int], color: BGR, thickness: int) -> None:
    """A rectangle drawn as dashes, in one ``cv2.polylines`` call."""
    x1, y1, x2, y2 = xyxy
    corners = np.array([(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)], np.float32)
    segments: list[np.ndarray] = []
    for a, b in itertools.pairwise(corners):
        length = float(np.hypot(*(b - a)))
        steps = np.arange(0.0, length, 2 * _DASH_PX, dtype=np.float32)
        if len(steps) == 0:
            continue
        direction = (b - a) / max(length, 1e-6)
        starts = a + steps[:, None] * direction
        ends = a + np.minimum(steps + _DASH_PX, length)[:, None] * direction
        segments.extend(np.stack([starts, ends], axis=1).round().astype(np.int32))
    if segments:
        cv2.polylines(image, segments, False, color, thickness)


def _draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    edges: Sequence[tuple[int, int]],
    color: BGR,
    *,
    min_visibility: float,
    thickness: int,
) -> None:
    """Limbs between visible keypoints and a dot on each; ``keypoints`` is [K, 3] (x, y,
    visibility) in ``image`` pixels."""
    count = len(keypoints)
    visible = keypoints[:, 2] >= min_visibility
    points = keypoints[:, :2].round().astype(np.int32)
    limbs = [
        points[[a, b]] for a, b in edges if a < count and b < count and visible[a] and visible[b]
    ]
    # Not anti-aliased: a crowd's skeletons would cost about three times as much.
    if limbs:
        cv2.polylines(image, limbs, False, color, thickness)
    radius = thickness + 1
    for x, y in points[visible].tolist():
        cv2.circle(image, (x, y), radius, color, -1)


def draw_objects(
    image: np.ndarray, objects: Objects, props: OsdProperties, *, transform: Letterbox
) -> None:
    """Draw boxes, labels and keypoint skeletons in place; ``objects`` are in original-frame
    pixels and ``transform`` maps them to ``image`` pixels. Objects a tracker predicted without a
    detection (the ``tracker_only`` column) get a dashed border."""
    if len(objects) == 0:
        return
    boxes = transform.to_destination(objects.xyxy).round().astype(np.int32).tolist()
    class_ids = objects.class_id.tolist()
    predicted = objects.extra.get("tracker_only")
    predicted_rows = [] if predicted is None else (predicted != 0).tolist()
    colors = [_bgr(class_color(c, props.class_colors)) for c in class_ids]
    border = props.border_width
    if border > 0:
        for row, (box, color) in enumerate(zip(boxes, colors, strict=True)):
            x1, y1, x2, y2 = box
            if predicted_rows and predicted_rows[row]:
                _dashed_rectangle(image, box, color, border)
            else:
                cv2.rectangle(image, (x1, y1), (x2, y2), color, border)
    if props.show_keypoints and objects.keypoints is not None:
        keypoints = objects.keypoints.copy()
        keypoints[..., :2] = transform.points_to_destination(keypoints[..., :2])
        for row, color in enumerate(colors):
            _draw_skeleton(
                image,
                keypoints[row],
                COCO_SKELETON,
                color,
                min_visibility=0.5,
                thickness=max(1, border),
            )
    for row, (box, color) in enumerate(zip(boxes, colors, strict=True)):
        text = object_label(objects, row, props)
        if not text:
            continue
        x1, y1 = box[0], box[1]
        thickness = max(1, round(props.font_scale * 2))
        (_, text_h), baseline = cv2.getTextSize(text, FONT, props.font_scale, thickness)
        label_h = text_h + baseline + 2 * _TEXT_PAD
        # Above the box when there is room, else just inside its top edge.
        top = y1 - label_h if y1 - label_h >= 0 else y1
        draw_text(
            image,
            text,
            (x1 - border // 2, top),
            color=_text_color(color) if props.text_background else color,
            font_scale=props.font_scale,
            background=color if props.text_background else None,
        )


def draw_display_meta(
    image: np.ndarray, display_meta: DisplayMeta, props: OsdProperties, *, transform: Letterbox
) -> None:
    """Draw probes' display metadata in place (rectangles, lines, circles, skeletons, then
    texts on top); coordinates are original-frame pixels mapped by ``transform``."""
    if len(display_meta) == 0:
        return
    meta = display_meta.transformed(transform)
    for rect in meta.rectangles:
        x1, y1, x2, y2 = (round(v) for v in rect.xyxy)
        color = _bgr(rect.color)
        if rect.thickness < 0 and rect.alpha < 1.0:
            _shade(image, (x1, y1, x2, y2), color, rect.alpha)
        else:
            cv2.rectangle(image, (x1, y1), (x2, y2), color, rect.thickness)
    for line in meta.lines:
        start = (round(line.xy1[0]), round(line.xy1[1]))
        end = (round(line.xy2[0]), round(line.xy2[1]))
        cv2.line(image, start, end, _bgr(line.color), line.thickness, cv2.LINE_AA)
    for circle in meta.circles:
        center = (round(circle.center[0]), round(circle.center[1]))
        radius = max(0, round(circle.radius))
        cv2.circle(image, center, radius, _bgr(circle.color), circle.thickness, cv2.LINE_AA)
    for skeleton in meta.skeletons:
        _draw_skeleton(
            image,
            skeleton.keypoints,
            skeleton.edges,
            _bgr(skeleton.color),
            min_visibility=skeleton.min_visibility,
            thickness=max(1, props.border_width),
        )
    for text in meta.texts:
        draw_text(
            image,
            text.text,
            text.xy,
            color=_bgr(text.color),
            font_scale=text.font_scale if text.font_scale is not None else props.font_scale,
            background=None if text.background is None else _bgr(text.background),
        )


def _shade(image: np.ndarray, xyxy: tuple[int, int, int, int], color: BGR, alpha: float) -> None:
    """Blend ``color`` over a rectangle of ``image`` in place, with opacity ``alpha``."""
    height, width = image.shape[:2]
    x1, y1 = max(0, min(xyxy[0], xyxy[2])), max(0, min(xyxy[1], xyxy[3]))
    x2, y2 = min(width, max(xyxy[0], xyxy[2]) + 1), min(height, max(xyxy[1], xyxy[3]) + 1)
    if x2 <= x1 or y2 <= y1:
        return
    region = image[y1:y2, x1:x2]
    fill = np.empty_like(region)
    fill[...] = color
    cv2.addWeighted(fill, alpha, region, 1.0 - alpha, 0.0, dst=region)


def draw_frame(frame: Frame, props: OsdProperties, *, now: float | None = None) -> np.ndarray:
    """A drawn copy of ``frame.image`` (HWC uint8 BGR, same shape); the frame is not changed.

    Draws the objects' boxes, labels and keypoints, then the display metadata, then the clock
    (``time.strftime(props.clock_format)`` of ``now``, default ``time.time()``) when
    ``props.clock``.
    """
    image = frame.image.copy()
    draw_objects(image, frame.meta.objects, props, transform=frame.transform)
    draw_display_meta(image, frame.meta.display_meta, props, transform=frame.transform)
    if props.clock:
        stamp = time.strftime(props.clock_format, time.localtime(now))
        draw_text(
            image,
            stamp,
            (_MARGIN, _MARGIN),
            font_scale=props.font_scale,
            background=(0, 0, 0) if props.text_background else None,
        )
    return image
