"""``osd``: draws boxes, labels and probes' display metadata onto frames, as nvdsosd does."""

from __future__ import annotations

from pydantic import Field

from panoptes.core.element import Element, ElementProperties
from panoptes.core.frame import Batch
from panoptes.render import draw_frame


class OsdProperties(ElementProperties):
    name: str | None = Field(None, description="Element name.")
    border_width: int = Field(2, ge=0, description="Box border width in pixels; 0 = no boxes.")
    font_scale: float = Field(0.5, gt=0, description="Text size (OpenCV font scale).")
    text_background: bool = Field(True, description="Draw labels on a filled background.")
    show_label: bool = Field(True, description="Write each object's class name.")
    show_confidence: bool = Field(True, description="Write each object's confidence (0.93).")
    show_track_id: bool = Field(True, description="Write each tracked object's id (#12).")
    show_keypoints: bool = Field(True, description="Draw objects' keypoint skeletons.")
    clock: bool = Field(False, description="Draw the wall-clock time in the top-left corner.")
    clock_format: str = Field("%Y-%m-%d %H:%M:%S", description="strftime format of the clock.")
    class_colors: dict[int, tuple[int, int, int]] = Field(
        default_factory=dict,
        description="(R, G, B) per class id; other classes take colours from a fixed palette.",
    )


class Osd(Element):
    """Replaces each frame's image with a drawn copy (see :func:`panoptes.render.draw_frame`).

    It runs in the video branch, whose frames are the branch's own: the image is replaced,
    never drawn on in place, because the metadata branch reads the same pixels meanwhile.
    """

    kind = "osd"
    Properties = OsdProperties

    props: OsdProperties

    def process(self, batch: Batch) -> Batch:
        for frame in batch.frames:
            frame.image = draw_frame(frame, self.props)
        return batch
