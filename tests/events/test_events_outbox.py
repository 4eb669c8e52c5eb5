"""The SQLite outbox: order, persistence, bounds, concurrent writer and reader."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from panoptes import ConfigError
from panoptes.events import Outbox, OutgoingEvent


def events(start: int, count: int, stream: str = "t") -> list[OutgoingEvent]:
    return [
        OutgoingEvent(stream, "cam", f"id-{n}", f'{{"n": {n}}}'.encode())
        for n in range(start, start + count)
    ]


def test_events_come_back_in_order_and_leave_when_deleted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "out" / "box.sqlite")
    try:
        assert outbox.put(events(0, 5)) == 0 and outbox.put(events(5, 3, "u")) == 0
        stored = outbox.read(0, 100)
        assert [e.event_id for e in stored] == [f"id-{n}" for n in range(8)]
        assert [e.stream for e in stored] == ["t"] * 5 + ["u"] * 3
        assert stored[0].payload == b'{"n": 0}' and stored[0].key == "cam"
        assert [e.event_id for e in outbox.read(stored[5].seq, 2)] == ["id-6", "id-7"]
        assert outbox.delete([stored[0].seq, stored[2].seq]) == 2 and len(outbox) == 6
        assert [e.event_id for e in outbox.read()][:2] == ["id-1", "id-3"]
    finally:
        outbox.close()


def test_what_was_stored_survives_a_reopen_and_new_events_follow_it(tmp_path: Path) -> None:
    path = tmp_path / "box.sqlite"
    outbox = Outbox(path)
    outbox.put(events(0, 4))
    outbox.delete([outbox.read()[-1].seq])  # the newest goes: its sequence number is not reused
    outbox.close()
    outbox = Outbox(path)
    try:
        assert len(outbox) == 3
        outbox.put(events(10, 2))
        stored = outbox.read()
        assert [e.event_id for e in stored] == ["id-0", "id-1", "id-2", "id-10", "id-11"]
        assert stored[3].seq > 4
    finally:
        outbox.close()


def test_max_events_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "box.sqlite", max_events=10)
    try:
        assert outbox.put(events(0, 8)) == 0
        assert outbox.put(events(8, 5)) == 3
        assert outbox.put(events(13, 20)) == 20
        assert len(outbox) == 10 and outbox.dropped == 23
        assert [e.event_id for e in outbox.read()] == [f"id-{n}" for n in range(23, 33)]
    finally:
        outbox.close()


def test_a_writer_and_a_reader_thread_share_the_outbox(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "box.sqlite")
    seen: list[str] = []

    def read_and_delete() -> None:
        cursor = 0
        while len(seen) < 2000:
            stored = outbox.read(cursor, 100)
            if stored:
                cursor = stored[-1].seq
                seen.extend(e.event_id for e in stored)
                outbox.delete(e.seq for e in stored)

    reader = threading.Thread(target=read_and_delete)
    reader.start()
    for start in range(0, 2000, 50):
        outbox.put(events(start, 50))
    reader.join(30)
    try:
        assert seen == [f"id-{n}" for n in range(2000)] and len(outbox) == 0
    finally:
        outbox.close()


def test_a_file_that_is_not_an_outbox_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.sqlite"
    garbage.write_text("not a database " * 100)
    with pytest.raises(ConfigError, match="is not a panoptes outbox"):
        Outbox(garbage)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE events (id INTEGER, body TEXT)")
    connection.close()
    with pytest.raises(ConfigError, match="is not a panoptes outbox"):
        Outbox(other)
    with pytest.raises(ConfigError, match="is a folder"):
        Outbox(tmp_path)
