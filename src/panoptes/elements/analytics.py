"""``analytics``: zones, counting lines, overcrowding and directions on tracked objects, as
DeepStream's nvdsanalytics.

Counts and states go into ``frame.meta.analytics`` by rule name, events (entered, exited,
crossed, overcrowded, overcrowding-ended, direction) into ``frame.meta.events``, and what each
object was found doing into its ``user_meta["analytics"]``. With ``draw`` on, the zones, lines
and counts are added to the frame's display metadata for the osd.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from panoptes.analytics.rules import StreamRules
from panoptes.core.element import Element, ElementProperties
from panoptes.core.errors import ConfigError
from panoptes.core.frame import Batch, Frame
from panoptes.core.negotiation import ANY_MEMORY

if TYPE_CHECKING:
    from panoptes.analytics.drawing import RulesDrawing
    from panoptes.analytics.stream import StreamAnalytics
    from panoptes.tracking import FinishedTrack


class AnalyticsProperties(ElementProperties):
    """The analytics rules, written here (``streams``) or in a DeepStream
    ``config_nvdsanalytics.txt`` (``config_file``)."""

    name: str | None = Field(None, description="Element name.")
    config_file: str | None = Field(
        None,
        description="A DeepStream nvdsanalytics configuration (config_nvdsanalytics.txt, INI or "
        "YAML), relative to the config's folder, read instead of streams, config_width and "
        "config_height; what it holds that is not honoured is reported when the pipeline is "
        "built.",
    )
    config_width: int | None = Field(
        None,
        gt=0,
        description="Width of the frames the rules' coordinates were drawn on; they are scaled "
        "to each stream's size (DeepStream's config-width). None: coordinates are pixels of "
        "the streams' own frames.",
    )
    config_height: int | None = Field(
        None, gt=0, description="Height to go with config_width (DeepStream's config-height)."
    )
    streams: list[StreamRules] = Field(
        default_factory=list,
        description="Rules per stream (source: a source_id or stream name) or for every stream "
        "(source: '*').",
    )
    draw: bool = Field(
        True,
        description="Add the zones, lines and directions to each frame's display metadata, for "
        "the osd to draw.",
    )
    draw_counts: bool = Field(
        True,
        description="With draw: write each rule's counts beside its name (DeepStream's "
        "osd-mode 2; off is osd-mode 1).",
    )
    font_scale: float | None = Field(
        None, gt=0, description="Size of the drawn text; None: the osd's font_scale."
    )
    track_timeout_s: float = Field(
        8.0,
        gt=0,
        description="Seconds of stream time after which a track not seen, and not ended by a "
        "tracker, is forgotten (and leaves its zones).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AnalyticsProperties:
        if (self.config_width is None) != (self.config_height is None):
            missing = "config_height" if self.config_height is None else "config_width"
            raise ValueError(f"{missing}: give both config_width and config_height, or neither")
        if self.config_file is not None and (self.streams or self.config_width is not None):
            raise ValueError(
                "config_file: the rules come from the file; leave out streams, config_width "
                "and config_height"
            )
        for index, entry in enumerate(self.streams):
            for earlier_index, earlier in enumerate(self.streams[:index]):
                if not _may_share_a_stream(entry, earlier):
                    continue
                earlier_names = {name for _, name in earlier.named_rules()}
                for place, name in entry.named_rules():
                    if name in earlier_names:
                        raise ValueError(
                            f"streams[{index}].{place}: {name!r} is already the name of a rule "
                            f"of streams[{earlier_index}], which applies to the same stream"
                        )
        return self


def _may_share_a_stream(first: StreamRules, second: StreamRules) -> bool:
    return "*" in (first.source, second.source) or first.source == second.source


class Analytics(Element):
    """One :class:`~panoptes.analytics.StreamAnalytics` per stream, made on its first frame
    from the rules that apply to it and freed when it ends or is removed.

    Tracks the tracker ended (``batch.terminated_tracks``) are forgotten, leaving the zones they
    were in (an ``exited`` event with ``reason``), on the frame they ended on.
    """

    kind = "analytics"
    Properties = AnalyticsProperties
    memory = ANY_MEMORY  # boxes and tracks only: frames may stay on the GPU

    props: AnalyticsProperties

    def build(self) -> None:
        props = self.props
        self.rules = props
        """The properties the rules come from: these, or those read from ``config_file``."""
        if props.config_file is not None:
            self.rules = self._read_config_file(props.config_file)
        self._config_wh: tuple[int, int] | None = None
        if self.rules.config_width is not None and self.rules.config_height is not None:
            self._config_wh = (self.rules.config_width, self.rules.config_height)
        self._draw = props.draw and self.rules.draw
        self._draw_counts = props.draw_counts and self.rules.draw_counts
        self._font_scale = props.font_scale or self.rules.font_scale
        self._streams: dict[int, StreamAnalytics | None] = {}
        self._drawings: dict[int, RulesDrawing] = {}

    def _read_config_file(self, config_file: str) -> AnalyticsProperties:
        from panoptes.config.deepstream.nvdsanalytics import read_nvdsanalytics_config

        path = Path(config_file)
        if not path.is_absolute():
            path = self.context.base_dir / path
        if not path.is_file():
            raise ConfigError(f"no such file: {path}", f"{self.context.place}.config_file")
        notes: list[Any] = []
        rules = read_nvdsanalytics_config(path, notes=notes)
        for note in notes:
            self.bus.warning(self.name, str(note))
        return rules

    def process(self, batch: Batch) -> Batch:
        ended = self._ended_by_frame(batch)
        for frame in batch.frames:
            stream = self._stream(frame)
            if stream is None:
                continue
            time_s = frame.pts_s if frame.pts_s is not None else frame.capture_time_s
            events = []
            for track in ended.pop(id(frame), []):
                events += stream.end_track(track.track_id, frame.frame_num)
            analytics, found = stream.analyze(
                frame.objects, frame_num=frame.frame_num, time_s=time_s, size_wh=frame.size_wh
            )
            frame.meta.analytics.update(analytics)
            frame.meta.events.extend(events + found)
            if self._draw and stream.rules is not None:
                self._drawing(stream).draw(
                    frame.meta.display_meta,
                    analytics,
                    counts=self._draw_counts,
                    font_scale=self._font_scale,
                )
        for event in batch.events:
            if event.kind in ("ended", "removed"):
                self._streams.pop(event.source_id, None)
                self._drawings.pop(event.source_id, None)
        return batch

    def _drawing(self, stream: StreamAnalytics) -> RulesDrawing:
        """The stream's drawing, made again when its rules were scaled anew."""
        drawing = self._drawings.get(stream.source_id)
        if drawing is None or drawing.rules is not stream.rules:
            from panoptes.analytics.drawing import RulesDrawing

            assert stream.rules is not None
            drawing = self._drawings[stream.source_id] = RulesDrawing(stream.rules)
        return drawing

    def _ended_by_frame(self, batch: Batch) -> dict[int, list[FinishedTrack]]:
        """The batch's ended tracks by the frame (its ``id``) they are reported on: the frame
        they ended on, else their stream's last frame in the batch; tracks of streams with no
        frame here are forgotten with their stream."""
        if not batch.terminated_tracks:
            return {}
        frames: dict[int, list[Frame]] = defaultdict(list)
        for frame in batch.frames:
            frames[frame.source_id].append(frame)
        ended: dict[int, list[FinishedTrack]] = defaultdict(list)
        for track in batch.terminated_tracks:
            if track.source_id is None:
                continue
            candidates = frames.get(track.source_id)
            if not candidates:
                stream = self._streams.get(track.source_id)
                if stream is not None:
                    stream.end_track(track.track_id, track.end_frame)
                continue
            frame = next((f for f in candidates if f.frame_num == track.end_frame), candidates[-1])
            ended[id(frame)].append(track)
        return ended

    def _stream(self, frame: Frame) -> StreamAnalytics | None:
        source_id = frame.source_id
        if source_id in self._streams:
            return self._streams[source_id]
        from panoptes.analytics.stream import StreamAnalytics

        entries: list[StreamRules] = []
        taken: dict[str, int] = {}
        for index, entry in enumerate(self.rules.streams):
            if not entry.applies_to(source_id, frame.source_name):
                continue
            names = {name for _, name in entry.named_rules()}
            clash = sorted(names & set(taken))
            if clash:
                # Entries naming the stream once by id and once by name: the schema cannot
                # see that they meet, so it is said here, once per stream.
                self.bus.error(
                    self.name,
                    f"{self.context.place}.streams[{index}]: rule names {', '.join(clash)} are "
                    f"also in streams[{taken[clash[0]]}] for stream {frame.source_name!r} "
                    f"(source_id {source_id}); these rules of streams[{index}] are not used "
                    "there",
                )
                continue
            taken.update(dict.fromkeys(names, index))
            entries.append(entry)
        stream = None
        if entries:
            stream = StreamAnalytics(
                source_id,
                entries,
                config_wh=self._config_wh,
                track_timeout_s=self.props.track_timeout_s,
            )
        self._streams[source_id] = stream
        return stream

    def close(self) -> None:
        self._streams = {}
        self._drawings = {}
