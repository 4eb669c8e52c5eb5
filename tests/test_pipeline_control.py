"""Pipeline control paths: bus subscribers, dropped batches, removal, EOS, bad URIs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest

from panoptes import Batch, ConfigError, Message, MessageType, Pipeline


def pattern(name: str, frames: int | None = 10, **extra: Any) -> dict[str, Any]:
    return {
        "type": "test-source",
        "name": name,
        "frames": frames,
        "width": 96,
        "height": 64,
        **extra,
    }


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Poll ``condition`` until it holds; the deadline is generous, not a measure: on a loaded
    machine streams can take seconds to start."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {timeout_s} s: {what}")
        time.sleep(0.02)


def test_subscriber_that_calls_back_or_raises_does_not_stall_the_run() -> None:
    pipeline = Pipeline({"sources": [pattern("a"), pattern("b")], "perf": {"interval_s": 0}})
    seen: list[int] = []

    def reenter(message: Message) -> None:
        if message.type is MessageType.STREAM_ENDED:
            seen.append(len(pipeline.streams()))  # takes the pipeline's locks

    def explode(message: Message) -> None:
        raise BrokenPipeError("stdout closed")

    pipeline.bus.subscribe(reenter)
    pipeline.bus.subscribe(explode)
    pipeline.start()
    assert pipeline.wait(20), "the pipeline stalled"
    assert len(seen) == 2 and pipeline.bus.subscriber_failures > 0
    assert pipeline.summary().frames == 20


def test_events_survive_a_probe_that_drops_every_batch() -> None:
    pipeline = Pipeline(
        {
            "sources": [pattern("a", frames=6)],
            "infer": [{"name": "detector", "interval": 1}],
            "perf": {"interval_s": 0},
        }
    )
    after: list[tuple[int, list[str]]] = []
    pipeline.add_probe("mux", lambda batch: False)
    pipeline.add_probe("detector", lambda b: after.append((len(b), [e.kind for e in b.events])))
    assert pipeline.run().ok
    assert all(count == 0 for count, _ in after)
    assert ["added"] in [kinds for _, kinds in after] and ["ended"] in [kinds for _, kinds in after]
    detector: Any = pipeline.element("detector")
    assert dict(detector._frames_seen) == {}  # the ended stream's state was freed


def test_element_failure_passes_frames_on_and_is_reported() -> None:
    pipeline = Pipeline(
        {
            "sources": [pattern("a", frames=4)],
            "infer": [{"name": "detector", "parser": "failing_parser:parse"}],
            "perf": {"interval_s": 0},
        }
    )
    summary = pipeline.run()
    assert summary.frames == 4  # the frames still reached the sinks, without objects
    assert any("parser bug" in m.text and m.origin == "detector" for m in summary.errors)


def test_no_frame_of_a_removed_stream_arrives_after_its_removal_event() -> None:
    pipeline = Pipeline(
        {
            "sources": [
                pattern("keep", frames=None, real_time=True, fps=100),
                pattern("gone", frames=None, real_time=True, fps=100),
            ],
            "perf": {"interval_s": 0},
        }
    )
    log: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(batch: Batch) -> None:
        with lock:
            log.extend(("event", f"{e.kind}:{e.source_name}") for e in batch.events)
            log.extend(("frame", f.source_name) for f in batch)

    def frames_of(name: str, after: tuple[str, str] | None = None) -> int:
        """Frames of stream ``name`` in the log (only those after ``after``, if given)."""
        with lock:
            if after is None:
                return log.count(("frame", name))
            return log[log.index(after) :].count(("frame", name)) if after in log else 0

    pipeline.add_probe("mux", record)
    pipeline.start()
    # Both streams play before one goes, so that frames of "gone" are on their way when it does.
    wait_until(lambda: frames_of("keep") >= 10 and frames_of("gone") >= 10, "both streams play")
    pipeline.remove_source(1)
    pipeline.remove_source(1)  # twice: once is what counts
    time.sleep(0.5)  # a frame of "gone" that came after its removal would have come by now
    wait_until(
        lambda: frames_of("keep", after=("event", "removed:gone")) >= 10,
        "frames of the kept stream after the removal",
    )
    pipeline.stop()
    assert pipeline.wait(10)
    removed_at = log.index(("event", "removed:gone"))
    assert ("frame", "gone") not in log[removed_at:]
    assert ("frame", "keep") in log[removed_at:]
    removals = [m for m in pipeline.bus.history if m.type is MessageType.STREAM_REMOVED]
    assert len(removals) == 1
    assert {s.name: s.state for s in pipeline.summary().streams}["gone"] == "removed"


def test_eos_reaches_the_bus_without_wait() -> None:
    pipeline = Pipeline({"sources": [pattern("a", frames=3)], "perf": {"interval_s": 0}})
    pipeline.start()
    deadline = time.monotonic() + 20
    types = []
    while MessageType.EOS not in types and time.monotonic() < deadline:
        message = pipeline.bus.poll(0.5)
        if message is not None:
            types.append(message.type)
    assert MessageType.EOS in types and pipeline.finished


def test_keep_alive_waits_for_sources_added_later() -> None:
    pipeline = Pipeline(
        {"sources": [pattern("first", frames=3)], "keep_alive": True, "perf": {"interval_s": 0}}
    )
    names: list[str] = []
    ended: list[str] = []

    def record(batch: Batch) -> None:
        names.extend(f.source_name for f in batch)
        ended.extend(e.source_name for e in batch.events if e.kind == "ended")

    pipeline.add_probe("mux", record)
    pipeline.start()
    wait_until(lambda: "first" in ended, "the first stream to end")
    time.sleep(1.0)  # a pipeline that did not wait for more sources would have finished by now
    assert not pipeline.finished and names.count("first") == 3
    pipeline.add_source(pattern("second", frames=4))
    deadline = time.monotonic() + 20
    while names.count("second") < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    pipeline.stop()
    assert pipeline.wait(10)
    assert names.count("second") == 4


@pytest.mark.parametrize("uri", ["bogus://cam/1", "test://square?width=10"])
def test_malformed_uri_is_a_config_error_with_its_place(uri: str) -> None:
    with pytest.raises(ConfigError, match=r"sources\[1\]\.uri: "):
        Pipeline({"sources": [pattern("ok"), {"uri": uri}]})


def test_failed_build_can_be_retried_without_duplicates(tmp_path: Any) -> None:
    (tmp_path / "bad.onnx").write_text("not a model")
    pipeline = Pipeline(
        {
            "sources": [pattern("a", frames=2)],
            "infer": [{"name": "detector", "model": str(tmp_path / "bad.onnx")}],
        }
    )
    for _ in range(2):
        with pytest.raises(Exception, match=r"infer\[0\]: .*not an ONNX model"):
            pipeline.build()
    assert pipeline._stages == []


def test_sources_added_and_removed_at_run_time_take_and_free_tiles(tmp_path: Path) -> None:
    pipeline = Pipeline(
        {
            "sources": [
                {"uri": "test://ball?width=320&height=240&fps=30", "name": "a", "real_time": True}
            ],
            "tiler": {"width": 640, "height": 360},
            "osd": {},
            "sinks": [{"type": "file", "path": str(tmp_path / "tiled.mp4")}],
            "perf": {"interval_s": 0},
        }
    )
    layouts: list[tuple[int, ...]] = []

    def record(batch: Batch) -> None:
        if not batch.frames:  # a batch of stream events only: no picture
            return
        tiler = pipeline.element("tiler")
        layouts.append(tuple(sorted(tiler._cells)))  # type: ignore[attr-defined]

    pipeline.add_probe("tiler", record)
    pipeline.start()

    def wait_for(condition: Any) -> None:
        deadline = time.monotonic() + 20
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert condition()

    wait_for(lambda: len(layouts) >= 5)
    second = pipeline.add_source(
        {"uri": "test://gradient?width=320&height=240&fps=30", "name": "b", "real_time": True}
    )
    wait_for(lambda: layouts[-1] == (0, second))
    pipeline.remove_source(second)
    wait_for(lambda: layouts[-1] == (0,))
    pipeline.stop()
    assert pipeline.wait(20)
    # One stream, then two side by side, then one again: the file has every tiled picture.
    assert layouts[0] == (0,) and (0, second) in layouts
    with av.open(str(tmp_path / "tiled.mp4")) as container:
        pictures = sum(1 for _ in container.decode(video=0))
    assert pictures == len(layouts)
