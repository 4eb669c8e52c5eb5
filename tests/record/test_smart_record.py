"""Smart recording: clips cut from the real clips' compressed packets, played back and compared
with the source, from the recorder up to ``panoptes run``."""

from __future__ import annotations

import json
import shutil
import textwrap
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from cli_tools import ffprobe, panoptes
from panoptes import Pipeline
from panoptes.core.bus import Bus, MessageType
from panoptes.core.element import BuildContext
from panoptes.core.frame import Batch, Frame
from panoptes.elements.record import RecordElement, RecordProperties
from panoptes.media.reader import open_reader
from panoptes.media.recorder import Recorder, RecordError, Recording

VIDEOS = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "videos"
PARKING = VIDEOS / "person-bicycle-car-detection.mp4"  # H.264, 12 fps, a key frame every 5 s
RETAIL = VIDEOS / "Retail02_short.mp4"  # HEVC 1080p, 30 fps, key frames at 0, 8.33, 16.67 s
ONE_BY_ONE = VIDEOS / "one-by-one-person-detection.mp4"  # H.264 with B-frames, 10 fps, GOP 1 s


@pytest.fixture(autouse=True)
def _clips_present() -> None:
    if not PARKING.is_file():
        pytest.fail(f"the shared clips are missing: expected them in {VIDEOS}")


# -- reading sources and clips --------------------------------------------------------------------


def packets_of(path: Path) -> list[tuple[float | None, bytes, bool]]:
    """(pts_s, bytes, is_keyframe) of each video packet, in decode order. Matroska stores no
    time for HEVC's leading pictures that show before their key frame (pts_s None)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (
                None if packet.pts is None else float(packet.pts * packet.time_base),
                bytes(packet),
                packet.is_keyframe,
            )
            for packet in container.demux(stream)
            if packet.size
        ]


def frames_of(path: Path) -> list[tuple[float, np.ndarray]]:
    """(time_s, BGR image) of each decoded frame."""
    with av.open(str(path)) as container:
        return [
            (float(frame.time or 0.0), frame.to_ndarray(format="bgr24"))
            for frame in container.decode(video=0)
        ]


def source_frame_at(path: Path, pts_s: float) -> np.ndarray:
    """The source's decoded frame at ``pts_s`` (a key frame's time)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        container.seek(round(pts_s / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.time is not None and abs(frame.time - pts_s) < 1e-3:
                return frame.to_ndarray(format="bgr24")
    raise AssertionError(f"no frame at {pts_s} s in {path}")


def key_frame_at_or_before(path: Path, time_s: float) -> float:
    keys = [s for s, _, key in packets_of(path) if key and s is not None and s <= time_s + 1e-6]
    return keys[-1]


def feed(recorder: Recorder, source_id: int, name: str, path: Path) -> Generator[float, None, None]:
    """Hand the source's packets to a new stream's tap as a reader does (demuxed, before
    decoding), without decoding them; yields each packet's pts_s after handing it over."""
    tap = recorder.add_stream(source_id, name)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                tap(packet, 0.0)
                yield float(packet.pts * packet.time_base) if packet.pts is not None else 0.0


def make_recorder(folder: Path, **kwargs: Any) -> tuple[Recorder, list[Recording], list[str]]:
    finished: list[Recording] = []
    warnings: list[str] = []
    recorder = Recorder(
        folder,
        on_finished=finished.append,
        on_warning=lambda _id, name, text: warnings.append(f"{name}: {text}"),
        **kwargs,
    )
    return recorder, finished, warnings


def assert_copied(clip: Path, source: Path, start_s: float, codec: str) -> list[float]:
    """The clip plays, has the source's codec, and its packets are the source's own from the
    key frame at ``start_s`` on; returns the clip's frame times."""
    probed = ffprobe(clip)
    assert probed["codec_name"] == codec
    clip_packets = packets_of(clip)
    source_packets = packets_of(source)
    first = next(
        i
        for i, (pts_s, _, key) in enumerate(source_packets)
        if key and pts_s is not None and abs(pts_s - start_s) < 1e-6
    )
    copied = source_packets[first : first + len(clip_packets)]
    assert [data for _, data, _ in clip_packets] == [data for _, data, _ in copied]
    assert clip_packets[0][2]  # it starts at a key frame
    times = [time_s for time_s, _ in frames_of(clip)]
    assert int(probed["nb_read_frames"]) == len(times) > 0
    assert times[0] == pytest.approx(0.0)
    return times


# -- the recorder, fed by a real reader -----------------------------------------------------------


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_a_clip_starts_before_the_event_and_copies_the_packets(
    tmp_path: Path, container: str
) -> None:
    recorder, finished, warnings = make_recorder(tmp_path, container=container)
    reader = open_reader(str(PARKING), name="parking lot")
    reader.set_packet_tap(recorder.add_stream(0, "parking lot"))
    event_s = before_s = after_s = 0.0
    path = None
    for frame in reader.frames():
        if frame.index == 150:  # 12.5 s
            event_s, before_s, after_s = frame.pts_s or 0.0, 3.0, 4.0
            path = recorder.start(0, at_s=event_s, before_s=before_s, after_s=after_s)
        recorder.advance(0, frame.pts_s)
    reader.close()
    recorder.end_stream(0)
    recorder.close()

    assert path is not None and path.suffix == f".{container}"
    assert path.name.startswith("rec_parking_lot_") and path.parent == tmp_path
    assert warnings == [] and [r.path for r in finished] == [path] and finished[0].error is None
    key_s = key_frame_at_or_before(PARKING, event_s - before_s)
    assert key_s == pytest.approx(28 / 3)  # 9.33 s, the key frame before 9.5 s
    assert finished[0].start_s == pytest.approx(key_s)
    times = assert_copied(path, PARKING, key_s, "h264")
    # Its first frame is the source's frame at that key frame, pixel for pixel.
    assert np.array_equal(frames_of(path)[0][1], source_frame_at(PARKING, key_s))
    period_s = 1 / 12
    duration_s = times[-1] + period_s
    assert duration_s == pytest.approx(event_s + after_s - key_s, abs=1.5 * period_s)
    assert finished[0].duration_s == pytest.approx(duration_s, abs=1.5 * period_s)


def test_overlapping_events_extend_one_clip(tmp_path: Path) -> None:
    recorder, finished, _ = make_recorder(tmp_path)
    paths = []
    for pts_s in feed(recorder, 0, "parking", PARKING):
        # Events at 12.5 s and 15 s, each wanting 2 s before and 3 s after, with the
        # consumer (the pipeline) about a second behind the reader.
        consumer_s = pts_s - 1.0
        for event_s in (12.5, 15.0):
            if abs(consumer_s - event_s) < 1e-6:
                paths.append(recorder.start(0, at_s=event_s, before_s=2, after_s=3, reason="x"))
        recorder.advance(0, consumer_s)
    recorder.close()

    assert len(paths) == 2 and paths[0] == paths[1]
    assert len(finished) == 1 and finished[0].reasons == ("x",)
    key_s = key_frame_at_or_before(PARKING, 12.5 - 2)  # 9.33 s
    times = assert_copied(paths[0], PARKING, key_s, "h264")
    assert times[-1] + 1 / 12 == pytest.approx(15.0 + 3 - key_s, abs=0.1)


def test_hevc_is_recorded_without_re_encoding(tmp_path: Path) -> None:
    recorder, finished, warnings = make_recorder(tmp_path, container="mkv")
    path = None
    event_s = 17.0
    for pts_s in feed(recorder, 3, "shop", RETAIL):
        if path is None and pts_s >= event_s:
            path = recorder.start(3, at_s=event_s, before_s=5, after_s=1.5)
        recorder.advance(3, pts_s - 0.5)
    recorder.close()

    assert path is not None and warnings == [] and finished[0].error is None
    key_s = key_frame_at_or_before(RETAIL, 12.0)
    assert key_s == pytest.approx(25 / 3)  # the GOP is 8.33 s long
    times = assert_copied(path, RETAIL, key_s, "hevc")
    # Up to the end, give or take the frames that HEVC's reordering puts past it.
    assert times[-1] + 1 / 30 == pytest.approx(event_s + 1.5 - key_s, abs=0.2)
    assert np.array_equal(frames_of(path)[0][1], source_frame_at(RETAIL, key_s))


def test_a_clip_across_a_loop_of_the_file_keeps_its_timeline(tmp_path: Path) -> None:
    short = tmp_path / "short.mp4"
    with av.open(str(ONE_BY_ONE)) as source, av.open(str(short), "w") as output:
        stream = output.add_stream_from_template(source.streams.video[0])
        for count, packet in enumerate(source.demux(source.streams.video[0])):
            if count == 30:  # 3 s with B-frames
                break
            packet.stream = stream
            output.mux(packet)
    recorder, finished, _ = make_recorder(tmp_path)
    reader = open_reader(str(short), name="short", loop=True)
    reader.set_packet_tap(recorder.add_stream(0, "short"))
    for frame in reader.frames():
        if frame.index == 45:  # 4.5 s, in the second pass
            recorder.start(0, at_s=frame.pts_s, before_s=2, after_s=2)
        recorder.advance(0, frame.pts_s)
        if frame.index == 90:
            break
    reader.close()
    recorder.close()

    (recording,) = finished
    assert recording.start_s == pytest.approx(2.0)  # in the first pass
    times = [time_s for time_s, _ in frames_of(recording.path)]
    ffprobe(recording.path)
    # 2.0 s to 6.5 s of the looping stream: the frames run on across the loop at 3 s.
    assert np.allclose(times[:45], np.arange(45) / 10)


# -- what else the recorder does -----------------------------------------------------------------


def test_the_cache_keeps_whole_gops_of_the_last_cache_s(tmp_path: Path) -> None:
    recorder, finished, _ = make_recorder(tmp_path, cache_s=6)
    for _ in feed(recorder, 0, "parking", PARKING):
        pass
    # Everything older than 6 s plus one GOP (5 s) is gone: asked for 20 s back, the clip starts
    # at the oldest key frame kept.
    path = recorder.start(0, before_s=20, after_s=0)
    assert recorder.stop(0) == path
    recorder.close()
    (recording,) = finished
    last_s = packets_of(PARKING)[-1][0]
    assert last_s is not None
    assert last_s - 6 - 5 <= recording.start_s <= last_s - 6
    assert recording.end_s == pytest.approx(last_s + 1 / 12)


def test_after_s_0_records_until_stop_and_min_interval_s_spaces_clips(tmp_path: Path) -> None:
    recorder, finished, _ = make_recorder(tmp_path, min_interval_s=10, default_duration_s=30)
    packets = feed(recorder, 0, "parking", PARKING)
    for pts_s in packets:
        if pts_s >= 10:
            break
    first = recorder.start(0, before_s=1, after_s=0, reason="rest")
    for pts_s in packets:
        if pts_s >= 14:
            break
    assert recorder.stop(0) == first
    assert recorder.stop(0) is None
    with pytest.raises(RecordError, match="min_interval_s"):
        recorder.start(0, before_s=0, after_s=1)
    for pts_s in packets:
        if pts_s >= 25:
            break
    second = recorder.start(0, before_s=0, after_s=1)
    with pytest.raises(RecordError, match="no stream with source id 7"):
        recorder.start(7, before_s=0, after_s=1)
    packets.close()
    recorder.close()
    assert [r.path for r in finished] == [first, second]
    assert finished[0].start_s == pytest.approx(13 / 3)  # the key frame before 10 - 1 s
    assert finished[0].end_s == pytest.approx(14.0, abs=0.1)
    assert finished[1].start_s >= finished[0].end_s + 10 - 5  # a GOP at most before its event


def test_requests_for_what_was_recorded_or_is_gone(tmp_path: Path) -> None:
    recorder, finished, _ = make_recorder(tmp_path, cache_s=6)
    packets = feed(recorder, 0, "parking", PARKING)
    for pts_s in packets:
        if pts_s >= 20:
            break
    clip = recorder.start(0, at_s=15, before_s=1, after_s=1)
    recorder.advance(0, 17)  # the pipeline is past its end: it is closed
    # An event that the closed clip covers gets its path; none is recorded twice.
    assert recorder.start(0, at_s=15.5, before_s=1, after_s=0.4) == clip
    with pytest.raises(RecordError, match=r"2\.00 s is no longer in the cache"):
        recorder.start(0, at_s=2, before_s=1, after_s=1)
    packets.close()
    recorder.close()
    assert [r.path for r in finished] == [clip]


def test_other_codecs_are_reported_and_not_recorded(tmp_path: Path) -> None:
    mpeg4 = tmp_path / "mpeg4.avi"
    with av.open(str(mpeg4), "w") as output:
        stream = output.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            image = np.full((48, 64, 3), index * 20, np.uint8)
            output.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        output.mux(stream.encode(None))
    recorder, finished, warnings = make_recorder(tmp_path)
    for _ in feed(recorder, 0, "old camera", mpeg4):
        pass
    assert warnings == [
        "old camera: cannot be recorded: its codec is mpeg4: only H.264 and HEVC are "
        "recorded, as they are, without re-encoding"
    ]
    with pytest.raises(RecordError, match="old camera cannot be recorded: its codec is mpeg4"):
        recorder.start(0, before_s=1, after_s=1)
    recorder.close()
    assert finished == []


# -- the element ----------------------------------------------------------------------------------


def test_a_failing_disk_fails_that_clip_only(tmp_path: Path) -> None:
    bus = Bus()
    props = RecordProperties(dir="clips", before_s=1, after_s=1)
    element = RecordElement(props, name="record", context=BuildContext(bus=bus, base_dir=tmp_path))
    element.build()
    folder = tmp_path / "clips"
    packets = feed(element.recorder, 0, "parking", PARKING)
    for pts_s in packets:
        if pts_s >= 8:
            break
    shutil.rmtree(folder)  # the disk is gone
    lost = element.start(0)
    for pts_s in packets:
        if pts_s >= 12:
            break
    element.recorder.flush()  # the clip is over and its writing failed
    folder.mkdir()  # the disk is back
    kept = element.start(0, before_s=0.5, after_s=0.5, reason="operator")
    for _ in packets:
        pass
    element.drain()
    element.close()

    errors = [m for m in bus.history if m.type is MessageType.ERROR]
    infos = [m for m in bus.history if m.type is MessageType.INFO]
    assert [m.data["path"] for m in errors] == [str(lost)]
    assert "No such file or directory" in errors[0].text
    assert [m.data["path"] for m in infos] == [str(kept)] and kept.is_file()
    assert infos[0].data["source_id"] == 0 and infos[0].data["reasons"] == ["operator"]
    assert infos[0].data["start_s"] < infos[0].data["end_s"]
    assert not lost.exists() and element.clips == 1
    ffprobe(kept)


def test_events_of_the_chosen_kinds_get_the_clip_path(tmp_path: Path) -> None:
    from panoptes.core.meta import AnalyticsEvent

    bus = Bus()
    props = RecordProperties(dir=str(tmp_path), event_kinds=["crossed"], before_s=1, after_s=1)
    element = RecordElement(props, name="record", context=BuildContext(bus=bus))
    element.build()
    for pts_s in feed(element.recorder, 0, "parking", PARKING):
        if pts_s >= 13:
            break

    def frame_with(*kinds: str) -> Frame:
        frame = Frame(0, "parking", 120, 10.0, 0.0, (768, 432), np.zeros((1, 1, 3), np.uint8))
        frame.meta.events = [AnalyticsEvent(kind, "door", 0, 120) for kind in kinds]
        return frame

    frame = frame_with("crossed", "entered")
    element.process(Batch([frame]))
    crossed, entered = frame.meta.events
    assert Path(crossed.extra["video_path"]).parent == tmp_path
    assert "video_path" not in entered.extra
    requested = frame_with()
    requested.request_recording(after_s=0.5)
    element.process(Batch([requested]))
    (event,) = requested.meta.events
    assert event.to_dict() == {
        "kind": "recording",
        "rule": "request",
        "video_path": crossed.extra["video_path"],  # the same clip, extended
    }
    element.close()


def test_request_recording_checks_its_arguments() -> None:
    frame = Frame(0, "cam", 0, 0.0, 0.0, (4, 4), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="before_s must be 0 or more"):
        frame.request_recording(before_s=-1)
    frame.request_recording(after_s=3)
    assert frame.meta.recording_request is not None
    assert (frame.meta.recording_request.before_s, frame.meta.recording_request.after_s) == (
        None,
        3,
    )


def test_the_record_section_is_validated() -> None:
    from panoptes.config.loader import parse_config
    from panoptes.core.errors import ConfigError

    config = parse_config(
        {"sources": [{"uri": "a.mp4"}], "record": {"container": "mkv", "before_s": 2}}
    )
    assert config.record is not None and config.record.container == "mkv"
    with pytest.raises(ConfigError, match=r"record.*before_s \(30\) is more than cache_s"):
        parse_config({"sources": [{"uri": "a.mp4"}], "record": {"before_s": 30}})
    with pytest.raises(ConfigError, match="record"):
        parse_config({"sources": [{"uri": "a.mp4"}], "record": {"container": "avi"}})


# -- in a pipeline ---------------------------------------------------------------------------------


def test_a_removed_stream_finishes_its_clip(tmp_path: Path) -> None:
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(ONE_BY_ONE), "name": "hall"}],
            "record": {"dir": str(tmp_path), "before_s": 2, "after_s": 60},
            "perf": {"interval_s": 0},
        }
    )
    passed_80 = threading.Event()

    def request(batch: Batch) -> None:
        for frame in batch:
            if frame.frame_num == 50:  # 5 s
                frame.request_recording()
            if frame.frame_num == 80:
                passed_80.set()

    pipeline.add_probe("mux", request)
    pipeline.start()
    assert passed_80.wait(60)
    pipeline.remove_source(0)
    assert pipeline.wait(60)

    (info,) = [m for m in pipeline.bus.history if m.type is MessageType.INFO]
    path = Path(info.data["path"])
    assert info.origin == "record" and info.data["source"] == "hall"
    assert info.data["start_s"] == pytest.approx(3.0)  # the key frame at 5 - 2 s
    assert 8.0 <= info.data["end_s"] < 60  # cut short where the stream was removed
    times = assert_copied(path, ONE_BY_ONE, 3.0, "h264")
    assert times[-1] == pytest.approx(info.data["end_s"] - 3.0 - 0.1, abs=0.35)


@pytest.mark.parametrize(
    ("source", "codec", "fps"),
    [
        pytest.param(PARKING, "h264", 12, id="h264"),
        pytest.param(RETAIL, "hevc", 30, id="hevc", marks=pytest.mark.slow),  # 1080p decoding
    ],
)
def test_start_from_another_thread_while_running(
    tmp_path: Path, source: Path, codec: str, fps: int
) -> None:
    pipeline = Pipeline(
        {
            "sources": [{"uri": str(source), "name": "cam"}],
            "record": {"dir": str(tmp_path), "before_s": 4, "after_s": 1},
            "perf": {"interval_s": 0},
        }
    )
    passed_100 = threading.Event()
    gate = threading.Event()

    def wait_at_100(batch: Batch) -> None:
        for frame in batch:
            if frame.frame_num == 100:
                passed_100.set()
                gate.wait(30)  # the stream waits here while the start() call comes

    pipeline.add_probe("mux", wait_at_100)
    pipeline.start()
    assert passed_100.wait(60)
    element = pipeline.element("record")
    assert isinstance(element, RecordElement)
    path = element.start(0, reason="rest")
    gate.set()
    assert pipeline.wait(120)

    (info,) = [m for m in pipeline.bus.history if m.type is MessageType.INFO]
    assert info.data["path"] == str(path) and info.data["reasons"] == ["rest"]
    assert_copied(path, source, info.data["start_s"], codec)
    # "Now" is where the reader is, a few frames past frame 100.
    now_s = 100 / fps
    assert info.data["start_s"] <= max(0.0, now_s - 4)
    assert info.data["end_s"] >= now_s + 1


def test_an_unrecordable_source_is_reported(tmp_path: Path) -> None:
    pipeline = Pipeline(
        {
            "sources": [{"type": "test-source", "name": "pattern", "frames": 20}],
            "record": {"dir": str(tmp_path)},
            "perf": {"interval_s": 0},
        }
    )

    def request(batch: Batch) -> None:
        for frame in batch:
            frame.request_recording()

    pipeline.add_probe("mux", request)
    summary = pipeline.run()
    assert summary.ok
    warnings = [m for m in pipeline.bus.history if m.type is MessageType.WARNING]
    assert [(m.origin, m.data) for m in warnings] == [("record", {"source_id": 0})]
    assert "pattern: cannot be recorded: it is not a compressed video stream" in warnings[0].text
    element = pipeline.element("record")
    assert isinstance(element, RecordElement) and element.skipped == 20
    assert list(tmp_path.iterdir()) == []


PROBES = """
import json
from pathlib import Path


def request(batch):
    for frame in batch:
        if frame.frame_num == 150:
            frame.request_recording(before_s=3, after_s=4)


def collect(batch):
    for frame in batch:
        for event in frame.meta.events:
            with Path("out/events.jsonl").open("a") as file:
                file.write(json.dumps({"frame_num": frame.frame_num, **event.to_dict()}) + "\\n")
"""


def test_a_probe_request_from_a_yaml_config_via_the_cli(tmp_path: Path) -> None:
    (tmp_path / "probes.py").write_text(PROBES)
    (tmp_path / "pipeline.yaml").write_text(
        textwrap.dedent(
            f"""
            sources:
              - uri: {PARKING}
                name: lot
            record:
              container: mkv
              prefix: smart
            sinks:
              - type: jsonl
                path: out/meta.jsonl
            probes:
              - element: mux
                function: probes.py:request
              - element: record
                function: probes.py:collect
            perf: {{interval_s: 0}}
            """
        )
    )
    result = panoptes("run", "pipeline.yaml", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr

    (clip,) = (tmp_path / "out" / "records").iterdir()
    assert clip.name.startswith("smart_lot_") and clip.suffix == ".mkv"
    events = [json.loads(line) for line in (tmp_path / "out/events.jsonl").read_text().splitlines()]
    assert events == [
        {"frame_num": 150, "kind": "recording", "rule": "request", "video_path": str(clip)}
    ]
    records = [json.loads(line) for line in (tmp_path / "out/meta.jsonl").read_text().splitlines()]
    written = [(r["frame_num"], e) for r in records for e in r.get("events", [])]
    assert written == [(150, {"kind": "recording", "rule": "request", "video_path": str(clip)})]
    assert_copied(clip, PARKING, 28 / 3, "h264")
