"""Pipeline control paths: bus subscribers, dropped batches, removal, EOS, bad URIs."""

from __future__ import annotations

import threading
import time
from typing import Any

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

    pipeline.add_probe("mux", record)
    pipeline.start()
    time.sleep(0.5)
    pipeline.remove_source(1)
    pipeline.remove_source(1)  # twice: once is what counts
    time.sleep(0.5)
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
    pipeline.add_probe("mux", lambda batch: names.extend(f.source_name for f in batch))
    pipeline.start()
    time.sleep(1.0)
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
