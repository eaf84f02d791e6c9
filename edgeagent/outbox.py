"""Durable outbox: SQLite (WAL), bounded in bytes, per-stream ``seq`` that survives restarts.

Only :class:`~edgeagent.privacy.Released` items (made by the privacy gate) can be put in. A row
leaves only when the publisher reports the broker's PUBACK; oldest rows go first. When the
byte bound is reached the oldest rows are dropped, counted and reported, never silently.
All SQLite work runs on one worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.privacy import Released, is_released

log = logging.getLogger("edgeagent.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sequences (stream TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
-- seq ranges pushed out by the byte bound; a range is forgotten only when the broker has
-- acknowledged the event that announces it (announce_row), so no hole goes unexplained
CREATE TABLE IF NOT EXISTS drops (
    id INTEGER PRIMARY KEY, stream TEXT NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, count INTEGER NOT NULL, announce_row INTEGER);
"""
_SPILL_LIMIT = 1000  # messages kept in memory while the disk refuses writes


class OutboxError(Exception):
    """The outbox file cannot be opened or written; the message names the file."""


@dataclass(frozen=True, slots=True)
class Row:
    """One stored message, as the publisher sees it."""

    id: int
    stream: str
    seq: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Drop:
    """A contiguous seq range of one stream dropped for the byte bound, not yet announced."""

    id: int
    stream: str
    first_seq: int
    last_seq: int
    count: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Figures for health: depth, bytes, drops, age of the oldest row, storage trouble."""

    depth: int
    bytes: int
    max_bytes: int
    dropped: int
    oldest_age_s: float | None
    spilled: int
    storage_error: str | None


class Outbox:
    """The store between the privacy gate and the MQTT publisher."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgeagent-outbox")
        self._db: sqlite3.Connection | None = None
        self._bytes = 0
        self._listeners: list[Callable[[], None]] = []
        self._spill: list[tuple[str, str, dict[str, Any], tuple[Drop, ...]]] = []
        self._storage_error: str | None = None
        # rows handed to the publisher and not yet acknowledged: never dropped for the bound
        # (they are about to leave; dropping one would announce a hole that does not exist).
        # Touched only on the worker thread, like everything else, so there is no race.
        self._claimed: set[int] = set()
        #: Random id made with the outbox file: a new one means seq restarted from 0.
        self.store_id = ""

    @classmethod
    async def open(cls, path: Path, max_bytes: int) -> Outbox:
        """Open (or create) the outbox file; raises OutboxError naming the file."""
        outbox = cls(path, max_bytes)
        try:
            await outbox._run(outbox._open_sync)
        except OutboxError:
            outbox._executor.shutdown(wait=False)
            raise
        return outbox

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a completed window survives power loss
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('store', ?)",
                       (uuid.uuid4().hex,))
            self.store_id = db.execute("SELECT value FROM meta WHERE name = 'store'"
                                       ).fetchone()[0]
            self._bytes = db.execute(
                "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._db = db

    def on_put(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop thread) after each successful put."""
        self._listeners.append(callback)

    async def put(self, item: Released, *, announces: tuple[Drop, ...] = ()) -> int | None:
        """Store a gated message and return its seq (None if it had to be held in memory).

        ``announces``: the :class:`Drop` s this message (an event) reports, as it reports them.
        """
        if not is_released(item):
            raise TypeError("the outbox accepts only messages released by the privacy gate")
        seq = await self._run(self._put_sync, item.stream, item.topic, item.body, announces)
        for callback in self._listeners:
            callback()
        return seq

    def _put_sync(self, stream: str, topic: str, body: dict[str, Any],
                  announces: tuple[Drop, ...]) -> int | None:
        pending = [*self._spill, (stream, topic, body, announces)]
        self._spill = []
        seq = None
        for index, (s, t, b, a) in enumerate(pending):
            try:
                seq = self._insert(s, t, b, a)
            except sqlite3.OperationalError as exc:  # disk full, read-only, I/O error
                self._storage_error = f"cannot write outbox {self.path}: {exc}"
                log.error("%s; holding %d message(s) in memory", self._storage_error,
                          len(pending) - index)
                self._spill = pending[index:][-_SPILL_LIMIT:]
                self._add_counter("dropped", len(pending) - index - len(self._spill))
                return None
        self._storage_error = None
        return seq

    def _insert(self, stream: str, topic: str, body: dict[str, Any],
                announces: tuple[Drop, ...]) -> int:
        db = self._require_db()
        with db:  # one transaction: seq bump, drops and insert land together or not at all
            db.execute("BEGIN IMMEDIATE")
            seq = db.execute(
                "INSERT INTO sequences(stream, last_seq) VALUES (?, 0) ON CONFLICT(stream) "
                "DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq", (stream,),
            ).fetchone()[0]
            payload = json.dumps({"seq": seq, "store": self.store_id, **body},
                                 separators=(",", ":"), ensure_ascii=False).encode()
            freed = self._make_room(db, len(payload))
            row_id = db.execute(
                "INSERT INTO messages(stream, seq, topic, payload, created) "
                "VALUES (?, ?, ?, ?, ?)", (stream, seq, topic, payload, time.time())).lastrowid
            for drop in announces:
                self._mark_announced(db, drop, row_id)
        self._bytes += len(payload) - freed
        return seq

    def _make_room(self, db: sqlite3.Connection, needed: int) -> int:
        """Drop oldest rows until ``needed`` more bytes fit, recording each; bytes freed."""
        excess = self._bytes + needed - self.max_bytes
        freed, dropped = 0, 0
        if excess <= 0:
            return 0
        for row_id, stream, seq, size in db.execute(
                "SELECT id, stream, seq, LENGTH(payload) FROM messages ORDER BY id").fetchall():
            if freed >= excess:
                break
            if row_id in self._claimed:
                continue
            db.execute("DELETE FROM messages WHERE id = ?", (row_id,))
            # an announcement that will now never arrive: its ranges must be announced again
            db.execute("UPDATE drops SET announce_row = NULL WHERE announce_row = ?", (row_id,))
            self._record_drop(db, stream, seq)
            freed += size
            dropped += 1
        if dropped:
            log.warning("outbox %s full (%d bytes): dropped %d oldest message(s)",
                        self.path, self.max_bytes, dropped)
            self._add_counter("dropped", dropped, db)
        return freed

    @staticmethod
    def _mark_announced(db: sqlite3.Connection, drop: Drop, row_id: int) -> None:
        """Tie ``drop`` to its announcement; what grew since it was read stays pending."""
        current = db.execute("SELECT last_seq, count FROM drops WHERE id = ? AND "
                             "announce_row IS NULL", (drop.id,)).fetchone()
        if current is None:
            return
        last, count = current
        if last != drop.last_seq:  # e.g. this very put pushed out more rows of the stream
            db.execute("INSERT INTO drops(stream, first_seq, last_seq, count) "
                       "VALUES (?, ?, ?, ?)", (drop.stream, drop.last_seq + 1, last,
                                               count - drop.count))
        db.execute("UPDATE drops SET announce_row = ?, last_seq = ?, count = ? WHERE id = ?",
                   (row_id, drop.last_seq, drop.count, drop.id))

    @staticmethod
    def _record_drop(db: sqlite3.Connection, stream: str, seq: int) -> None:
        extended = db.execute(
            "UPDATE drops SET last_seq = ?, count = count + 1 WHERE stream = ? AND "
            "announce_row IS NULL AND last_seq = ?", (seq, stream, seq - 1)).rowcount
        if not extended:
            db.execute("INSERT INTO drops(stream, first_seq, last_seq, count) "
                       "VALUES (?, ?, ?, 1)", (stream, seq, seq))

    def _add_counter(self, name: str, amount: int, db: sqlite3.Connection | None = None) -> None:
        if amount <= 0:
            return
        try:
            (db or self._require_db()).execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) "
                "DO UPDATE SET value = value + excluded.value", (name, amount))
        except sqlite3.OperationalError:
            log.error("could not record %d dropped message(s) in %s", amount, self.path)

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._db

    async def unannounced_drops(self) -> list[Drop]:
        """Dropped seq ranges that no stored (or acknowledged) event reports yet."""
        return await self._run(self._unannounced_sync)

    def _unannounced_sync(self) -> list[Drop]:
        rows = self._require_db().execute(
            "SELECT id, stream, first_seq, last_seq, count FROM drops "
            "WHERE announce_row IS NULL ORDER BY id")
        return [Drop(*row) for row in rows]

    async def peek(self, after_id: int = 0, limit: int = 20, *, claim: bool = False
                   ) -> list[Row]:
        """Oldest stored rows with ``id > after_id``.

        ``claim=True`` (the publisher, about to send them): the rows are kept even when the
        byte bound is reached, until :meth:`ack` (the bound may be exceeded by these rows).
        """
        return await self._run(self._peek_sync, after_id, limit, claim)

    def _peek_sync(self, after_id: int, limit: int, claim: bool) -> list[Row]:
        rows = [Row(*r) for r in self._require_db().execute(
            "SELECT id, stream, seq, topic, payload FROM messages WHERE id > ? ORDER BY id "
            "LIMIT ?", (after_id, limit))]
        if claim:
            self._claimed.update(row.id for row in rows)
        return rows

    async def ack(self, row_id: int) -> None:
        """The broker acknowledged this row: delete it."""
        await self._run(self._ack_sync, row_id)

    def _ack_sync(self, row_id: int) -> None:
        db = self._require_db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute("DELETE FROM messages WHERE id = ? RETURNING LENGTH(payload)",
                             (row_id,))
            found = cur.fetchone()
            db.execute("DELETE FROM drops WHERE announce_row = ?", (row_id,))
        self._claimed.discard(row_id)
        if found:
            self._bytes -= found[0]

    async def stats(self) -> OutboxStats:
        """Current figures for the health message."""
        return await self._run(self._stats_sync)

    def _stats_sync(self) -> OutboxStats:
        db = self._require_db()
        depth, oldest = db.execute("SELECT COUNT(*), MIN(created) FROM messages").fetchone()
        dropped = db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return OutboxStats(depth=depth, bytes=self._bytes, max_bytes=self.max_bytes,
                           dropped=dropped[0] if dropped else 0,
                           oldest_age_s=None if oldest is None else max(0.0, time.time() - oldest),
                           spilled=len(self._spill), storage_error=self._storage_error)

    async def close(self) -> None:
        """Close the database and stop the worker thread; idempotent."""
        if self._db is not None:
            await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
