"""Benchmarks of the hot paths (not a test). Run: .venv/bin/python bench/pipeline.py

Prints figures and the headroom against what a gateway needs:
- windows + privacy gate: readings per second (a busy gateway needs ~100/s);
- outbox: durable puts per second with synchronous=FULL, and put+ack cycles;
- end to end: outbox rows published and PUBACKed per second through a local mosquitto
  (a backlog of a day of 1-minute windows for 4 sensors is 5,760 rows);
- event loop: worst and 99th-percentile lag of a 10 ms timer while the agent runs four
  simulated sensors at 10 samples/s each against mosquitto (the loop must never block for more
  than a few milliseconds: SQLite and paho work happen in their own threads);
- memory: peak RSS of this process after the runs.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.driver import QuantityClass, Reading, StatKind, StreamSpec
from edgeagent.mqtt import MqttPublisher
from edgeagent.outbox import Outbox
from edgeagent.privacy import PrivacyConfig, PrivacyGate
from edgeagent.topics import Topics
from edgeagent.windows import SensorWindows

NEED_READINGS_PER_S = 100
BACKLOG_DAY = 4 * 24 * 60


def bench_windows(n: int = 200_000) -> float:
    clock = FakeClock(start_wall=1_767_225_600.0)
    streams = [StreamSpec("pm25", "ug/m3", QuantityClass.PARTICULATE),
               StreamSpec("laeq", "dB", QuantityClass.NOISE, StatKind.ENERGETIC),
               StreamSpec("people", "count", QuantityClass.PEOPLE_COUNT, StatKind.COUNTER)]
    windows = SensorWindows("s", streams, 300, 0.1, clock)
    gate = PrivacyGate(PrivacyConfig(), "gw")
    meta = {"driver": "bench", "model": "bench", "simulated": True}
    started = time.perf_counter()
    for i in range(n):
        now = clock.monotonic()
        for closed in windows.add([Reading("pm25", 8.0 + i % 7, now),
                                   Reading("laeq", 50.0 + i % 11, now),
                                   Reading("people", float(i % 2), now)]):
            gate.release_window(closed, meta)
        clock.advance(0.1)
    return n * 3 / (time.perf_counter() - started)


async def bench_outbox(folder: Path, n: int = 500) -> tuple[float, float]:
    outbox = await Outbox.open(folder / "bench.sqlite3", 64 << 20)
    gate = PrivacyGate(PrivacyConfig(), "gw")
    started = time.perf_counter()
    for i in range(n):
        await outbox.put(gate.release_event("sensor_fault", "x" * 200, time=float(i),
                                            clock="synced"))
    put_rate = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for row in await outbox.peek(0, n):
        await outbox.ack(row.id)
    ack_rate = n / (time.perf_counter() - started)
    await outbox.close()
    return put_rate, ack_rate


async def bench_publish(folder: Path, n: int = BACKLOG_DAY) -> float:
    from edgeagent.broker import Mosquitto

    with Mosquitto(workdir=folder / "broker") as broker:
        outbox = await Outbox.open(folder / "backlog.sqlite3", 256 << 20)
        gate = PrivacyGate(PrivacyConfig(), "gw")
        for i in range(n):
            await outbox.put(gate.release_event("sensor_fault", "backlog " * 40,
                                                time=float(i), clock="synced"))
        config = validate_config({"gateway": {"id": "gw"}, "mqtt": {
            "host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
            "sensors": [{"id": "s", "driver": "simulated", "quantities": ["pm"]}]})
        publisher = MqttPublisher(config.mqtt.model_copy(update={"client_id": "bench"}),
                                  Topics("edgeagent/v1", "gw"), outbox,
                                  manifest=lambda: json.dumps({}).encode())
        started = time.perf_counter()
        await publisher.start()
        pump = asyncio.create_task(publisher.run())
        drained = await publisher.drained(120)
        elapsed = time.perf_counter() - started
        await publisher.stop()
        pump.cancel()
        await outbox.close()
        if not drained:
            raise SystemExit("backlog did not drain within 120 s")
        return n / elapsed


async def bench_loop_lag(folder: Path, seconds: float = 8.0) -> tuple[float, float]:
    from edgeagent.broker import Mosquitto
    from edgeagent.supervisor import Agent

    with Mosquitto(workdir=folder / "lag-broker") as broker:
        sensor = {"driver": "simulated", "window": "1s", "interval": "100ms"}
        config = validate_config({
            "gateway": {"id": "lag"}, "state_dir": str(folder / "lag-state"),
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
            "privacy": {"preset": "demo"}, "health": {"interval": "1s"},
            "sensors": [{**sensor, "id": f"s{i}"} for i in range(4)]})
        agent, stop = Agent(config), asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        lags = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)
        stop.set()
        await task
    lags.sort()
    return lags[-1] * 1000, lags[int(len(lags) * 0.99)] * 1000


def main() -> None:
    rate = bench_windows()
    print(f"windows+gate : {rate:12,.0f} readings/s  ({rate / NEED_READINGS_PER_S:,.0f}x the "
          f"{NEED_READINGS_PER_S}/s a busy gateway needs)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        put, ack = asyncio.run(bench_outbox(folder))
        print(f"outbox put   : {put:12,.0f} msgs/s durable (synchronous=FULL); "
              f"ack {ack:,.0f}/s")
        if "--no-broker" not in sys.argv:
            published = asyncio.run(bench_publish(folder))
            print(f"publish+ack  : {published:12,.0f} msgs/s through mosquitto; a day's backlog "
                  f"of {BACKLOG_DAY:,} windows drains in {BACKLOG_DAY / published:.1f} s")
            worst, p99 = asyncio.run(bench_loop_lag(folder))
            print(f"loop lag     : {worst:12.1f} ms worst, {p99:.1f} ms p99 (4 sensors at 10/s, "
                  "windows, outbox and MQTT running)")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS     : {rss_mb:12.1f} MiB (this benchmark process)")


if __name__ == "__main__":
    main()
