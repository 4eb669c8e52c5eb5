"""The outbox: events on disk until a broker has them.

One SQLite table in WAL mode, ordered by ``seq``, which only grows (``AUTOINCREMENT``), so that
events are read back in the order they were written, across restarts too. The sink's thread
writes a batch's events in one transaction (:meth:`Outbox.put`); the sender's thread reads them in
order (:meth:`Outbox.read`) and deletes each once the broker has acknowledged it
(:meth:`Outbox.delete`). Each thread has its own connection; SQLite serialises their writes.

SQLite rather than a file of our own: it gives atomic batches, crash recovery and concurrent
reading and writing, which an append-only log would have to reimplement.

With ``fsync`` off (``synchronous=NORMAL``) a committed batch survives a crash of the process
(SIGKILL included); one that also survives a power cut needs ``fsync`` on (``FULL``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from panoptes.core.errors import ConfigError

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of an outbox file."""

_CREATE = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""
_COLUMNS = ("seq", "stream", "key", "event_id", "payload")
_BUSY_TIMEOUT_MS = 30_000
_DELETE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event to store: where it goes and what it says."""

    stream: str
    """The topic (MQTT, Kafka) or stream key (Redis)."""
    key: str
    """Kafka's message key (the stream it came from); unused by the other brokers."""
    event_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event read back from the outbox."""

    seq: int
    stream: str
    key: str
    event_id: str
    payload: bytes


class Outbox:
    """An outbox file, opened (and created, with its folder) by the constructor.

    Args:
        path: the SQLite file.
        max_events: keep at most this many events: when a batch brings more, the oldest are
            dropped (and counted in :attr:`dropped`); None keeps everything.
        fsync: make every batch durable against power loss too (slower).

    Raises:
        ConfigError: the file cannot be created, or is not an outbox.
    """

    def __init__(self, path: Path, *, max_events: int | None = None, fsync: bool = False) -> None:
        self.path = path
        self.max_events = max_events
        self.dropped = 0
        """Events dropped, oldest first, to keep within ``max_events``."""
        self._fsync = fsync
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._local = threading.local()
        check_outbox(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = self._connection()
            with connection:
                connection.execute(_CREATE)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            (self._count,) = connection.execute("SELECT COUNT(*) FROM events").fetchone()
        except (OSError, sqlite3.Error) as error:
            self.close()
            raise ConfigError(f"cannot open the outbox {path}: {error}", "outbox") from error

    def __len__(self) -> int:
        """Events waiting (in flight to the broker included)."""
        with self._lock:
            return int(self._count)

    def put(self, events: Sequence[OutgoingEvent]) -> int:
        """Store ``events`` in one transaction, after every event stored before; returns how many
        of the oldest events were dropped to stay within ``max_events``."""
        if not events:
            return 0
        connection = self._connection()
        with self._lock:
            excess = self._count + len(events) - (self.max_events or 0)
        dropped = 0
        with connection:
            connection.executemany(
                "INSERT INTO events (stream, key, event_id, payload) VALUES (?, ?, ?, ?)",
                [(e.stream, e.key, e.event_id, e.payload) for e in events],
            )
            if self.max_events is not None and excess > 0:
                dropped = connection.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)",
                    (excess,),
                ).rowcount
        with self._lock:
            self._count += len(events) - dropped
            self.dropped += dropped
        return dropped

    def read(self, after_seq: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events with ``seq > after_seq``, oldest first."""
        rows = (
            self._connection()
            .execute(
                "SELECT seq, stream, key, event_id, payload FROM events WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            .fetchall()
        )
        return [StoredEvent(*row) for row in rows]

    def delete(self, seqs: Iterable[int]) -> int:
        """Delete the events with these sequence numbers (acknowledged by the broker) in one
        transaction; those already gone (dropped by ``max_events``) are skipped."""
        seqs = list(seqs)
        if not seqs:
            return 0
        connection = self._connection()
        deleted = 0
        with connection:
            for start in range(0, len(seqs), _DELETE_CHUNK):
                chunk = seqs[start : start + _DELETE_CHUNK]
                marks = ",".join("?" * len(chunk))
                deleted += connection.execute(
                    f"DELETE FROM events WHERE seq IN ({marks})", chunk
                ).rowcount
        with self._lock:
            self._count -= deleted
        return deleted

    def close(self) -> None:
        """Close every thread's connection (the WAL is folded back into the file)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        # check_same_thread=False only so that close() may run in another thread; each
        # connection is used by the thread that opened it.
        connection = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection


def check_outbox(path: Path) -> None:
    """Raise ConfigError when ``path`` exists and is not an outbox; opens it read-only."""
    if not path.exists():
        return
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; name a file", "outbox")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise ConfigError(f"cannot read the outbox {path}: {error}", "outbox") from error
    try:
        columns = tuple(row[1] for row in connection.execute("PRAGMA table_info(events)"))
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as error:
        raise ConfigError(
            f"{path} is not a panoptes outbox ({error}); move it away or name another file",
            "outbox",
        ) from error
    finally:
        connection.close()
    if columns and (columns != _COLUMNS or version != SCHEMA_VERSION):
        raise ConfigError(
            f"{path} is not a panoptes outbox (version {version}, columns {columns}); move it "
            "away or name another file",
            "outbox",
        )
