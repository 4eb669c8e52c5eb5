"""H.264 and HEVC decoded by the GPU's hardware decoder (NVDEC) through PyNvVideoCodec: frames
stay on the GPU, as NV12 tensors.

The reader is an :class:`AvReader` whose packets go to NVDEC instead of FFmpeg's decoder. Demuxing
stays with PyAV, so network options and timeouts, the explanations of failures, the packet tap
(smart recording), looping and timestamps are the CPU path's, unchanged. PyNvVideoCodec's own
demuxer (``CreateDemuxer``) opens files and URLs too, through its own FFmpeg, but takes no
options: no RTSP transport, no socket timeout (a dead camera would hold its thread for good), and
no packets to tap.

Each packet goes through FFmpeg's ``*_mp4toannexb`` bitstream filter (NVDEC reads Annex B byte
streams, where MP4 and MKV store length-prefixed NAL units; Annex B input passes unchanged), then
to the decoder by address with its pts, which comes back on the picture it decodes to. Parameter
sets sent only out of band (an RTSP camera's SDP) go to the decoder first.

A decoded picture lives in the decoder's own buffers, which its next ``Decode`` call reuses: it is
copied out before that, on the reader's CUDA stream, once the stream has waited for the decoder's
own work on it, and the stream is then synchronised, so the copy is whole before the frame leaves
the source's thread. The copy goes through the CUDA driver (:class:`DeviceCopy`, which says why),
not DLPack, unless the picture's rows are padded.
Frames dropped by ``drop_frame_interval`` are never copied. Pictures an MP4 edit list cuts, which
FFmpeg's decoder drops, come out of NVDEC like the others: they are dropped by their pts.

Streams NVDEC cannot take here (another codec, 10-bit or 4:2:2 pictures, a decoder that does not
start) are decoded on the CPU instead: quietly for ``decoder: auto``, with a warning for
``decoder: nvdec``. The hardware side sits behind :data:`BACKEND`, which tests replace with a
software decoder giving the same NV12 tensors on torch's CPU device.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

import av
import av.error
import av.video.stream
import numpy as np

from panoptes.core.cuda_driver import CudaDriverError, DeviceCopy
from panoptes.core.errors import SourceError
from panoptes.core.gpu_wait import set_gpu_wait
from panoptes.core.negotiation import BGR_OR_CUDA
from panoptes.media._av import AvReader
from panoptes.media._base import ImageMaker

if TYPE_CHECKING:
    import av.packet
    import torch

    VideoPacket = av.packet.Packet[av.video.stream.VideoStream]
    AnnexBData = bytes | VideoPacket
    """Bytes to decode: a packet, or parameter sets (both buffers)."""

NVDEC_CODECS: dict[str, str] = {"h264": "H264", "hevc": "HEVC"}
"""FFmpeg codec names NVDEC decodes here, and their names in ``PyNvVideoCodec.cudaVideoCodec``."""

NVDEC_PIXEL_FORMATS = ("yuv420p", "yuvj420p")
"""8-bit 4:2:0: what NVDEC gives as NV12 (10-bit would come as P016, 4:4:4 as planar)."""

_ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


@dataclass
class DecodedPicture:
    """One picture a decoder session gave, still in the decoder's buffers."""

    pts: int | None
    """Its presentation time in the stream's time base (what its packet carried), or None."""
    take: Callable[[], torch.Tensor]
    """Copies it out: an NV12 uint8 tensor [H * 3 / 2, W] that the caller owns. Valid until the
    session's next ``decode`` or ``flush``."""


class DecoderSession(Protocol):
    """Decodes the packets of one stream into NV12 pictures."""

    def decode(self, packet: VideoPacket) -> list[DecodedPicture]:
        """The pictures ``packet`` completes, in display order (often none, or one)."""

    def flush(self) -> list[DecodedPicture]:
        """End of stream: the pictures still held back."""

    def restart(self, stream: av.video.stream.VideoStream) -> bool:
        """Go on with ``stream``, the same file opened again after :meth:`flush` (a looping
        source), with this decoder; False when it cannot, and the caller opens another."""

    def close(self) -> None:
        """Release the decoder."""


class DecoderBackend(Protocol):
    """Where decoder sessions come from: NVDEC here, a software stand-in in tests."""

    def unavailable_reason(self, gpu_id: int) -> str | None:
        """Why it cannot decode on GPU ``gpu_id`` (no library, no GPU), or None when it can."""

    def device(self, gpu_id: int) -> str:
        """The torch device its tensors are on (``cuda:0``)."""

    def open(self, stream: av.video.stream.VideoStream, gpu_id: int) -> DecoderSession:
        """A session for ``stream``; raises when the decoder cannot start."""


def unsupported_reason(stream: av.video.stream.VideoStream) -> str | None:
    """Why NVDEC will not decode ``stream`` here, or None when it will."""
    context = stream.codec_context
    if context.name not in NVDEC_CODECS:
        return f"NVDEC decodes H.264 and HEVC here, not {context.name}"
    # A network stream may not know its pixel format before its first picture; a 10-bit one
    # is caught then (NVDEC gives 16-bit samples).
    pix_fmt = context.pix_fmt
    if pix_fmt is not None and pix_fmt not in NVDEC_PIXEL_FORMATS:
        return f"NVDEC frames are 8-bit 4:2:0 here, and this stream is {pix_fmt}"
    return None


def _is_annexb(data: bytes) -> bool:
    return data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))


class AnnexB:
    """The packets of one H.264 or HEVC stream as NVDEC reads them: Annex B byte streams.

    MP4 and MKV packets go through FFmpeg's ``*_mp4toannexb`` filter, which also puts the
    parameter sets of the container's header before each keyframe; Annex B packets (raw
    streams, MPEG-TS, RTSP) pass unchanged, and parameter sets given only out of band (a
    camera's SDP) go before the first packet's, in the same buffer (a decoder may refuse a
    buffer with parameter sets and no picture).
    """

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        codec = stream.codec_context.name
        self._filter = av.bitstream.BitStreamFilterContext(_ANNEXB_FILTERS[codec], stream)
        extradata = stream.codec_context.extradata or b""
        self._header = extradata if _is_annexb(extradata) else b""

    def convert(self, packet: VideoPacket | None) -> list[tuple[AnnexBData, int | None]]:
        """The byte strings (buffers) to decode for ``packet`` (None: the end of the stream),
        each with the pts it carries, in the stream's time base."""
        units: list[tuple[AnnexBData, int | None]] = [
            (part, part.pts) for part in self._filter.filter(packet)
        ]
        if self._header and units:
            first, pts = units[0]
            units[0] = (self._header + bytes(first), pts)  # one copy, of one packet
            self._header = b""
        return units


class _PyNvVideoCodecSession:
    """One NVDEC decoder (``PyNvVideoCodec.CreateDecoder``) fed with Annex B packets."""

    def __init__(self, stream: av.video.stream.VideoStream, gpu_id: int) -> None:
        import PyNvVideoCodec as nvc
        import torch

        self._nvc: Any = nvc
        set_gpu_wait()  # once a process: its waits inside Decode, and each picture's copy
        device = torch.device("cuda", gpu_id)
        self._cuda_stream = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
        self._device = device
        self._copy = DeviceCopy(gpu_id, self._cuda_stream.cuda_stream)
        self._decoder: Any = nvc.CreateDecoder(
            gpuid=gpu_id,
            codec=getattr(nvc.cudaVideoCodec, NVDEC_CODECS[stream.codec_context.name]),
            usedevicememory=True,
        )
        self._annexb = AnnexB(stream)
        self._format = _stream_format(stream)
        self._drained = False
        self._timestamps = True
        self._thread = threading.local()
        """``stream_set``: the CUDA stream made current in the thread taking pictures."""

    def decode(self, packet: VideoPacket) -> list[DecodedPicture]:
        if packet.pts is None:  # raw elementary streams: the reader counts frames instead
            self._timestamps = False
        self._drained = False
        return self._submit_all(self._annexb.convert(packet))

    def flush(self) -> list[DecodedPicture]:
        pictures = self._submit_all([*self._annexb.convert(None), (b"", None)])
        self._drained = True
        return pictures

    def restart(self, stream: av.video.stream.VideoStream) -> bool:
        # NVDEC decodes on after its end-of-stream packet (seen on an H100, H.264 and HEVC):
        # a looping file keeps its decoder, whose creation and destruction each hold the GIL
        # for a tenth of a second or more, every pass, against every other stream's thread.
        if not self._drained or _stream_format(stream) != self._format:
            return False
        self._annexb = AnnexB(stream)
        self._drained = False
        return True

    def _submit_all(self, units: list[tuple[AnnexBData, int | None]]) -> list[DecodedPicture]:
        pictures: list[DecodedPicture] = []
        for index, (data, pts) in enumerate(units):
            if index and pictures:
                # The next Decode call reuses the buffers of the pictures before it.
                pictures = [_taken(picture) for picture in pictures]
            pictures += self._submit(*_address(data), pts)
        return pictures

    def _submit(self, address: int, size: int, pts: int | None) -> list[DecodedPicture]:
        """Decode the ``size`` bytes at ``address`` (kept alive by the caller meanwhile); none:
        the end."""
        nvc = self._nvc
        packet = nvc.PacketData()
        packet.bsl_data = address
        packet.bsl = size
        packet.pts = 0 if pts is None else pts
        # An empty packet is the end of the stream: the decoder gives what it holds back
        # (NVIDIA's NvDecoder flags it so itself; the flag is said too where the library has it).
        flag = getattr(getattr(nvc, "VideoPacketFlag", None), "ENDOFSTREAM", None)
        if not size and flag is not None:
            try:
                packet.decode_flag = flag
            except TypeError:
                packet.decode_flag = int(flag)
        frames = self._decoder.Decode(packet)
        return [
            DecodedPicture(
                int(frame.timestamp) if self._timestamps else None,
                functools.partial(self._take, frame),
            )
            for frame in frames
        ]

    def _take(self, frame: Any) -> torch.Tensor:
        import torch

        if getattr(self._thread, "stream_set", None) is not self._cuda_stream:
            # The source's thread is the reader's alone: its stream is made current once, not
            # entered per frame (a context manager per frame cost 10% of the decoding rate of
            # 32 streams on an H100). The pictures' memory is allocated on it.
            torch.cuda.set_stream(self._cuda_stream)
            self._thread.stream_set = self._cuda_stream
        shape, strides = frame.shape, frame.strides
        # One byte a sample, rows unpadded: the picture is one run of bytes (the DLPack path
        # takes any other, and refuses 16-bit samples by name).
        if (
            len(shape) == 2
            and strides[1] == 1
            and strides[0] == shape[1]
            and frame.framesize() == shape[0] * shape[1]
        ):
            image = torch.empty(shape, dtype=torch.uint8, device=self._device)
            try:
                # After the decoder's own copy into the picture (its stream's event).
                self._copy.copy(
                    image.data_ptr(),
                    frame.GetPtrToPlane(0),
                    image.numel(),
                    after_event=frame.decoder_stream_event,
                )
            except CudaDriverError as error:
                raise SourceError(f"NVDEC picture not copied out: {error}") from error
            return image
        return self._take_by_dlpack(frame)

    def _take_by_dlpack(self, frame: Any) -> torch.Tensor:
        """The picture through DLPack: any layout, and the errors of a picture that is not NV12."""
        import torch
        from torch.utils.dlpack import from_dlpack

        view = from_dlpack(frame)  # makes the stream wait for the decoder's work on the picture
        if view.ndim != 2 or view.dtype != torch.uint8:
            raise SourceError(
                f"NVDEC gave a {view.dtype} picture of shape {tuple(view.shape)}, not NV12"
            )
        image = view.clone(memory_format=torch.contiguous_format)
        self._cuda_stream.synchronize()
        return image

    def close(self) -> None:
        self._decoder = None
        self._copy.close()


def _stream_format(stream: av.video.stream.VideoStream) -> tuple[str, int, int]:
    context = stream.codec_context
    return context.name, context.width, context.height


def _address(data: AnnexBData) -> tuple[int, int]:
    """Where the bytes of ``data`` are, and how many: a packet's are read where they are."""
    if isinstance(data, bytes):
        return (np.frombuffer(data, np.uint8).ctypes.data if data else 0), len(data)
    return data.buffer_ptr, data.buffer_size


def _taken(picture: DecodedPicture) -> DecodedPicture:
    image = picture.take()
    return DecodedPicture(picture.pts, lambda: image)


def video_codec_unavailable_reason(gpu_id: int) -> str | None:
    """Why PyNvVideoCodec cannot work on GPU ``gpu_id`` (not installed, no CUDA build of torch,
    no such GPU), before it is imported; None when it may (the caller imports it next)."""
    if importlib.util.find_spec("PyNvVideoCodec") is None:
        return "PyNvVideoCodec is not installed (pip install PyNvVideoCodec)"
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install torch, a CUDA build)"
    import torch

    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return "this PyTorch is a CPU build (install a CUDA build of torch)"
        return "no CUDA GPU is visible"
    count = torch.cuda.device_count()
    if gpu_id >= count:
        return f"there is no GPU {gpu_id}: {count} visible"
    return None


@functools.cache
def _nvdec_unavailable_reason(gpu_id: int) -> str | None:
    reason = video_codec_unavailable_reason(gpu_id)
    if reason is not None:
        return reason
    try:
        import PyNvVideoCodec  # noqa: F401
    except Exception as error:  # a wheel for another CUDA, a missing driver library
        return f"PyNvVideoCodec does not load: {error}"
    return None


class PyNvVideoCodecBackend:
    """NVDEC through PyNvVideoCodec (``CreateDecoder(..., usedevicememory=True)``)."""

    def unavailable_reason(self, gpu_id: int) -> str | None:
        return _nvdec_unavailable_reason(gpu_id)

    def device(self, gpu_id: int) -> str:
        return f"cuda:{gpu_id}"

    def open(self, stream: av.video.stream.VideoStream, gpu_id: int) -> DecoderSession:
        return _PyNvVideoCodecSession(stream, gpu_id)


BACKEND: DecoderBackend = PyNvVideoCodecBackend()
"""Where :class:`NvdecReader` gets its decoders (replaced in tests)."""


class NvdecReader(AvReader):
    """An :class:`AvReader` decoding on GPU ``gpu_id``: frames are NV12 tensors there.

    Args:
        gpu_id: the GPU whose NVDEC decodes.
        strict: NVDEC was asked for by name (``decoder: nvdec``): a stream it cannot take is
            decoded on the CPU with a warning (in ``warnings``); otherwise quietly.
        **kwargs: as :class:`AvReader`.
    """

    def __init__(self, uri: str, name: str, *, gpu_id: int, strict: bool, **kwargs: Any) -> None:
        super().__init__(uri, name, **kwargs)
        self.gpu_id = gpu_id
        self._strict = strict
        self._backend = BACKEND
        self.memory = BGR_OR_CUDA
        self.tensor_device = self._backend.device(gpu_id)
        self._session: DecoderSession | None = None
        self._said: set[str] = set()

    def _open(self) -> None:
        super()._open()
        self._start_session()

    def _start_session(self) -> None:
        assert self._stream is not None
        stream = self._stream
        reason = unsupported_reason(stream)
        if reason is None:
            try:
                self._session = self._backend.open(stream, self.gpu_id)
            except Exception as error:
                reason = f"the hardware decoder did not start ({error})"
                self._say(reason)
        if self._session is None:
            self._color_space = None
            if self._strict and reason is not None:
                self._say(reason)
            return
        from panoptes.media.gpu_image import color_space_name

        context = stream.codec_context
        self._color_space = color_space_name(
            context.colorspace, context.color_range, full=context.pix_fmt == "yuvj420p"
        )

    def _say(self, reason: str) -> None:
        """Warn once per reason (a reconnecting camera opens again and again)."""
        if reason not in self._said:
            self._said.add(reason)
            self.warnings.append(f"decoder 'nvdec': {reason}; this stream is decoded on the CPU")

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _close(self) -> None:
        self._close_session()
        super()._close()

    def _rewind(self) -> None:
        # The file is opened again; the decoder, drained at the pass's end, carries on with it
        # when it can (its start is what costs), else a new one starts.
        session, self._session = self._session, None
        super()._rewind()
        assert self._stream is not None
        if session is not None and session.restart(self._stream):
            self._session = session
            return
        if session is not None:
            session.close()
        self._start_session()

    def _begin_pass(self) -> None:
        # Pictures an MP4 edit list cuts (before the start, at negative times): FFmpeg's decoder
        # decodes their packets, for the pictures that refer to them, and drops them; NVDEC
        # gives them back like any other, known by their pts.
        self._discarded: set[int] = set()

    def _decode_packet(
        self, packet: VideoPacket | None, decoded: int
    ) -> list[tuple[float | None, ImageMaker]]:
        session = self._session
        if session is None:  # the CPU fallback
            return super()._decode_packet(packet, decoded)
        if packet is not None:
            if not packet.size:  # FFmpeg's flush packet: NVDEC is drained by None below
                return []
            if packet.is_discard and packet.pts is not None:
                self._discarded.add(packet.pts)
        assert self._stream is not None
        time_base = self._stream.time_base or Fraction(1, 1)
        pictures: list[tuple[float | None, ImageMaker]] = []
        for picture in self._decode(session, packet, decoded):
            if picture.pts in self._discarded:
                self._discarded.discard(picture.pts)
                continue
            pts_s = None if picture.pts is None else float(picture.pts * time_base)
            pictures.append((pts_s, picture.take))
        return pictures

    def _decode(
        self, session: DecoderSession, packet: VideoPacket | None, decoded: int
    ) -> list[DecodedPicture]:
        """``packet`` through the session (None: the end of the stream)."""
        try:
            return session.decode(packet) if packet is not None else session.flush()
        except SourceError:
            raise
        except Exception as exc:  # the library's own errors: CUDA, an unsupported stream
            raise SourceError(
                f"the hardware decoder failed after {decoded} frames: {exc}", source=self.name
            ) from exc
