import asyncio
import json

from edgeagent.outbox import Outbox
from edgeagent.privacy import PrivacyConfig, PrivacyGate

GATE = PrivacyGate(PrivacyConfig(), "gw")


def event(n: int, pad: int = 0):
    return GATE.release_event("sensor_fault", "x" * pad, time=float(n), clock="synced",
                              details={"n": n})


def run(coro):
    return asyncio.run(coro)


def test_seq_is_per_stream_and_survives_reopen(tmp_path):
    path = tmp_path / "outbox.sqlite3"

    async def first():
        outbox = await Outbox.open(path, 1 << 20)
        seqs = [await outbox.put(event(i)) for i in range(3)]
        await outbox.close()
        return seqs

    async def second():
        outbox = await Outbox.open(path, 1 << 20)
        rows = await outbox.peek(0, 100)
        seq = await outbox.put(event(9))
        for row in rows:
            await outbox.ack(row.id)
        after = await outbox.peek(0, 100)
        await outbox.close()
        return rows, seq, after

    assert run(first()) == [0, 1, 2]
    rows, seq, after = run(second())
    assert [r.seq for r in rows] == [0, 1, 2]  # unsent rows are still there, oldest first
    assert [json.loads(r.payload)["details"]["n"] for r in rows] == [0, 1, 2]
    assert seq == 3
    assert [r.seq for r in after] == [3]

    async def third():
        outbox = await Outbox.open(path, 1 << 20)
        try:
            return await outbox.put(event(10))
        finally:
            await outbox.close()

    assert run(third()) == 4  # seq continues even when the outbox was emptied


def test_peek_after_cursor_and_ack_only_removes_that_row(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", 1 << 20)
        for i in range(5):
            await outbox.put(event(i))
        first_two = await outbox.peek(0, 2)
        rest = await outbox.peek(first_two[-1].id, 10)
        await outbox.ack(first_two[1].id)
        remaining = [r.seq for r in await outbox.peek(0, 10)]
        stats = await outbox.stats()
        await outbox.close()
        return [r.seq for r in first_two], [r.seq for r in rest], remaining, stats

    first_two, rest, remaining, stats = run(scenario())
    assert first_two == [0, 1] and rest == [2, 3, 4]
    assert remaining == [0, 2, 3, 4]
    assert stats.depth == 4 and stats.dropped == 0


def test_bound_drops_oldest_and_counts_it(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", 2000)
        for i in range(20):
            await outbox.put(event(i, pad=200))
        stats = await outbox.stats()
        rows = await outbox.peek(0, 100)
        await outbox.close()
        return stats, rows

    stats, rows = run(scenario())
    assert stats.bytes <= 2000
    assert stats.dropped == 20 - len(rows) > 0
    assert [r.seq for r in rows] == list(range(20 - len(rows), 20))  # newest kept, in order


def test_dropped_count_and_bytes_survive_restart(tmp_path):
    path = tmp_path / "o.sqlite3"

    async def fill():
        outbox = await Outbox.open(path, 1500)
        for i in range(10):
            await outbox.put(event(i, pad=200))
        stats = await outbox.stats()
        await outbox.close()
        return stats

    async def reopen():
        outbox = await Outbox.open(path, 1500)
        stats = await outbox.stats()
        await outbox.close()
        return stats

    before, after = run(fill()), run(reopen())
    assert after.dropped == before.dropped > 0
    assert after.bytes == before.bytes and after.depth == before.depth


def test_full_disk_keeps_messages_in_memory_and_writes_them_later(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", 1 << 30)
        await outbox.put(event(0))
        # make SQLite report SQLITE_FULL ("database or disk is full") like a full SD card
        pages = await outbox._run(lambda: outbox._db.execute("PRAGMA page_count").fetchone()[0])
        await outbox._run(lambda: outbox._db.execute(f"PRAGMA max_page_count = {pages}"))
        held = [await outbox.put(event(i, pad=6000)) for i in (1, 2)]
        full = await outbox.stats()
        await outbox._run(lambda: outbox._db.execute("PRAGMA max_page_count = 1000000"))
        seq = await outbox.put(event(3))
        rows = await outbox.peek(0, 10)
        recovered = await outbox.stats()
        await outbox.close()
        return held, full, seq, rows, recovered

    held, full, seq, rows, recovered = run(scenario())
    assert held == [None, None]
    assert full.spilled == 2 and "disk is full" in full.storage_error
    assert seq == 3
    assert [json.loads(r.payload)["details"]["n"] for r in rows] == [0, 1, 2, 3]
    assert recovered.spilled == 0 and recovered.storage_error is None


def test_unwritable_location_names_the_file(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")

    async def scenario():
        await Outbox.open(blocker / "outbox.sqlite3", 1000)

    try:
        run(scenario())
    except Exception as exc:
        assert "not-a-dir/outbox.sqlite3" in str(exc)
    else:
        raise AssertionError("opening below a file must fail")


def test_dropped_ranges_stay_until_their_announcement_is_acknowledged(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", 2500)
        for i in range(12):
            await outbox.put(event(i, pad=150))
        (drop,) = await outbox.unannounced_drops()
        kept = [r.seq for r in await outbox.peek(0, 100)]
        announcement = event(99)
        await outbox.put(announcement, announces=(drop,))
        after_announce = await outbox.unannounced_drops()
        # the outage goes on: the announcement itself is pushed out -> pending again
        for i in range(12):
            await outbox.put(event(100 + i, pad=150))
        pending = await outbox.unannounced_drops()
        final = await outbox.put(event(200), announces=tuple(pending))
        rows = await outbox.peek(0, 100)
        last = next(r for r in rows if r.seq == final)
        await outbox.ack(last.id)
        remaining = await outbox.unannounced_drops()
        reopened_state = await outbox._run(lambda: outbox._db.execute(
            "SELECT COUNT(*) FROM drops").fetchone()[0])
        await outbox.close()
        return drop, kept, after_announce, pending, remaining, reopened_state

    drop, kept, after_announce, pending, remaining, ledger_rows = run(scenario())
    assert (drop.stream, drop.first_seq, drop.last_seq) == ("events", 0, kept[0] - 1)
    assert drop.count == kept[0]
    assert after_announce == []
    streams = {(d.stream, d.first_seq) for d in pending}
    assert ("events", 0) in streams  # the first range is back, its announcement was lost
    assert remaining == [] and ledger_rows == 0


def test_rows_pushed_out_by_the_announcement_itself_stay_pending(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", 2500)
        for i in range(12):
            await outbox.put(event(i, pad=150))
        (drop,) = await outbox.unannounced_drops()
        # a large announcement: storing it pushes out more of the same stream
        await outbox.put(event(50, pad=900), announces=(drop,))
        pending = await outbox.unannounced_drops()
        await outbox.close()
        return drop, pending

    drop, pending = run(scenario())
    (extension,) = pending
    assert extension.stream == "events"
    assert extension.first_seq == drop.last_seq + 1  # exactly what the announcement missed
    assert extension.count == extension.last_seq - extension.first_seq + 1 > 0


def test_rows_claimed_by_the_publisher_are_never_dropped_for_the_bound(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", 2500)
        for i in range(4):
            await outbox.put(event(i, pad=150))
        claimed = await outbox.peek(0, 2, claim=True)  # handed to the broker, no PUBACK yet
        for i in range(4, 12):
            await outbox.put(event(i, pad=150))
        kept = [r.seq for r in await outbox.peek(0, 100)]
        (drop,) = await outbox.unannounced_drops()
        await outbox.ack(claimed[0].id)
        await outbox.close()
        return [r.seq for r in claimed], kept, drop

    claimed, kept, drop = run(scenario())
    assert claimed == [0, 1] and kept[:2] == [0, 1]  # still there, in order
    assert drop.first_seq == 2  # the drops started after the claimed rows
