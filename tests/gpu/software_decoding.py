"""A software stand-in for NVDEC: FFmpeg decodes, on the CPU, exactly the bytes the NVDEC session
would submit (the stream made Annex B, no container header), and each picture comes as an NV12
tensor on torch's CPU device, as NVDEC's come on the GPU. A real decoder standing in for the
hardware one, so that everything around it (the reader, the mux on tensors, memory negotiation,
the converters) runs here as it does on a GPU, with torch's CPU device for ``cuda:N``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import av
import av.video.stream
import numpy as np
import torch

from panoptes.media._nvdec import AnnexB, DecodedPicture, DecoderSession

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
ONE_BY_ONE = VIDEOS / "one-by-one-person-detection.mp4"  # H.264 768x432, 10 fps
PARKING = VIDEOS / "person-bicycle-car-detection.mp4"  # H.264 768x432, B-frames, an edit list
RETAIL = VIDEOS / "Retail02_short.mp4"  # HEVC 1920x1080, 30 fps


class SoftwareNv12Session:
    """Decodes what NVDEC would be given; pictures as NV12 tensors [H * 3 / 2, W], with the pts
    of their packets, those of packets an edit list cuts included (as NVDEC gives them)."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self._annexb = AnnexB(stream)
        self._decoder = av.CodecContext.create(stream.codec_context.name, "r")
        self.closed = False
        self.restarts = 0

    def decode(self, packet: av.Packet) -> list[DecodedPicture]:
        return self._run(self._annexb.convert(packet))

    def flush(self) -> list[DecodedPicture]:
        pictures = self._run(self._annexb.convert(None))
        return pictures + [self._picture(frame) for frame in self._decoder.decode(None)]

    def restart(self, stream: av.video.stream.VideoStream) -> bool:
        self._decoder.flush_buffers()
        self._annexb = AnnexB(stream)
        self.restarts += 1
        return True

    def close(self) -> None:
        self.closed = True

    def _run(self, units: list[tuple[Any, int | None]]) -> list[DecodedPicture]:
        pictures = []
        for data, pts in units:
            packet = av.Packet(bytes(data))
            packet.pts = pts
            pictures += [self._picture(frame) for frame in self._decoder.decode(packet)]
        return pictures

    @staticmethod
    def _picture(frame: av.VideoFrame) -> DecodedPicture:
        return DecodedPicture(frame.pts, functools.partial(nv12_tensor, frame))


def nv12_tensor(frame: av.VideoFrame) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame.to_ndarray(format="nv12")))


class SoftwareNv12Backend:
    """The backend ``panoptes.media._nvdec.BACKEND`` is replaced with; ``fail`` makes every
    decoder fail to start, as a GPU without NVDEC would."""

    def __init__(self, *, fail: str | None = None) -> None:
        self.fail = fail
        self.sessions: list[SoftwareNv12Session] = []

    def unavailable_reason(self, gpu_id: int) -> str | None:
        return None

    def device(self, gpu_id: int) -> str:
        return "cpu"

    def open(self, stream: av.video.stream.VideoStream, gpu_id: int) -> DecoderSession:
        if self.fail is not None:
            raise RuntimeError(self.fail)
        session = SoftwareNv12Session(stream)
        self.sessions.append(session)
        return session


def i420_to_nv12(i420: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """OpenCV's I420 (Y, then U, then V planes) repacked as NV12 (Y, then U and V interleaved)."""
    width, height = size_wh
    u = i420[height : height + height // 4].reshape(height // 2, width // 2)
    v = i420[height + height // 4 :].reshape(height // 2, width // 2)
    uv = np.stack([u, v], axis=-1).reshape(height // 2, width)
    return np.concatenate([i420[:height], uv], axis=0)


def clip_frames(path: Path, indices: list[int]) -> list[av.VideoFrame]:
    """The decoded frames of ``path`` at ``indices``."""
    wanted, frames = set(indices), []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames.append(frame)
            if len(frames) == len(wanted):
                break
    return frames


def remux(source: Path, destination: Path, container_format: str, packets: int) -> Path:
    """The first ``packets`` video packets of ``source`` in a new container, not re-encoded."""
    with av.open(str(source)) as input_container:
        input_stream = input_container.streams.video[0]
        with av.open(str(destination), "w", format=container_format) as output_container:
            output_stream = output_container.add_stream_from_template(input_stream)
            for copied, packet in enumerate(input_container.demux(input_stream)):
                if packet.dts is None or copied == packets:
                    break
                packet.stream = output_stream
                output_container.mux(packet)
    return destination


def encode(source: Path, destination: Path, codec: str, frames: int) -> Path:
    """The first ``frames`` frames of ``source`` encoded again with ``codec``."""
    with av.open(str(source)) as input_container, av.open(str(destination), "w") as output:
        stream = output.add_stream(codec, rate=10)
        for index, frame in enumerate(input_container.decode(video=0)):
            if index == frames:
                break
            if index == 0:
                stream.width, stream.height = frame.width, frame.height
                stream.pix_fmt = "yuv420p"
            picture = av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), "bgr24")
            picture.pts = index
            output.mux(stream.encode(picture.reformat(format="yuv420p")))
        output.mux(stream.encode(None))
    return destination
