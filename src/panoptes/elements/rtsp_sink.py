"""``rtsp``: serves frames as live H.264 over RTSP from panoptes' own server: the tiled view at
one path (``rtsp://HOST:8554/ds-test``, as deepstream-app's RTSP sink), or each stream at its own.
"""

from __future__ import annotations

import string
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from panoptes.core.bus import Message, MessageType
from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import TILED_SOURCE_ID, Batch, Frame, image_size_wh
from panoptes.core.negotiation import BGR_OR_CUDA, CPU_ONLY
from panoptes.elements.file_sink import file_name_part

if TYPE_CHECKING:
    from panoptes.media._nvenc import NvencEncoder
    from panoptes.media.rtsp import H264Encoder, H264Mount, RtspServer

DEFAULT_FPS = 30.0
LATENCY_WINDOW = 2048
"""Recent glass-to-glass latencies kept (capture to the last RTP packet of the frame sent)."""


class RtspSinkProperties(ElementProperties):
    type: Literal["rtsp"] = Field("rtsp", description="Element kind.")
    name: str | None = Field(None, description="Element name.")
    host: str = Field("0.0.0.0", description="Address the RTSP server listens on.")
    port: int = Field(
        8554, ge=0, le=65535, description="RTSP port (deepstream-app's rtsp-port); 0 = any free."
    )
    path: str = Field(
        "/ds-test",
        description="Path of the tiled view. Without a tiler each stream has its own path: this "
        "one may name {source_id} or {name}, else the stream's name is added (/ds-test/gate).",
    )
    bitrate_kbps: int | None = Field(
        4000, gt=0, description="Target bitrate in kbit/s (deepstream-app's bitrate / 1000)."
    )
    crf: int | None = Field(
        None, ge=0, le=51, description="Constant quality instead of a bitrate (lower = better)."
    )
    preset: str = Field(
        "ultrafast", description="x264 speed preset; a live view wants the fastest."
    )
    gop: int = Field(
        30,
        ge=1,
        description="Frames between key frames (deepstream-app's iframeinterval): a client that "
        "joins waits for the next one.",
    )
    fps: float | None = Field(
        None, gt=0, description="Frame rate announced to the encoder; default the stream's own."
    )
    encoder: Literal["cpu", "auto", "nvenc"] = Field(
        "cpu",
        description="cpu: libx264; nvenc: the GPU's hardware encoder, tuned for ultra-low "
        "latency (PyNvVideoCodec and a CUDA build of torch; frames on the GPU stay there), the "
        "CPU with a warning where it cannot; auto: NVENC where there is one, else quietly the "
        "CPU. With NVENC, crf is a constant quantiser and preset maps to P1 (ultrafast) ... P7.",
    )
    gpu_id: int = Field(0, ge=0, description="The GPU whose NVENC encodes (encoder auto or nvenc).")


class RtspSink(Element):
    """Encodes the frames it gets with x264 (or NVENC, ``encoder``) and hands them to the RTSP
    server's mounts.

    A client that connects starts at the next key frame; a slow client loses frames of its
    own without slowing the encoder or the other clients (the server buffers per client).
    """

    kind = "rtsp"
    Properties = RtspSinkProperties
    is_sink = True
    takes_video = True

    props: RtspSinkProperties

    def input_memory(self) -> frozenset[str]:
        """NVENC takes frames on the GPU as they are; libx264 takes numpy arrays."""
        return BGR_OR_CUDA if getattr(self, "_nvenc", False) else CPU_ONLY

    def build(self) -> None:
        from panoptes.media.rtsp import shared_server

        place = self.context.place
        path = self.props.path
        if not path.startswith("/"):
            raise ConfigError(f"{path!r} must start with '/'", f"{place}.path")
        fields = {field for _, field, _, _ in string.Formatter().parse(path) if field}
        if fields - {"source_id", "name"}:
            raise ConfigError(
                f"{path!r}: the path may name {{source_id}} and {{name}} only", f"{place}.path"
            )
        self._per_stream_template = fields != set()
        try:
            self.server: RtspServer = shared_server(self.props.host, self.props.port)
        except OSError as error:
            raise ConfigError(
                f"cannot serve RTSP on {self.props.host}:{self.props.port}: "
                f"{error.strerror or error}",
                f"{place}.port",
            ) from error
        self._nvenc, self._fallback_reason = False, None
        if self.props.encoder != "cpu":
            from panoptes.media._nvenc import choose_nvenc

            props = self.props
            self._nvenc, self._fallback_reason = choose_nvenc(props.encoder, props.gpu_id, "h264")
        self._mounts: dict[int, H264Mount] = {}
        self._encoders: dict[int, H264Encoder | NvencEncoder] = {}
        self._paths: dict[int, str] = {}
        self._lock = threading.Lock()
        self.latencies_s: deque[float] = deque(maxlen=LATENCY_WINDOW)
        """Recent capture-to-sent latencies in seconds, all outputs together."""
        self.frames_sent = 0

    def url(self, source_id: int = TILED_SOURCE_ID, host: str = "127.0.0.1") -> str:
        """The URL a client plays ``source_id``'s output at (the tiled view by default)."""
        return self.server.url(self._paths[source_id], host=host)

    @property
    def paths(self) -> dict[int, str]:
        """The path of each output being served, by source id (``-1``: the tiled view)."""
        return dict(self._paths)

    def process(self, batch: Batch) -> None:
        from panoptes.media.rtsp import H264Encoder

        if self._fallback_reason is not None:
            # Said with the first frames rather than at build, where nobody listens yet.
            from panoptes.media._nvenc import say_fallback

            say_fallback(self, self.props.encoder, self._fallback_reason)
            self._fallback_reason = None
        for frame in batch.frames:
            try:
                mount, encoder = self._output_for(frame)
                # The CPU encoder takes numpy BGR: a frame on the GPU is downloaded (a stream
                # whose NVENC session did not start).
                cpu = isinstance(encoder, H264Encoder)
                image = frame.image_bgr() if cpu else frame.image
                for access_unit, keyframe in encoder.encode(image):
                    mount.push(
                        access_unit,
                        pts_s=time.monotonic(),
                        keyframe=keyframe,
                        capture_time_s=frame.capture_time_s,
                    )
            except Exception as error:
                self.report_failure(batch, error)
                self._finish(frame.source_id)
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                self._finish(event.source_id)
        return None

    def _output_for(self, frame: Frame) -> tuple[H264Mount, H264Encoder | NvencEncoder]:
        mount = self._mounts.get(frame.source_id)
        if mount is not None:
            return mount, self._encoders[frame.source_id]
        from panoptes.media.rtsp import H264Encoder, shared_server

        if not self.server.running:  # another pipeline's sink on this port released it
            self.server = shared_server(self.props.host, self.props.port)
        width, height = image_size_wh(frame.image)
        fps = self.props.fps or frame.fps or DEFAULT_FPS
        bitrate_kbps = None if self.props.crf is not None else self.props.bitrate_kbps
        encoder: H264Encoder | NvencEncoder | None = None
        if self._nvenc:
            encoder = self._nvenc_encoder(frame, (width, height), fps, bitrate_kbps)
        if encoder is None:
            encoder = H264Encoder(
                width,
                height,
                fps,
                bitrate_kbps=bitrate_kbps,
                crf=self.props.crf,
                preset=self.props.preset,
                gop=self.props.gop,
            )
        path = self._path_for(frame)
        mount = self.server.mount(path)
        mount.on_sent = self._record_sent
        self._mounts[frame.source_id] = mount
        self._encoders[frame.source_id] = encoder
        self._paths[frame.source_id] = path
        url = self.server.url(path)
        self.bus.post(
            Message(
                MessageType.INFO,
                self.name,
                f"serving {frame.source_name} at {url}",
                {"url": url, "path": path, "source_id": frame.source_id},
            )
        )
        return mount, encoder

    def _nvenc_encoder(
        self, frame: Frame, size_wh: tuple[int, int], fps: float, bitrate_kbps: int | None
    ) -> NvencEncoder | None:
        """An NVENC encoder for ``frame``'s output, or None when it does not start (too many
        sessions on the GPU, a size NVENC does not take): that output is encoded on the CPU,
        said on the bus."""
        from panoptes.media._nvenc import NvencEncoder, nvenc_error_text, say_fallback

        props = self.props
        try:
            return NvencEncoder(
                *size_wh,
                fps,
                codec="h264",
                gpu_id=props.gpu_id,
                bitrate_kbps=bitrate_kbps,
                crf=props.crf,
                preset=props.preset,
                gop=props.gop,
                low_latency=True,
            )
        except Exception as error:
            error_text = nvenc_error_text(error)
            reason = f"the hardware encoder did not start for {frame.source_name} ({error_text})"
            say_fallback(self, props.encoder, reason, source_id=frame.source_id)
            return None

    def _path_for(self, frame: Frame) -> str:
        if frame.source_id == TILED_SOURCE_ID:
            return self.props.path.format(source_id="tiled", name="tiled")
        name = file_name_part(frame.source_name) or str(frame.source_id)
        if self._per_stream_template:
            path = self.props.path.format(source_id=frame.source_id, name=name)
        else:
            path = f"{self.props.path.rstrip('/')}/{name}"
        if path in self._paths.values():  # two streams of one name, or one added again
            path = f"{path}_{frame.source_id}"
        return path

    def _record_sent(self, capture_time_s: float, sent_time_s: float) -> None:
        # Called from the server's thread.
        with self._lock:
            self.latencies_s.append(sent_time_s - capture_time_s)
            self.frames_sent += 1

    def _finish(self, source_id: int) -> None:
        self._encoders.pop(source_id, None)
        if self._mounts.pop(source_id, None) is not None:
            self.server.unmount(self._paths.pop(source_id))

    def close(self) -> None:
        for source_id in list(getattr(self, "_mounts", ())):
            self._finish(source_id)
        server = getattr(self, "server", None)
        if server is not None and not server.paths:
            # Nothing else is served on this port: free it (``panoptes validate`` builds this
            # sink too, and a finished pipeline should not keep a port open).
            server.stop()
