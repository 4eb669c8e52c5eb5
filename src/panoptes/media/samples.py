"""Sample clips made from scikit-image's public-domain photos, for demos and tests without footage.

A window pans (and slowly zooms) over each photo, so that a real person (``astronaut``), a real
cat (``chelsea``) and real cups (``coffee``) move through real, encoded video.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import av.error
import av.video.stream
import cv2
import numpy as np

__all__ = ["SAMPLE_PHOTOS", "default_sample_sources", "make_sample_clips"]

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee")

#: Tried in order; the first encoder present in PyAV's FFmpeg build is used.
H264_ENCODERS = ("libx264", "libopenh264", "h264_videotoolbox")
FALLBACK_ENCODER = "mpeg4"


def make_sample_clips(
    folder: Path,
    *,
    seconds: float = 10,
    fps: int = 15,
    size_wh: tuple[int, int] = (640, 360),
) -> list[Path]:
    """Write ``astronaut.mp4``, ``chelsea.mp4`` and ``coffee.mp4`` into ``folder``.

    Each clip is H.264 (MPEG-4 Part 2 if PyAV's FFmpeg has no H.264 encoder) in an MP4 with its
    index at the start, ``round(seconds * fps)`` frames of ``size_wh`` (width, height; both even)
    pixels. A clip that already exists is kept as it is, whatever its parameters.

    Returns:
        The paths of the three clips, in the order of :data:`SAMPLE_PHOTOS`.

    Raises:
        ImportError: scikit-image, which holds the photos, is not installed.
    """
    width, height = size_wh
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"size_wh must be two positive even numbers, not {size_wh}")
    frame_count = round(seconds * fps)
    if frame_count < 1:
        raise ValueError(f"seconds * fps must give at least one frame, not {seconds} * {fps}")
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for photo_name in SAMPLE_PHOTOS:
        path = folder / f"{photo_name}.mp4"
        if not path.exists():
            photo_bgr = cv2.cvtColor(_load_photo(photo_name), cv2.COLOR_RGB2BGR)
            # Written beside and renamed at the end, so an interrupted run leaves no half clip
            # that a later run would take for a finished one.
            partial_path = path.with_name(path.name + ".partial")
            _encode_pan(photo_bgr, partial_path, frame_count=frame_count, fps=fps, size_wh=size_wh)
            partial_path.replace(path)
        clips.append(path)
    return clips


def default_sample_sources(shared_videos: Path | None, cache: Path) -> list[Path]:
    """The ``.mp4`` files of ``shared_videos`` if that folder has any, else the clips of
    :func:`make_sample_clips` made in ``cache``."""
    if shared_videos is not None and shared_videos.is_dir():
        clips = sorted(shared_videos.glob("*.mp4"))
        if clips:
            return clips
    return make_sample_clips(cache)


def _load_photo(photo_name: str) -> np.ndarray:
    """The photo as an (H, W, 3) uint8 RGB array."""
    try:
        import skimage.data
    except ImportError as exc:
        raise ImportError(
            "the sample clips are made from scikit-image's photos: pip install panoptes[samples]"
        ) from exc
    photo: np.ndarray = getattr(skimage.data, photo_name)()
    if photo.ndim == 2:
        photo = np.stack([photo] * 3, axis=-1)
    return photo[..., :3].astype(np.uint8)


def _pick_encoder() -> str:
    for codec_name in H264_ENCODERS:
        try:
            av.Codec(codec_name, "w")
        except (av.error.FFmpegError, ValueError):
            continue
        return codec_name
    return FALLBACK_ENCODER


def pan_window(
    photo_size_wh: tuple[int, int], size_wh: tuple[int, int], progress: float
) -> tuple[float, float, float]:
    """The crop window at ``progress`` (0 to 1 over the clip): (x0, y0, width) in photo pixels.

    The window has the aspect of ``size_wh``, starts at 95% of the largest window that fits and
    zooms in to 80%; it sweeps right and back, and halfway down and back, on eased paths, so
    that the subject stays in view.
    """
    photo_width, photo_height = photo_size_wh
    aspect = size_wh[0] / size_wh[1]
    largest_width = min(photo_width, photo_height * aspect)
    window_width = largest_width * (0.95 - 0.15 * progress)
    window_height = window_width / aspect
    sweep_x = 0.5 - 0.5 * math.cos(2.0 * math.pi * progress)
    sweep_y = 0.25 - 0.25 * math.cos(2.0 * math.pi * progress)
    x0 = (photo_width - window_width) * sweep_x
    y0 = (photo_height - window_height) * sweep_y
    return x0, y0, window_width


def _encode_pan(
    photo_bgr: np.ndarray,
    path: Path,
    *,
    frame_count: int,
    fps: int,
    size_wh: tuple[int, int],
) -> None:
    codec_name = _pick_encoder()
    photo_size_wh = (photo_bgr.shape[1], photo_bgr.shape[0])
    # faststart puts the index before the data: the clip plays while it downloads over HTTP.
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(codec_name, rate=fps)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height = size_wh
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = fps
        if codec_name == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        else:
            stream.codec_context.bit_rate = 2_000_000
        for frame_index in range(frame_count):
            progress = frame_index / max(frame_count - 1, 1)
            x0, y0, window_width = pan_window(photo_size_wh, size_wh, progress)
            scale = size_wh[0] / window_width
            warp = np.array([[scale, 0.0, -scale * x0], [0.0, scale, -scale * y0]])
            image = cv2.warpAffine(
                photo_bgr, warp, size_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
            frame = av.VideoFrame.from_ndarray(np.asarray(image, dtype=np.uint8), format="bgr24")
            frame.pts = frame_index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
