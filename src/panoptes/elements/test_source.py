"""``test-source``: a generated moving pattern, for trying a pipeline without footage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from panoptes.core.element import ElementProperties
from panoptes.elements.uri_source import UriSource


class TestSourceProperties(ElementProperties):
    type: Literal["test-source"] = Field("test-source", description="Element kind.")
    pattern: str = Field("ball", description="The pattern to draw.")
    name: str | None = Field(None, description="Name shown in logs and output.")
    width: int = Field(640, gt=0, description="Frame width in pixels.")
    height: int = Field(360, gt=0, description="Frame height in pixels.")
    fps: float = Field(30.0, gt=0, description="Frame rate, for timestamps and real-time play.")
    frames: int | None = Field(300, ge=1, description="Frames to deliver; null for no end.")
    real_time: bool = Field(
        False, description="Deliver at the frame rate instead of as fast as taken."
    )
    loop: bool = Field(False, description="Start the pattern again after `frames` frames.")
    drop_frame_interval: int = Field(1, ge=1, description="Keep only every Nth frame.")
    max_frames: int | None = Field(
        None, ge=1, description="Stop the stream after this many frames (GStreamer's num-buffers)."
    )
    queue_size: int = Field(4, ge=1, description="Frames held between this source and the mux.")

    @property
    def uri(self) -> str:
        frames = f"&frames={self.frames}" if self.frames else ""
        return f"test://{self.pattern}?width={self.width}&height={self.height}&fps={self.fps:g}{frames}"


class TestSource(UriSource):
    """A ``uri-source`` reading a ``test://`` URI built from the properties."""

    __test__ = False  # not a pytest class
    kind = "test-source"
    Properties = TestSourceProperties

    @staticmethod
    def uri_for(props: ElementProperties) -> str:
        assert isinstance(props, TestSourceProperties)
        uri: str = props.uri
        return uri
