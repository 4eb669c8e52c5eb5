"""Real-time pacing, tested against an injected clock rather than by measuring time."""

from __future__ import annotations

import threading

import pytest

from panoptes.media import RealTimePacer, open_reader


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_pacer_waits_for_each_frame_s_pts() -> None:
    clock = FakeClock()
    pacer = RealTimePacer(clock)
    assert pacer.delay_s(5.0) == 0.0  # the first frame anchors pts 5.0 to now
    assert pacer.delay_s(5.1) == pytest.approx(0.1)
    clock.now_s += 0.1
    assert pacer.delay_s(5.2) == pytest.approx(0.1)
    clock.now_s += 0.15
    assert pacer.delay_s(5.3) == pytest.approx(0.05)


def test_pacer_catches_up_after_a_short_delay() -> None:
    clock = FakeClock()
    pacer = RealTimePacer(clock, max_lag_s=1.0)
    pacer.delay_s(0.0)
    clock.now_s += 0.5  # the consumer was slow for half a second
    assert pacer.delay_s(0.1) == 0.0
    assert pacer.delay_s(0.2) == 0.0
    assert pacer.delay_s(0.6) == pytest.approx(0.1)  # caught up: the old anchor still holds


def test_pacer_reanchors_after_a_stall_or_a_jump() -> None:
    clock = FakeClock()
    pacer = RealTimePacer(clock, max_lag_s=1.0, max_lead_s=5.0)
    pacer.delay_s(0.0)
    clock.now_s += 3.0  # stalled: no burst of three seconds of frames
    assert pacer.delay_s(0.1) == 0.0
    assert pacer.delay_s(0.2) == pytest.approx(0.1)
    assert pacer.delay_s(-7.0) == 0.0  # timestamps went backwards
    assert pacer.delay_s(-6.9) == pytest.approx(0.1)
    assert pacer.delay_s(500.0) == 0.0  # a jump far ahead is not slept through
    assert pacer.delay_s(500.1) == pytest.approx(0.1)


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.waits_s: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits_s.append(timeout)
        return self.is_set()


def test_real_time_reader_waits_by_pts() -> None:
    stop = RecordingStop()
    reader = open_reader("test://gradient?width=32&height=32&fps=1&frames=5", real_time=True)
    frames = list(reader.frames(stop))
    assert len(frames) == 5
    # The waits are asked of a clock that barely moves here: 1, 2, 3, 4 s less the work done.
    assert len(stop.waits_s) == 4
    assert stop.waits_s == sorted(stop.waits_s)
    assert 3.0 < stop.waits_s[-1] <= 4.0


def test_a_reader_without_real_time_never_waits() -> None:
    stop = RecordingStop()
    assert len(list(open_reader("test://gradient?fps=1&frames=5").frames(stop))) == 5
    assert stop.waits_s == []


def test_stop_ends_a_real_time_wait() -> None:
    stop = threading.Event()
    reader = open_reader("test://ball?width=32&height=32&fps=0.1&frames=3", real_time=True)
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    frames = list(reader.frames(stop))  # would take 20 s without the stop
    timer.join()
    assert len(frames) == 1
