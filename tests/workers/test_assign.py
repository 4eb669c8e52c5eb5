"""Sharing streams out between workers: by count at start, by measured load when adding."""

from __future__ import annotations

import pytest

from panoptes import ConfigError
from panoptes.workers import Placement, Share, split_evenly


@pytest.mark.parametrize(
    ("count", "workers", "expected"),
    [
        (4, 2, [[0, 2], [1, 3]]),
        (5, 2, [[0, 2, 4], [1, 3]]),
        (3, 4, [[0], [1], [2], []]),
        (0, 2, [[], []]),
        (6, 3, [[0, 3], [1, 4], [2, 5]]),
        (7, 1, [[0, 1, 2, 3, 4, 5, 6]]),
    ],
)
def test_split_evenly_deals_round_robin(
    count: int, workers: int, expected: list[list[int]]
) -> None:
    shares = split_evenly(count, workers)
    assert shares == expected
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1
    assert sorted(i for share in shares for i in share) == list(range(count))


def test_split_evenly_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="workers must be 1 or more"):
        split_evenly(3, 0)


def test_unmeasured_streams_place_by_count() -> None:
    placement = Placement(3)
    assert [placement.place(source_id) for source_id in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert placement.streams_of(0) == [0, 3, 6]


def test_added_stream_goes_to_the_least_loaded_worker_not_the_one_with_fewest_streams() -> None:
    placement = Placement(2)
    # Worker 0: three 160x90 streams at 15 fps; worker 1: one 1080p stream at 30 fps.
    for source_id in (0, 2, 4):
        placement.assign(source_id, 0, 160 * 90 * 15)
    placement.assign(1, 1, 1920 * 1080 * 30)
    assert placement.load_of(0) == 3 * 160 * 90 * 15
    assert placement.least_loaded() == 0
    assert placement.place(5) == 0


def test_unmeasured_stream_counts_as_the_mean_load() -> None:
    placement = Placement(2)
    placement.assign(0, 0, 100.0)
    placement.assign(1, 1, 300.0)
    placement.assign(2, 0)  # not measured yet: counts as 200
    assert placement.load_of(0) == pytest.approx(300.0)
    # Tied on load, then on streams: worker 1 has one stream to worker 0's two.
    assert placement.least_loaded() == 1


def test_streams_added_in_a_row_spread_before_they_are_measured() -> None:
    placement = Placement(2)
    placement.assign(0, 0, 50.0)
    placement.assign(1, 1, 50.0)
    assert {placement.place(2), placement.place(3)} == {0, 1}


def test_remove_and_set_load_move_the_balance() -> None:
    placement = Placement(2)
    placement.assign(0, 0, 10.0)
    placement.assign(1, 1, 30.0)
    assert placement.least_loaded() == 0
    placement.set_loads({0: 50.0, 99: 1.0})  # an unknown stream is ignored
    assert placement.least_loaded() == 1
    assert placement.remove(1) == 1
    assert placement.streams_of(1) == []
    assert placement.least_loaded() == 1
    with pytest.raises(KeyError):
        placement.owner(1)
    with pytest.raises(KeyError):
        placement.remove(1)


def test_least_loaded_among_the_available_workers() -> None:
    placement = Placement(3)
    placement.assign(0, 1, 10.0)
    assert placement.least_loaded(available=[1, 2]) == 2
    assert placement.place(1, available=[1]) == 1
    with pytest.raises(ValueError, match="no worker is available"):
        placement.least_loaded(available=[])
    with pytest.raises(ValueError, match="no worker 3"):
        placement.assign(2, 3)


@pytest.mark.parametrize(
    ("text", "total", "indices"),
    [("0/1", 3, [0, 1, 2]), ("1/4", 10, [1, 5, 9]), (" 3 / 4 ", 3, []), ("2/3", 9, [2, 5, 8])],
)
def test_share_takes_every_count_th_source(text: str, total: int, indices: list[int]) -> None:
    share = Share.parse(text)
    assert share.indices(total) == indices
    assert str(share) == text.replace(" ", "")


def test_shares_cover_every_source_once() -> None:
    taken = [i for ordinal in range(4) for i in Share(ordinal, 4).indices(11)]
    assert sorted(taken) == list(range(11))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2", "expected ORDINAL/COUNT"),
        ("a/b", "expected ORDINAL/COUNT"),
        ("-1/4", "expected ORDINAL/COUNT"),
        ("4/4", "the ordinal must be 0 to 3"),
        ("0/0", "of a count of at least 1"),
    ],
)
def test_bad_share_names_the_option(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Share.parse(text)
    assert "--share" in str(caught.value)
