"""The mux's batching rules, on real frame queues fed by threads."""

from __future__ import annotations

import threading
import time

import numpy as np

from panoptes.core.frame import Frame
from panoptes.core.streams import FrameQueue, Stream, StreamState, StreamStats
from panoptes.elements.mux import Mux, MuxProperties


def make_stream(source_id: int, condition: threading.Condition, maxsize: int = 4) -> Stream:
    stats = StreamStats()
    return Stream(
        source_id,
        f"s{source_id}",
        "",
        f"sources[{source_id}]",
        FrameQueue(maxsize, condition, stats),
        stats,
        state=StreamState.PLAYING,
    )


def make_frame(source_id: int, num: int, size_wh: tuple[int, int] = (64, 48)) -> Frame:
    image = np.zeros((size_wh[1], size_wh[0], 3), np.uint8)
    return Frame(source_id, f"s{source_id}", num, num / 10, time.time(), size_wh, image)


def test_full_batch_takes_one_frame_per_stream() -> None:
    condition = threading.Condition()
    streams = [make_stream(i, condition) for i in range(3)]
    stop = threading.Event()
    for s in streams:
        for n in range(2):
            s.queue.put(make_frame(s.source_id, n), stop)
    mux = Mux(MuxProperties(batch_size=3), condition)
    batch = mux.collect(lambda: streams, stop)
    assert batch is not None
    assert sorted(f.source_id for f in batch) == [0, 1, 2]
    assert all(f.frame_num == 0 for f in batch)


def test_stalled_stream_does_not_hold_the_batch_past_the_timeout() -> None:
    condition = threading.Condition()
    streams = [make_stream(i, condition) for i in range(2)]
    stop = threading.Event()
    streams[0].queue.put(make_frame(0, 0), stop)  # stream 1 stays silent
    mux = Mux(MuxProperties(batch_size=2, batched_push_timeout_ms=30), condition)
    batch = mux.collect(lambda: streams, stop)
    assert batch is not None and [f.source_id for f in batch] == [0]


def test_ended_stream_is_not_waited_for_and_all_ended_means_eos() -> None:
    condition = threading.Condition()
    streams = [make_stream(i, condition) for i in range(2)]
    stop = threading.Event()
    streams[1].state = StreamState.ENDED
    streams[0].queue.put(make_frame(0, 0), stop)
    # A timeout far longer than the test: returning at all shows the ended stream was not awaited.
    mux = Mux(MuxProperties(batch_size=2, batched_push_timeout_ms=60_000), condition)
    batch = mux.collect(lambda: streams, stop)
    assert batch is not None and [f.source_id for f in batch] == [0]
    streams[0].state = StreamState.ENDED
    assert mux.collect(lambda: streams, stop) is None


def test_batch_smaller_than_streams_rotates_fairly() -> None:
    condition = threading.Condition()
    streams = [make_stream(i, condition, maxsize=10) for i in range(3)]
    stop = threading.Event()
    for s in streams:
        for n in range(4):
            s.queue.put(make_frame(s.source_id, n), stop)
    mux = Mux(MuxProperties(batch_size=2), condition)
    taken = [f.source_id for _ in range(6) for f in (mux.collect(lambda: streams, stop) or [])]
    assert sorted(taken.count(i) for i in range(3)) == [4, 4, 4]


def test_frames_arriving_from_threads_are_all_batched_in_order() -> None:
    condition = threading.Condition()
    streams = [make_stream(i, condition, maxsize=2) for i in range(3)]
    stop = threading.Event()

    def produce(stream: Stream) -> None:
        for n in range(50):
            stream.queue.put(make_frame(stream.source_id, n), stop)
        with condition:
            stream.state = StreamState.ENDED
            condition.notify_all()

    threads = [threading.Thread(target=produce, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    mux = Mux(MuxProperties(batch_size=3, batched_push_timeout_ms=20), condition)
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    while (batch := mux.collect(lambda: streams, stop)) is not None:
        assert len({f.source_id for f in batch}) == len(batch)
        for f in batch:
            seen[f.source_id].append(f.frame_num)
    for t in threads:
        t.join()
    assert all(nums == list(range(50)) for nums in seen.values())


def test_live_queue_drops_oldest_and_counts() -> None:
    condition = threading.Condition()
    stream = make_stream(0, condition, maxsize=2)
    stream.queue.leaky = True
    stop = threading.Event()
    for n in range(5):
        assert stream.queue.put(make_frame(0, n), stop)
    assert stream.stats.dropped == 3
    with condition:
        assert [stream.queue.pop().frame_num, stream.queue.pop().frame_num] == [3, 4]  # type: ignore[union-attr]


def test_scaling_keeps_boxes_in_original_pixels() -> None:
    mux = Mux(MuxProperties(width=320, height=320), threading.Condition())
    frame = make_frame(0, 0, size_wh=(640, 480))
    mux.prepare(frame)
    assert frame.image.shape == (320, 320, 3)
    assert frame.size_wh == (640, 480)
    box_in_mux = frame.transform.to_destination(np.array([[0, 0, 640, 480]], np.float32))
    np.testing.assert_allclose(box_in_mux, [[0, 40, 320, 280]])


def test_files_top_up_a_batch_in_order_and_live_streams_do_not() -> None:
    condition = threading.Condition()
    single = [make_stream(0, condition, maxsize=10)]
    stop = threading.Event()
    for n in range(6):
        single[0].queue.put(make_frame(0, n), stop)
    mux = Mux(MuxProperties(batch_size=4), condition)
    assert [f.frame_num for f in mux.collect(lambda: single, stop) or []] == [0, 1, 2, 3]
    assert [f.frame_num for f in mux.collect(lambda: single, stop) or []] == [4, 5]
    live = [make_stream(1, condition, maxsize=10)]
    live[0].queue.leaky = True
    for n in range(3):
        live[0].queue.put(make_frame(1, n), stop)
    assert [f.frame_num for f in mux.collect(lambda: live, stop) or []] == [0]
