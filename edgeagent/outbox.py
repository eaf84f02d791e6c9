"""Durable outbox: SQLite (WAL), bounded in bytes, per-stream ``seq`` that survives restarts.

Only :class:`~edgeagent.privacy.Released` items (made by the privacy gate) can be put in. A row
leaves only when the publisher reports the broker's PUBACK; oldest rows go first.

The byte bound is split: events (faults, announcements) have a small priority reserve
(``priority_bytes``) that data never use, so data can neither push them out nor get them
coarsened; events may borrow space data do not use. When data reach their share, the oldest
data windows that were never handed to a publisher are first *coarsened* — merged into 15 min,
then 1 h windows (:mod:`edgeagent.coarsen`, docs/coarsening.md) — and only when nothing is
left to merge are the oldest rows dropped. Merges and drops are counted and announced
(:meth:`Outbox.announce_pending`), never silent.
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

from edgeagent import coarsen
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
-- data seq ranges merged into coarser windows (contiguous merges of one stream and length
-- coalesce), until an event announcing them is stored
CREATE TABLE IF NOT EXISTS coarsenings (
    id INTEGER PRIMARY KEY, stream TEXT NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, windows INTEGER NOT NULL, seconds REAL NOT NULL,
    messages INTEGER NOT NULL DEFAULT 1);
"""
_SPILL_LIMIT = 1000  # messages kept in memory while the disk refuses writes
#: Priority reserve for events: 5 % of the bound, at least 64 KiB, at most half the bound.
PRIORITY_SHARE = 0.05
PRIORITY_MIN_BYTES = 64 * 1024
_DATA = "data/"
_SCAN_BATCH = 256
#: Merges are announced once data use less than this share of their bound again (the outage
#: is over), so announcements do not fill the events' reserve while the outbox is full.
ANNOUNCE_BELOW = 0.9


def default_priority_bytes(max_bytes: int) -> int:
    """Bytes reserved for events in an outbox of ``max_bytes`` (see module docstring)."""
    return min(max(int(max_bytes * PRIORITY_SHARE), PRIORITY_MIN_BYTES), max_bytes // 2)


def _is_data(stream: str) -> bool:
    return stream.startswith(_DATA)


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
class Coarsening:
    """Data seqs ``first_seq..last_seq`` of one stream merged into coarser windows.

    ``windows`` original windows now stand in ``messages`` messages of ``seconds`` length
    (contiguous merges coalesce until they are announced).
    """

    id: int
    stream: str
    first_seq: int
    last_seq: int
    windows: int
    seconds: float
    messages: int = 1


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Figures for health: depth, bytes, drops, merges, age of the oldest row, storage trouble."""

    depth: int
    bytes: int
    max_bytes: int
    dropped: int
    oldest_age_s: float | None
    spilled: int
    storage_error: str | None
    #: Stored messages merged into coarser ones (each input message counts once per merge).
    coarsened: int = 0
    #: Bytes of the bound reserved for events.
    priority_bytes: int = 0


class Outbox:
    """The store between the privacy gate and the MQTT publisher."""

    def __init__(self, path: Path, max_bytes: int, *, priority_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        #: Part of ``max_bytes`` only events may use; data are bounded by the rest.
        self.priority_bytes = (default_priority_bytes(max_bytes) if priority_bytes is None
                               else min(priority_bytes, max_bytes))
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgeagent-outbox")
        self._db: sqlite3.Connection | None = None
        self._bytes = 0
        self._data_bytes = 0
        #: Highest row id ever handed to a publisher (stored in ``meta`` before handing out):
        #: rows up to it may have reached the broker, so they are never merged.
        self._handed_out = 0
        #: Per coarse level, the lowest row id worth looking at again for a merge.
        self._scan_from: dict[float, int] = {}
        self._freed = [0, 0]  # (bytes, data bytes) freed by the running transaction
        self._listeners: list[Callable[[], None]] = []
        self._spill: list[tuple[str, str, dict[str, Any],
                                tuple[Drop | Coarsening, ...]]] = []
        self._storage_error: str | None = None
        # rows handed to the publisher and not yet acknowledged: never dropped for the bound
        # (they are about to leave; dropping one would announce a hole that does not exist).
        # Touched only on the worker thread, like everything else, so there is no race.
        self._claimed: set[int] = set()
        #: Random id made with the outbox file: a new one means seq restarted from 0.
        self.store_id = ""

    @property
    def data_bytes_max(self) -> int:
        """The share of the bound data may fill before they are coarsened, then dropped."""
        return self.max_bytes - self.priority_bytes

    @classmethod
    async def open(cls, path: Path, max_bytes: int, *, priority_bytes: int | None = None
                   ) -> Outbox:
        """Open (or create) the outbox file; raises OutboxError naming the file."""
        outbox = cls(path, max_bytes, priority_bytes=priority_bytes)
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
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if "first_seq" not in columns:  # outbox files made before coarsening existed
                # first seq a (coarsened) row stands for; NULL: just its own seq
                db.execute("ALTER TABLE messages ADD COLUMN first_seq INTEGER")
            db.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('store', ?)",
                       (uuid.uuid4().hex,))
            self.store_id = db.execute("SELECT value FROM meta WHERE name = 'store'"
                                       ).fetchone()[0]
            handed = db.execute("SELECT value FROM meta WHERE name = 'handed_out'").fetchone()
            self._handed_out = int(handed[0]) if handed else 0
            self._bytes, self._data_bytes = db.execute(
                "SELECT COALESCE(SUM(LENGTH(payload)), 0), COALESCE(SUM(CASE WHEN "
                "substr(stream, 1, 5) = 'data/' THEN LENGTH(payload) ELSE 0 END), 0) "
                "FROM messages").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._db = db

    def on_put(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop thread) after each successful put."""
        self._listeners.append(callback)

    async def put(self, item: Released, *, announces: tuple[Drop | Coarsening, ...] = ()
                  ) -> int | None:
        """Store a gated message and return its seq (None if it had to be held in memory).

        ``announces``: the :class:`Drop` s and :class:`Coarsening` s this message (an event)
        reports, as it reports them.
        """
        if not is_released(item):
            raise TypeError("the outbox accepts only messages released by the privacy gate")
        seq = await self._run(self._put_sync, item.stream, item.topic, item.body, announces)
        for callback in self._listeners:
            callback()
        return seq

    def _put_sync(self, stream: str, topic: str, body: dict[str, Any],
                  announces: tuple[Drop | Coarsening, ...]) -> int | None:
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
                announces: tuple[Drop | Coarsening, ...]) -> int:
        db = self._require_db()
        self._freed = [0, 0]  # (bytes, data bytes) taken out by this transaction
        try:
            with db:  # one transaction: seq bump, merges, drops and insert land together
                db.execute("BEGIN IMMEDIATE")
                seq = db.execute(
                    "INSERT INTO sequences(stream, last_seq) VALUES (?, 0) ON CONFLICT(stream) "
                    "DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq", (stream,),
                ).fetchone()[0]
                full = {"seq": seq, "store": self.store_id, **body}
                payload = _encode(full)
                self._make_room(db, stream, full, len(payload))
                row_id = db.execute(
                    "INSERT INTO messages(stream, seq, topic, payload, created) "
                    "VALUES (?, ?, ?, ?, ?)", (stream, seq, topic, payload, time.time())
                ).lastrowid
                for announced in announces:
                    self._mark_announced(db, announced, row_id)
        except BaseException:
            self._scan_from.clear()  # rolled back: merges the scan skipped past never happened
            raise
        self._bytes += len(payload) - self._freed[0]
        if _is_data(stream):
            self._data_bytes += len(payload)
        self._data_bytes -= self._freed[1]
        return seq

    def _make_room(self, db: sqlite3.Connection, stream: str, body: dict[str, Any],
                   needed: int) -> None:
        """Free space for ``needed`` bytes of ``stream``; adds what it freed to ``_freed``.

        Data: coarsen the oldest data, then drop the oldest data, until data fit their share.
        Then, for any message, events beyond their reserve give way until the total fits.
        Data never push out events inside the reserve; events never push out data.
        """
        if _is_data(stream):
            excess = self._data_bytes + needed - self.data_bytes_max
            if excess > 0:
                freed = self._coarsen(db, excess, (None, stream, body))
                if freed < excess:
                    self._drop_oldest(db, excess - freed, data=True)
            events = self._bytes - self._data_bytes - self._freed[0] + self._freed[1]
            borrowed = events - self.priority_bytes
        else:
            events = self._bytes - self._data_bytes - self._freed[0] + self._freed[1]
            borrowed = events + needed - self.priority_bytes
        excess = min(self._bytes - self._freed[0] + needed - self.max_bytes, borrowed)
        if excess > 0:
            self._drop_oldest(db, excess, data=False)

    def _drop_oldest(self, db: sqlite3.Connection, excess: int, *, data: bool) -> None:
        """Drop the oldest unclaimed data (or event) rows until ``excess`` bytes are freed."""
        freed, dropped, after = 0, 0, 0
        kind = "=" if data else "<>"
        while freed < excess:
            rows = db.execute(
                "SELECT id, stream, seq, first_seq, LENGTH(payload) FROM messages WHERE id > ? "
                f"AND substr(stream, 1, 5) {kind} 'data/' ORDER BY id LIMIT ?",
                (after, _SCAN_BATCH)).fetchall()
            if not rows:
                break
            for row_id, stream, seq, first_seq, size in rows:
                after = row_id
                if freed >= excess:
                    break
                if row_id in self._claimed:
                    continue
                first = seq if first_seq is None else first_seq
                if first != seq:  # a merged row: all the seqs it stood for are gone now
                    self._forget_merge(db, row_id, stream, first, seq)
                db.execute("DELETE FROM messages WHERE id = ?", (row_id,))
                # an announcement that will now never arrive: its ranges must be announced
                # again
                lost = db.execute("UPDATE drops SET announce_row = NULL WHERE "
                                  "announce_row = ?", (row_id,)).rowcount
                self._record_drop(db, stream, first, seq)
                freed += size
                dropped += 1
                if lost:
                    self._coalesce_drops(db)
        if dropped:
            log.warning("outbox %s full (%d bytes): dropped %d oldest %s message(s)",
                        self.path, self.max_bytes, dropped, "data" if data else "event")
            self._add_counter("dropped", dropped, db)
        self._freed[0] += freed
        if data:
            self._freed[1] += freed

    @staticmethod
    def _coalesce_drops(db: sqlite3.Connection) -> None:
        """Join pending ranges of a stream that touch (an announcement was pushed out).

        Without this, every lost announcement would come back as a range of its own, and in a
        full outbox the announcements would push each other out faster than they are made.
        A range only ever grows at its end, as :meth:`_mark_announced` expects.
        """
        previous = None
        for row in db.execute("SELECT id, stream, first_seq, last_seq, count FROM drops WHERE "
                              "announce_row IS NULL ORDER BY stream, first_seq").fetchall():
            if previous is not None and row[1] == previous[1] and row[2] == previous[3] + 1:
                previous = (previous[0], previous[1], previous[2], row[3], previous[4] + row[4])
                db.execute("DELETE FROM drops WHERE id = ?", (row[0],))
                db.execute("UPDATE drops SET last_seq = ?, count = ? WHERE id = ?",
                           (previous[3], previous[4], previous[0]))
            else:
                previous = row

    @staticmethod
    def _forget_merge(db: sqlite3.Connection, row_id: int, stream: str, first: int,
                      last: int) -> None:
        """A merged row is dropped: its seqs leave the pending merge announcements."""
        payload = db.execute("SELECT payload FROM messages WHERE id = ?", (row_id,)).fetchone()
        windows = coarsen.windows_in(json.loads(payload[0]))
        db.execute("UPDATE coarsenings SET first_seq = ?, windows = windows - ?, "
                   "messages = messages - 1 WHERE stream = ? AND first_seq = ? AND "
                   "last_seq > ?", (last + 1, windows, stream, first, last))
        db.execute("DELETE FROM coarsenings WHERE stream = ? AND first_seq >= ? "
                   "AND last_seq <= ?", (stream, first, last))

    # -- coarsening ---------------------------------------------------------------------
    def _coarsen(self, db: sqlite3.Connection, excess: int,
                 tail: tuple[None, str, dict[str, Any]]) -> int:
        """Merge the oldest mergeable data runs, finest level first, until ``excess`` is freed.

        ``tail`` is the data message being put: it can close the newest run of its stream.
        Returns the data bytes freed.
        """
        freed = 0
        for level in coarsen.COARSE_LEVELS:
            while freed < excess:
                group = None
                try:
                    group = self._find_group(db, level, tail)
                    if group is None:
                        break
                    freed += self._merge_rows(db, level, group)
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    # never let a message that cannot be merged stop storing: skip past it
                    log.error("outbox %s: cannot coarsen %s: %s", self.path,
                              f"rows {group[0]}..{group[-1]}" if group else "data", exc)
                    if group is None:
                        return freed
                    self._scan_from[level] = group[-1] + 1
            if freed >= excess:
                break
        return freed

    def _find_group(self, db: sqlite3.Connection, level: float,
                    tail: tuple[None, str, dict[str, Any]]) -> list[int] | None:
        start = max(self._handed_out + 1, self._scan_from.get(level, 0))

        def rows() -> Any:
            after = start - 1
            while True:
                batch = db.execute(
                    "SELECT id, stream, payload FROM messages WHERE id > ? AND "
                    "substr(stream, 1, 5) = 'data/' ORDER BY id LIMIT ?",
                    (after, _SCAN_BATCH)).fetchall()
                for row_id, stream, payload in batch:
                    after = row_id
                    if row_id not in self._claimed:
                        yield row_id, stream, json.loads(payload)
                if len(batch) < _SCAN_BATCH:
                    break
            yield tail

        group, again = coarsen.first_closed_group(rows(), level)
        if again is not None:
            self._scan_from[level] = again
        return group

    def _merge_rows(self, db: sqlite3.Connection, level: float, ids: list[int]) -> int:
        """Replace the rows ``ids`` by one merged row (at the first one's place); bytes freed."""
        marks = ",".join("?" * len(ids))
        found = db.execute(f"SELECT id, stream, payload FROM messages WHERE id IN ({marks}) "
                           "ORDER BY id", ids).fetchall()
        stream = found[0][1]
        bodies = [json.loads(payload) for _, _, payload in found]
        merged = coarsen.merge(bodies, level)
        payload = _encode(merged)
        first_seq, last_seq = coarsen.seq_range(merged)
        first_id = found[0][0]
        db.execute("UPDATE messages SET seq = ?, first_seq = ?, payload = ? WHERE id = ?",
                   (last_seq, first_seq, payload, first_id))
        db.execute(f"DELETE FROM messages WHERE id IN ({','.join('?' * (len(ids) - 1))})",
                   ids[1:])
        self._record_coarsening(db, stream, first_seq, last_seq, merged["coarsened"]["from"],
                                level)
        self._add_counter("coarsened", len(found), db)
        for coarser in coarsen.COARSE_LEVELS:  # the merged row is a candidate one level up
            if coarser > level and coarser in self._scan_from:
                self._scan_from[coarser] = min(self._scan_from[coarser], first_id)
        freed = sum(len(p) for _, _, p in found) - len(payload)
        log.info("outbox %s full: merged %d message(s) of %s (seq %d to %d) into one %gs "
                 "window", self.path, len(found), stream, first_seq, last_seq, level)
        self._freed[0] += freed
        self._freed[1] += freed
        return freed

    @staticmethod
    def _record_coarsening(db: sqlite3.Connection, stream: str, first: int, last: int,
                           windows: int, level: float) -> None:
        """Note a merge for announcement; it extends a pending one that ends right before."""
        db.execute("DELETE FROM coarsenings WHERE stream = ? AND first_seq >= ? AND "
                   "last_seq <= ?", (stream, first, last))  # now part of this merge
        extended = db.execute(
            "UPDATE coarsenings SET last_seq = ?, windows = windows + ?, "
            "messages = messages + 1 WHERE stream = ? AND seconds = ? AND last_seq = ?",
            (last, windows, stream, level, first - 1)).rowcount
        if not extended:
            db.execute("INSERT INTO coarsenings(stream, first_seq, last_seq, windows, seconds) "
                       "VALUES (?, ?, ?, ?, ?)", (stream, first, last, windows, level))

    def _mark_announced(self, db: sqlite3.Connection, announced: Drop | Coarsening,
                        row_id: int) -> None:
        """Tie a drop to its announcement (what grew since it was read stays pending).

        A merge is forgotten once announced: the merged message itself says what it replaced
        (``coarsened``), so a lost announcement leaves nothing unexplained.
        """
        if isinstance(announced, Coarsening):
            db.execute("DELETE FROM coarsenings WHERE id = ? AND stream = ? AND first_seq = ? "
                       "AND last_seq = ?", (announced.id, announced.stream,
                                            announced.first_seq, announced.last_seq))
            return
        drop = announced
        # id, stream and start together: ids of deleted ranges can be reused by new ones
        current = db.execute("SELECT last_seq, count FROM drops WHERE id = ? AND stream = ? "
                             "AND first_seq = ? AND announce_row IS NULL",
                             (drop.id, drop.stream, drop.first_seq)).fetchone()
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
    def _record_drop(db: sqlite3.Connection, stream: str, first: int, last: int) -> None:
        """Record the seqs ``first..last`` of ``stream`` as dropped (one row, or a merged one)."""
        count = last - first + 1
        extended = db.execute(
            "UPDATE drops SET last_seq = ?, count = count + ? WHERE stream = ? AND "
            "announce_row IS NULL AND last_seq = ?", (last, count, stream, first - 1)).rowcount
        if not extended:
            db.execute("INSERT INTO drops(stream, first_seq, last_seq, count) "
                       "VALUES (?, ?, ?, ?)", (stream, first, last, count))

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

    async def unannounced_coarsenings(self, *, due: bool = False) -> list[Coarsening]:
        """Merges of data windows that no stored event reports yet.

        ``due=True``: only once data are below :data:`ANNOUNCE_BELOW` of their bound again;
        while the outbox is full, contiguous merges keep coalescing instead.
        """
        return await self._run(self._unannounced_coarsenings_sync, due)

    def _unannounced_coarsenings_sync(self, due: bool = False) -> list[Coarsening]:
        if due and self._data_bytes > ANNOUNCE_BELOW * self.data_bytes_max:
            return []
        rows = self._require_db().execute(
            "SELECT id, stream, first_seq, last_seq, windows, seconds, messages "
            "FROM coarsenings ORDER BY id")
        return [Coarsening(*row) for row in rows]

    async def announce_pending(self, event: Callable[..., Released], *, rounds: int = 3
                               ) -> None:
        """Store an event for every pending drop and merge, as :meth:`put` recorded them.

        ``event(kind, message, *, sensor, details)`` makes the gated event (the privacy
        gate's ``release_event``, with time and clock filled in). Call it after each put,
        serialised with other puts: an announcement can itself push out rows, which are then
        announced in the next round. Drops are announced at once; merges once the outbox is
        below its bound again (each merged message says what it replaces in ``coarsened``, so
        the event is a summary and must not crowd out the events' reserve during an outage).
        """
        for _ in range(rounds):
            drops = await self.unannounced_drops()
            merges = await self.unannounced_coarsenings(due=True)
            for drop in drops:
                await self.put(event(
                    "outbox_dropped", f"outbox full ({self.max_bytes} bytes): dropped "
                    f"{drop.count} oldest message(s) of {drop.stream}, seq {drop.first_seq} "
                    f"to {drop.last_seq}", sensor=_sensor_of(drop.stream),
                    details={"stream": drop.stream, "first_seq": drop.first_seq,
                             "last_seq": drop.last_seq, "count": drop.count}),
                    announces=(drop,))
            for merge in merges:
                await self.put(event(
                    "outbox_coarsened", f"outbox full ({self.max_bytes} bytes): merged "
                    f"{merge.windows} window(s) of {merge.stream}, seq {merge.first_seq} to "
                    f"{merge.last_seq}, into {merge.messages} window(s) of {merge.seconds:g}s",
                    sensor=_sensor_of(merge.stream),
                    details={"stream": merge.stream, "first_seq": merge.first_seq,
                             "last_seq": merge.last_seq, "windows": merge.windows,
                             "messages": merge.messages, "seconds": merge.seconds}),
                    announces=(merge,))
            if not drops and not merges:
                break

    async def peek(self, after_id: int = 0, limit: int = 20, *, claim: bool = False
                   ) -> list[Row]:
        """Oldest stored rows with ``id > after_id``.

        ``claim=True`` (the publisher, about to send them): the rows are kept even when the
        byte bound is reached, until :meth:`ack` (the bound may be exceeded by these rows).
        """
        return await self._run(self._peek_sync, after_id, limit, claim)

    def _peek_sync(self, after_id: int, limit: int, claim: bool) -> list[Row]:
        db = self._require_db()
        rows = [Row(*r) for r in db.execute(
            "SELECT id, stream, seq, topic, payload FROM messages WHERE id > ? ORDER BY id "
            "LIMIT ?", (after_id, limit))]
        if claim and rows:
            self._claimed.update(row.id for row in rows)
            highest = rows[-1].id
            if highest > self._handed_out:
                # recorded before the rows leave: a row that may have reached the broker is
                # never merged, even after a restart (its seq must keep its window)
                self._handed_out = highest
                try:
                    db.execute("INSERT INTO meta(name, value) VALUES ('handed_out', ?) "
                               "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                               (str(highest),))
                except sqlite3.OperationalError as exc:
                    log.error("cannot record sent rows in %s: %s", self.path, exc)
        return rows

    async def ack(self, row_id: int) -> None:
        """The broker acknowledged this row: delete it."""
        await self._run(self._ack_sync, row_id)

    def _ack_sync(self, row_id: int) -> None:
        db = self._require_db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute("DELETE FROM messages WHERE id = ? RETURNING LENGTH(payload), "
                             "stream", (row_id,))
            found = cur.fetchone()
            db.execute("DELETE FROM drops WHERE announce_row = ?", (row_id,))
        self._claimed.discard(row_id)
        if found:
            self._bytes -= found[0]
            if found[1].startswith(_DATA):
                self._data_bytes -= found[0]

    async def stats(self) -> OutboxStats:
        """Current figures for the health message."""
        return await self._run(self._stats_sync)

    def _stats_sync(self) -> OutboxStats:
        db = self._require_db()
        depth, oldest = db.execute("SELECT COUNT(*), MIN(created) FROM messages").fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        return OutboxStats(depth=depth, bytes=self._bytes, max_bytes=self.max_bytes,
                           dropped=counters.get("dropped", 0),
                           oldest_age_s=None if oldest is None else max(0.0, time.time() - oldest),
                           spilled=len(self._spill), storage_error=self._storage_error,
                           coarsened=counters.get("coarsened", 0),
                           priority_bytes=self.priority_bytes)

    async def close(self) -> None:
        """Close the database and stop the worker thread; idempotent."""
        if self._db is not None:
            await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _sensor_of(stream: str) -> str | None:
    return stream.removeprefix(_DATA) if _is_data(stream) else None
