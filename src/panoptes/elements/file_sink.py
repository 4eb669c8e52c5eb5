"""``file``: encodes frames into H.264 (or H.265) video files with PyAV (or NVENC, ``encoder``):
one tiled file, or one file per stream."""

from __future__ import annotations

import contextlib
import re
import string
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from panoptes.core.bus import Message, MessageType
from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import TILED_SOURCE_ID, Batch, Frame, image_size_wh
from panoptes.core.negotiation import BGR_OR_CUDA, CPU_ONLY

if TYPE_CHECKING:
    # Imported when a file sink is built: the schema imports this module for its properties,
    # and a config without video output need not load FFmpeg and OpenCV.
    from panoptes.media._nvenc import NvencWriter
    from panoptes.media.writer import VideoWriter

#: Frame rate of a file when neither the properties nor the stream give one.
DEFAULT_FPS = 30.0
HOLD_FRAMES = 15
"""First frames held while their rate is unknown; then the file opens at ``DEFAULT_FPS``."""

PLACEHOLDERS = ("source_id", "name")
"""What a per-stream path may name: ``{source_id}`` and ``{name}`` (the stream's name, made
safe for a file name)."""


class FileSinkProperties(ElementProperties):
    type: Literal["file"] = Field("file", description="Element kind.")
    name: str | None = Field(None, description="Element name.")
    path: str = Field(
        description="Output file (.mp4, .mov or .mkv), relative to the config's folder. Tiled "
        "output goes to this path; one file per stream when there is no tiler: the path may name "
        "{source_id} or {name}, else the stream's id is added (out/video_0.mp4). An .mkv file "
        "plays up to where a killed process stopped; .mp4 and .mov need a clean stop (end of "
        "stream, Ctrl-C, SIGTERM), which moves their index to the front for streaming."
    )
    codec: Literal["h264", "h265"] = Field("h264", description="Video codec (libx264/libx265).")
    crf: int | None = Field(
        23, ge=0, le=51, description="Constant quality (lower = better); unused with bitrate."
    )
    bitrate_kbps: int | None = Field(
        None, gt=0, description="Target bitrate in kbit/s; when set, replaces crf."
    )
    preset: str = Field("veryfast", description="Encoder speed preset (ultrafast ... veryslow).")
    fps: float | None = Field(
        None, gt=0, description="Frame rate of the file; default the stream's own (30 if unknown)."
    )
    encoder: Literal["cpu", "auto", "nvenc"] = Field(
        "cpu",
        description="cpu: libx264/libx265; nvenc: the GPU's hardware encoder (PyNvVideoCodec and "
        "a CUDA build of torch; frames on the GPU stay there), the CPU with a warning where it "
        "cannot; auto: NVENC where there is one, else quietly the CPU. With NVENC, crf is a "
        "constant quantiser and preset maps to P1 (ultrafast) ... P7.",
    )
    gpu_id: int = Field(0, ge=0, description="The GPU whose NVENC encodes (encoder auto or nvenc).")


class FileSink(Element):
    """Writes the frames it gets into video files: the tiler's frames into one file at ``path``,
    other frames into one file per stream.

    A stream's file opens with its first frame, whose size it keeps (later frames of another
    size are resized), and is finished when the stream ends or is removed, or at end of
    stream; Ctrl-C and SIGTERM end the stream too, so the files always play. A file that
    cannot be written (disk full) is reported on the bus and closed; the others go on.
    """

    kind = "file"
    Properties = FileSinkProperties
    is_sink = True
    takes_video = True

    props: FileSinkProperties

    def input_memory(self) -> frozenset[str]:
        """NVENC takes frames on the GPU as they are; libx264 takes numpy arrays."""
        return BGR_OR_CUDA if getattr(self, "_nvenc", False) else CPU_ONLY

    def build(self) -> None:
        self.paths: list[Path] = []
        """Files opened so far, in order."""
        self.written: dict[Path, int] = {}
        """Frames written into each file."""
        self._writers: dict[int, VideoWriter | NvencWriter] = {}
        self._held: dict[int, list[Frame]] = {}
        """Per output, first frames whose rate is not known yet (a tiler waiting for every
        stream's first frame), written once a frame brings the rate."""
        self._failed: set[int] = set()
        """Streams whose file failed: their frames are no longer written."""

        from panoptes.media.writer import CONTAINER_FORMATS, ENCODERS, PRESETS, encoder_available

        place = self.context.place
        template = self.props.path
        if Path(template).suffix.lower() not in CONTAINER_FORMATS:
            allowed = ", ".join(CONTAINER_FORMATS)
            raise ConfigError(
                f"{template!r} is not a video file name; end it with {allowed}", f"{place}.path"
            )
        self._placeholders = _placeholders(template, f"{place}.path")
        encoder = ENCODERS[self.props.codec]
        if not encoder_available(self.props.codec):
            raise ConfigError(
                f"this FFmpeg build has no {encoder} encoder; try the other codec",
                f"{place}.codec",
            )
        if self.props.preset not in PRESETS:
            raise ConfigError(
                f"unknown preset {self.props.preset!r}; known: {', '.join(PRESETS)}",
                f"{place}.preset",
            )
        if not self._placeholders and self._resolve(template).is_dir():
            raise ConfigError(f"{self._resolve(template)} is a folder", f"{place}.path")
        _check_folder(self._resolve(_fixed_folder(template)), f"{place}.path")
        self._nvenc, self._fallback_reason = False, None
        if self.props.encoder != "cpu":
            from panoptes.media._nvenc import choose_nvenc

            props = self.props
            self._nvenc, self._fallback_reason = choose_nvenc(
                props.encoder, props.gpu_id, props.codec
            )

    def _resolve(self, path: str | Path) -> Path:
        path = Path(path)
        return path if path.is_absolute() else self.context.base_dir / path

    def process(self, batch: Batch) -> None:
        if self._fallback_reason is not None:
            # Said with the first frames rather than at build, where nobody listens yet.
            from panoptes.media._nvenc import say_fallback

            say_fallback(self, self.props.encoder, self._fallback_reason)
            self._fallback_reason = None
        for frame in batch.frames:
            if frame.source_id in self._failed:
                continue
            writer = self._writers.get(frame.source_id)
            try:
                if writer is None:
                    held = self._held.setdefault(frame.source_id, [])
                    if not (self.props.fps or frame.fps) and len(held) < HOLD_FRAMES:
                        held.append(frame)
                        continue
                    writer = self._open(frame)
                writer.write(_pixels(writer, frame))
            except Exception as error:
                self._fail(batch, frame, writer, error)
                continue
            self.written[writer.path] = writer.frames_written
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                self._finish(event.source_id)
        return None

    def drain(self) -> list[Batch]:
        self._finish_all()
        return []

    def close(self) -> None:
        self._finish_all()

    def _open(self, frame: Frame) -> VideoWriter | NvencWriter:
        """The writer for ``frame``'s output, at ``frame``'s rate; the frames held before it are
        written first, the first of them setting the size."""
        from panoptes.media.writer import VideoWriter

        held = self._held.pop(frame.source_id, [])
        first = held[0] if held else frame
        path = self._path_for(first)
        path.parent.mkdir(parents=True, exist_ok=True)
        size_wh = image_size_wh(first.image)
        fps = self.props.fps or frame.fps or DEFAULT_FPS
        writer: VideoWriter | NvencWriter | None = None
        if self._nvenc:
            writer = self._open_nvenc(path, size_wh, fps, first)
        if writer is None:
            writer = VideoWriter(path, size_wh, fps, **self._encoding())
        self._writers[frame.source_id] = writer
        self.paths.append(path)
        self.written[path] = 0
        for early in held:
            writer.write(_pixels(writer, early))
        return writer

    def _encoding(self) -> dict[str, Any]:
        """The encoding settings both writers take."""
        props = self.props
        return {
            "codec": props.codec,
            "crf": props.crf,
            "bitrate_kbps": props.bitrate_kbps,
            "preset": props.preset,
        }

    def _open_nvenc(
        self, path: Path, size_wh: tuple[int, int], fps: float, frame: Frame
    ) -> NvencWriter | None:
        """An NVENC writer, or None when its encoder does not start (too many sessions on the
        GPU, a size NVENC does not take): that file is encoded on the CPU, said on the bus."""
        from panoptes.media._nvenc import NvencWriter, nvenc_error_text, say_fallback

        try:
            return NvencWriter(path, size_wh, fps, gpu_id=self.props.gpu_id, **self._encoding())
        except Exception as error:
            error_text = nvenc_error_text(error)
            reason = f"the hardware encoder did not start for {path.name} ({error_text})"
            say_fallback(self, self.props.encoder, reason, source_id=frame.source_id)
            return None

    def _path_for(self, frame: Frame) -> Path:
        """The file for ``frame``'s stream: the path with its placeholders filled, or with
        ``_<source_id>`` added; a stream whose path is taken (two streams of one name, or one
        added again) gets ``_<source_id>`` too."""
        tiled = frame.source_id == TILED_SOURCE_ID
        source_id = "tiled" if tiled else str(frame.source_id)
        name = file_name_part(frame.source_name) or source_id
        # Formatted before the config's folder is joined, whose name may hold braces.
        path = self._resolve(self.props.path.format(source_id=source_id, name=name))
        if not self._placeholders and not tiled:
            path = path.with_stem(f"{path.stem}_{source_id}")
        if path in self.written:
            path = path.with_stem(f"{path.stem}_{source_id}")
        return path

    def _fail(
        self, batch: Batch, frame: Frame, writer: VideoWriter | NvencWriter | None, error: Exception
    ) -> None:
        self.report_failure(batch, error)
        self._failed.add(frame.source_id)
        self._writers.pop(frame.source_id, None)
        if writer is not None:
            # The write error is reported; closing may fail the same way, and the file keeps
            # what the disk took.
            with contextlib.suppress(Exception):
                writer.close()
            self.written[writer.path] = writer.frames_written
        what = f"{writer.path} is closed" if writer is not None else "no file was opened"
        self.bus.warning(
            self.name,
            f"{frame.source_name}: {what} and its frames are no longer written",
            source_id=frame.source_id,
        )

    def _finish(self, source_id: int) -> None:
        held = self._held.get(source_id)
        if held and source_id not in self._writers:
            last = held.pop()
            try:
                opened = self._open(last)
                opened.write(_pixels(opened, last))
            except Exception as error:
                self.failures += 1
                self.bus.error(self.name, f"cannot write {last.source_name}: {error!r}")
        writer = self._writers.pop(source_id, None)
        if writer is None:
            return
        self.written[writer.path] = writer.frames_written
        try:
            writer.close()
        except Exception as error:
            self.failures += 1
            self.bus.error(self.name, f"cannot finish {writer.path}: {error!r}", exception=error)
            return
        # Once per file, for applications that pick finished files up (an upload, an index).
        self.bus.post(
            Message(
                MessageType.INFO,
                self.name,
                f"wrote {writer.path} ({writer.frames_written} frames)",
                {"path": str(writer.path), "frames": writer.frames_written, "source_id": source_id},
            )
        )

    def _finish_all(self) -> None:
        outputs = {*getattr(self, "_writers", ()), *getattr(self, "_held", ())}
        for source_id in sorted(outputs):
            self._finish(source_id)


def _pixels(writer: VideoWriter | NvencWriter, frame: Frame) -> Any:
    """``frame``'s pixels as ``writer`` takes them: as they are for NVENC, numpy BGR for the CPU
    encoders (a frame on the GPU is downloaded, when one NVENC could not take falls back)."""
    from panoptes.media.writer import VideoWriter

    return frame.image_bgr() if isinstance(writer, VideoWriter) else frame.image


def file_name_part(name: str) -> str:
    """A stream's name made safe for a file name: a URI or a path gives its last part without
    the extension (``rtsp://cam/live`` → ``live``, ``videos/gate.mp4`` → ``gate``); characters
    other than letters, digits, ``.``, ``-`` and ``_`` become ``_``. Empty when nothing is left."""
    text = name
    if "://" in text:
        parts = urlsplit(text)
        text = PurePosixPath(parts.path).stem or parts.hostname or ""
    elif "/" in text or "\\" in text:
        text = PurePosixPath(text.replace("\\", "/")).stem
    return re.sub(r"[^\w.-]+", "_", text).strip("._")[:100]


def _placeholders(template: str, place: str) -> set[str]:
    """The placeholders ``template`` names; ConfigError for any other, or a malformed one."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ConfigError(f"{template!r}: {error} (write a brace as {{{{ or }}}})", place) from None
    found: set[str] = set()
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            raise ConfigError(
                f"{template!r}: unknown placeholder {{{field}}}; the path may name "
                + " and ".join(f"{{{name}}}" for name in PLACEHOLDERS),
                place,
            )
        found.add(field)
    return found


def _fixed_folder(template: str) -> Path:
    """The deepest folder of ``template`` that names no placeholder."""
    folder = Path(template).parent
    while "{" in folder.as_posix():
        folder = folder.parent
    return folder


def _check_folder(folder: Path, place: str) -> None:
    """Create ``folder`` if needed and check that files can be made in it, without leaving one."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"cannot write files into {folder}: {reason}", place) from error
