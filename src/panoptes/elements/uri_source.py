"""``uri-source``: one stream from a file, ``file://``, ``rtsp://``, ``http(s)://``, a V4L2 camera
(``v4l2://``), an image folder or glob, or a generated ``test://`` pattern, decoded on the CPU
with PyAV or on the GPU (NVDEC)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from panoptes.core.element import ElementProperties
from panoptes.media.reader import DecodedFrame, FrameReader, PacketTap, open_reader


class UriSourceProperties(ElementProperties):
    type: Literal["uri-source"] = Field("uri-source", description="Element kind.")
    uri: str = Field(
        description="Path (relative to the config's folder), file://, rtsp://, http(s)://, a "
        "V4L2 camera such as v4l2:///dev/video0?width=1280&height=720&fps=30/1, an image "
        "folder, a glob such as frames/*.jpg, or test://ball?width=640&height=360&fps=30&frames=300."
    )
    name: str | None = Field(
        None, description="Name shown in logs and output; defaults to the uri."
    )
    loop: bool = Field(False, description="Start a file again at its end, forever.")
    real_time: bool = Field(
        False,
        description="Play a file at its own frame rate, not as fast as the pipeline takes it.",
    )
    drop_frame_interval: int = Field(
        1, ge=1, description="Keep only every Nth decoded frame (DeepStream's drop-frame-interval)."
    )
    max_frames: int | None = Field(
        None, ge=1, description="Stop the stream after this many frames (GStreamer's num-buffers)."
    )
    open_timeout_s: float = Field(
        10.0, gt=0, description="Give up opening a network stream after this."
    )
    queue_size: int = Field(
        4,
        ge=1,
        description="Frames held between this source and the mux; a live stream drops its "
        "oldest frame when full, a file waits.",
    )
    frame_policy: Literal["auto", "every", "freshest"] = Field(
        "auto",
        description="'every': the source waits for the pipeline, no frame lost (files); "
        "'freshest': only the newest frame waits for the mux, older ones are dropped and "
        "counted, so latency stays bounded when the pipeline is slower than the camera; "
        "'auto': 'freshest' for live streams, 'every' for the rest.",
    )
    stall_timeout_s: float = Field(
        10.0,
        ge=0,
        description="A network stream that sends no data for this long is reconnected "
        "(DeepStream's rtsp-reconnect-interval-sec); 0 = wait open_timeout_s.",
    )
    reconnect_attempts: int = Field(
        -1,
        ge=-1,
        description="Times a network stream that fails, stalls or ends is opened again before "
        "it is given up as failed; -1 = forever (rtsp-reconnect-attempts), 0 = never.",
    )
    reconnect_backoff_s: float = Field(
        1.0, gt=0, description="Wait before the first reconnection; doubles after each failure."
    )
    reconnect_backoff_max_s: float = Field(
        30.0, gt=0, description="Longest wait between two reconnection attempts."
    )
    decoder: Literal["auto", "cpu", "nvdec"] = Field(
        "cpu",
        description="cpu: FFmpeg; nvdec: the GPU's hardware decoder for H.264 and HEVC, frames "
        "staying on the GPU as tensors (PyNvVideoCodec and a CUDA build of torch), the CPU with "
        "a warning where it cannot; auto: NVDEC where there is one and it takes the stream, "
        "else quietly the CPU. Video files and network streams only.",
    )
    gpu_id: int = Field(0, ge=0, description="The GPU whose NVDEC decodes (decoder auto or nvdec).")


class UriSource:
    """Reads one stream in the pipeline's source thread; see :class:`UriSourceProperties`."""

    kind = "uri-source"
    Properties: type[ElementProperties] = UriSourceProperties

    def __init__(self, props: UriSourceProperties, *, base_dir: Path) -> None:
        self.props = props
        # The reader names an unnamed stream by its URI with any password masked.
        # A test-source shares this class but has no network or decoder settings.
        self._reader: FrameReader = open_reader(
            self.uri_for(props),
            name=props.name,
            loop=props.loop,
            real_time=props.real_time,
            drop_frame_interval=props.drop_frame_interval,
            open_timeout_s=getattr(props, "open_timeout_s", 10.0),
            read_timeout_s=getattr(props, "stall_timeout_s", None),
            base_dir=base_dir,
            decoder=getattr(props, "decoder", "cpu"),
            gpu_id=getattr(props, "gpu_id", 0),
        )

    @staticmethod
    def uri_for(props: ElementProperties) -> str:
        assert isinstance(props, UriSourceProperties)
        uri: str = props.uri
        return uri

    @property
    def name(self) -> str:
        return self._reader.name

    def open(self) -> None:
        self._reader.open()

    @property
    def is_live(self) -> bool:
        return self._reader.is_live

    @property
    def is_network(self) -> bool:
        """Whether it reads from the network (and so may be reconnected)."""
        return self._reader.is_network

    @property
    def keeps_freshest(self) -> bool:
        """Whether only the newest frame waits for the mux (see ``frame_policy``)."""
        policy = getattr(self.props, "frame_policy", "auto")
        return policy == "freshest" or (policy == "auto" and self.is_live)

    @property
    def size_wh(self) -> tuple[int, int]:
        return self._reader.size_wh

    @property
    def fps(self) -> float | None:
        """Frames per second this source delivers (after ``drop_frame_interval``), when known."""
        native = self._reader.fps
        return None if not native else native / self.props.drop_frame_interval

    @property
    def expected_frames(self) -> int | None:
        """Frames this source will deliver, when known (files that do not loop)."""
        max_frames = getattr(self.props, "max_frames", None)
        count = self._reader.frame_count
        if count is None or self.props.loop:
            return max_frames
        count = -(-count // self.props.drop_frame_interval)
        return count if max_frames is None else min(count, max_frames)

    @property
    def corrupt_frames(self) -> int:
        return self._reader.corrupt_frames

    @property
    def memory(self) -> frozenset[str]:
        """The kinds of memory its frames may come in (see ``panoptes.core.negotiation``)."""
        return self._reader.memory

    @property
    def tensor_device(self) -> str | None:
        """The torch device of its tensor frames (NVDEC's GPU), or None."""
        return self._reader.tensor_device

    def take_warnings(self) -> list[str]:
        """What to say on the bus about this source (a fallback to CPU decoding), once."""
        warnings = list(self._reader.warnings)
        self._reader.warnings.clear()
        return warnings

    def allow_yuv(self) -> None:
        """Let the frames come in their YUV planes where the decoder can (see the reader's
        ``allow_yuv``): the pipeline asks when every element takes them."""
        self._reader.allow_yuv()

    def frames(self, stop: threading.Event) -> Iterator[DecodedFrame]:
        return self._reader.frames(stop)

    def set_packet_tap(self, tap: PacketTap | None) -> bool:
        """Hand each compressed video packet to ``tap``, in the source thread, before it is
        decoded (the ``record`` element keeps them); ``None`` stops. False when the source has
        no compressed packets (image folders, test patterns)."""
        return self._reader.set_packet_tap(tap)

    def close(self) -> None:
        self._reader.close()
