"""The supervisor: one task group; outputs start first, then one supervised task per sensor.

A driver that raises is closed, waits a full-jitter backoff and is reopened, until its restart
budget is spent; then it is ``failed`` (health says so) and the others carry on. On stop,
drivers stop first, open windows close as partial and pass the gate, the outbox is flushed
while the broker allows, ``offline`` is published and the agent returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import shutil
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from edgeagent import __version__
from edgeagent.backoff import RestartBudget, backoff_delay
from edgeagent.clock import Clock, SystemClock
from edgeagent.config import AgentConfig
from edgeagent.driver import Driver, DriverContext, DriverError, FrameError, SensorConfig
from edgeagent.mqtt import MqttPublisher
from edgeagent.outbox import Outbox
from edgeagent.privacy import PrivacyGate, Released, rfc3339
from edgeagent.systemd import notify, watchdog_interval
from edgeagent.topics import Topics
from edgeagent.windows import ClosedWindow, SensorWindows

log = logging.getLogger("edgeagent")

LOW_STORAGE_BYTES = 50 * 1024 * 1024
STOP_BUDGET_S = 4.0  # SIGTERM -> exit well within 5 s
_WARN_AFTER_FRAME_ERRORS = 3


class SensorState(StrEnum):
    """Supervisor's view of one sensor."""

    STARTING = "starting"
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    STOPPED = "stopped"


EventSink = Callable[..., Awaitable[None]]


class RunningSensor:
    """Runs one driver: open, read, feed windows; restart with backoff within a budget."""

    def __init__(self, config: SensorConfig, driver_class: type[Driver], clock: Clock,
                 windows: SensorWindows, release: Callable[[list[ClosedWindow]], Awaitable[None]],
                 event: EventSink, *, restart_limit: int = 5, restart_period: float = 300.0,
                 rand: Callable[[], float] = random.random,
                 i2c: Callable[[int], Any] | None = None) -> None:
        self.config = config
        self.driver_class = driver_class
        self.clock = clock
        self.windows = windows
        self.release = release
        self._event = event
        self._budget = RestartBudget(restart_limit, restart_period)
        self._rand = rand
        self._i2c = i2c
        self.log = logging.getLogger(f"edgeagent.sensor.{config.id}")
        self.state = SensorState.STARTING
        self.restarts = 0
        self.readings = 0
        self.frame_errors = 0
        self.last_error: str | None = None
        self._consecutive_frame_errors = 0
        self._attempt = 0

    def health(self) -> dict[str, Any]:
        """Figures for the health message."""
        return {"state": self.state.value, "restarts": self.restarts, "readings": self.readings,
                "frame_errors": self.frame_errors, "last_error": self.last_error}

    async def run(self) -> None:
        """Supervise the driver until cancelled or failed."""
        first = True
        while True:
            context = DriverContext(self.clock, self.log)
            if self._i2c is not None:
                context.i2c = self._i2c
            driver = self.driver_class(self.config, context)
            try:
                await driver.open()
                first = False
                await self._read_loop(driver)
            except asyncio.CancelledError:
                raise
            except DriverError as exc:
                await self._fault(str(exc))
            except Exception as exc:  # a driver bug must not stop the other sensors
                self.log.exception("driver %s crashed", self.config.driver)
                await self._fault(f"driver crashed: {type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await driver.close()
            if first and self.config.startup == "error":
                raise DriverError(f"sensor {self.config.id}: {self.last_error}")
            if (first and self.config.startup == "ignore") or not self._budget.spend(
                    self.clock.monotonic()):
                self.state = SensorState.FAILED
                self.log.error("sensor %s failed; no more restarts: %s", self.config.id,
                               self.last_error)
                await self._event("sensor_failed", f"sensor {self.config.id} stopped after "
                                  f"repeated faults: {self.last_error}", sensor=self.config.id)
                return
            self.restarts += 1
            delay = backoff_delay(self._attempt, cap=60.0, rand=self._rand)
            self._attempt += 1
            await self.clock.sleep(delay)

    async def _read_loop(self, driver: Driver) -> None:
        while True:
            try:
                readings = await driver.read()
            except FrameError as exc:
                self.frame_errors += 1
                self._consecutive_frame_errors += 1
                self.windows.count_error()
                self.log.debug("bad frame: %s", exc)
                if self._consecutive_frame_errors == _WARN_AFTER_FRAME_ERRORS:
                    self.state = SensorState.WARNING
                    self.last_error = str(exc)
                    self.log.warning("%d bad frames in a row: %s",
                                     _WARN_AFTER_FRAME_ERRORS, exc)
                continue
            if readings is None:
                await asyncio.sleep(0)
                continue
            self._consecutive_frame_errors = 0
            self.readings += 1
            if self.state is not SensorState.OK:
                recovered = self.state is SensorState.WARNING or self.restarts > 0
                self.state = SensorState.OK
                if recovered:
                    self.log.info("sensor %s recovered", self.config.id)
                    await self._event("sensor_recovered", f"sensor {self.config.id} delivers "
                                      "data again", sensor=self.config.id)
                self._attempt = 0  # backoff starts small again after a good reading
            await self.release(self.windows.add(readings))

    async def _fault(self, message: str) -> None:
        repeat = message == self.last_error
        self.last_error = message
        self.state = SensorState.WARNING
        (self.log.debug if repeat else self.log.warning)("sensor %s: %s", self.config.id,
                                                         message)
        if not repeat:
            await self._event("sensor_fault", message, sensor=self.config.id)


class Agent:
    """The whole pipeline for one config: sensors → windows → gate → outbox → MQTT."""

    def __init__(self, config: AgentConfig, *, clock: Clock | None = None,
                 password: str | None = None, i2c: Callable[[int], Any] | None = None) -> None:
        self.config = config
        self.i2c = i2c  # bus factory for I2C drivers; None = the real /dev/i2c-N
        self.clock = clock or SystemClock()
        self.password = password
        self.topics = Topics(config.mqtt.topic_prefix, config.gateway.id)
        self.gate = PrivacyGate(config.privacy, config.gateway.id)
        self.outbox: Outbox | None = None
        self.publisher: MqttPublisher | None = None
        self.sensors: list[RunningSensor] = []
        self._started_mono = self.clock.monotonic()
        self._heartbeat = 0
        self._store_lock = asyncio.Lock()
        #: Why the agent stopped by itself (a sensor with ``startup: error``), else None.
        self.fatal: str | None = None

    # -- pipeline steps -------------------------------------------------------------------
    async def _release(self, meta: dict[str, Any], closed: list[ClosedWindow]) -> None:
        for window in closed:
            await self._store(self.gate.release_window(window, meta))

    async def event(self, kind: str, message: str, *, sensor: str | None = None,
                    **details: Any) -> None:
        """Store an operational event for the ``events`` topic."""
        await self._store(self._event(kind, message, sensor=sensor, details=details))

    def _event(self, kind: str, message: str, *, sensor: str | None,
               details: dict[str, Any]) -> Released:
        return self.gate.release_event(kind, message, time=self.clock.time(),
                                       clock=self.clock.quality().value, sensor=sensor,
                                       details=details)

    async def _store(self, item: Released) -> None:
        """Put one gated message; announce every seq range the byte bound pushed out.

        Serialised: a drop recorded between reading the ledger and storing its announcement
        would otherwise be marked announced without being in the text.
        """
        assert self.outbox is not None
        async with self._store_lock:
            await self._store_locked(item)

    async def _store_locked(self, item: Released) -> None:
        assert self.outbox is not None
        await self.outbox.put(item)
        for _ in range(3):  # an announcement can itself push out rows: announce those too
            drops = await self.outbox.unannounced_drops()
            for drop in drops:
                sensor = drop.stream.removeprefix("data/") if drop.stream.startswith(
                    "data/") else None
                await self.outbox.put(self._event(
                    "outbox_dropped", f"outbox full ({self.config.outbox.max_bytes} bytes): "
                    f"dropped {drop.count} oldest message(s) of {drop.stream}, seq "
                    f"{drop.first_seq} to {drop.last_seq}", sensor=sensor,
                    details={"stream": drop.stream, "first_seq": drop.first_seq,
                             "last_seq": drop.last_seq, "count": drop.count}),
                    announces=(drop,))
            if not drops:
                break

    def manifest(self) -> dict[str, Any]:
        """The transparency manifest: what is measured and what leaves the device."""
        gw, privacy = self.config.gateway, self.config.privacy
        classes = {}
        sensors = []
        for running in self.sensors:
            streams = []
            for spec in running.windows.streams.values():
                stats, k = self.gate.allowed(spec)
                policy = privacy.policy_for(spec.quantity)
                classes[spec.quantity.value] = {"min_window_s": policy.min_window,
                                                "statistics": list(policy.statistics),
                                                "k": policy.k}
                streams.append({"name": spec.name, "description": spec.description,
                                "unit": spec.unit,
                                "quantity": spec.quantity.value, "kind": spec.kind.value,
                                "statistics": stats, "k": k})
            sensors.append({"id": running.config.id, "driver": running.config.driver,
                            "model": running.driver_class.model,
                            "simulated": running.driver_class.simulated,
                            "window_s": running.config.window, "streams": streams})
        return {"gateway": gw.id, "version": __version__,
                "config_hash": self.config.fingerprint(), "published": rfc3339(self.clock.time()),
                "site": gw.site.model_dump() if gw.site else None,
                "owner": gw.owner.model_dump() if gw.owner else None, "purpose": gw.purpose,
                "contract": {"format": self.config.mqtt.format, "version": 1,
                             "topic_root": self.topics.root},
                "privacy": {"preset": privacy.preset, "raw_data_leaves_device": False,
                            "personal_data": False, "dp": None, "classes": classes},
                "sensors": sensors}

    async def health(self) -> dict[str, Any]:
        """The periodic health report."""
        assert self.outbox is not None and self.publisher is not None
        stats = await self.outbox.stats()
        try:
            free = shutil.disk_usage(self.config.state_dir).free
        except OSError:
            free = 0
        return {"gateway": self.config.gateway.id, "time": rfc3339(self.clock.time()),
                "version": __version__, "interval_s": self.config.health.interval,
                "uptime_s": round(self.clock.monotonic() - self._started_mono, 1),
                "clock": self.clock.quality().value,
                "outbox": {"depth": stats.depth, "bytes": stats.bytes,
                           "max_bytes": stats.max_bytes, "dropped": stats.dropped,
                           "coarsened": 0, "oldest_age_s": None if stats.oldest_age_s is None
                           else round(stats.oldest_age_s, 1)},
                "mqtt": {"connected": self.publisher.connected,
                         "reconnects": self.publisher.reconnects},
                "sensors": {s.config.id: s.health() for s in self.sensors},
                "storage": {"free_bytes": free, "low": free < LOW_STORAGE_BYTES
                            or stats.storage_error is not None}}

    # -- background loops -----------------------------------------------------------------
    async def _tick_windows(self) -> None:
        """Close due windows of every sensor, also when a sensor is silent."""
        while True:
            deadline = min(s.windows.next_deadline for s in self.sensors)
            await self.clock.sleep(min(1.0, deadline - self.clock.monotonic()))
            for running in self.sensors:
                try:
                    await running.release(running.windows.close_due())
                except Exception:  # keep ticking: the other sensors' windows still close
                    log.exception("sensor %s: closing windows failed", running.config.id)
            self._heartbeat += 1

    async def _report_health(self) -> None:
        assert self.publisher is not None
        while True:
            await self.clock.sleep(self.config.health.interval)
            await self.publisher.publish_now(self.topics.health,
                                             json.dumps(await self.health()).encode())

    async def _watchdog(self, interval: float) -> None:
        """Feed systemd's watchdog only while the window ticker (the pipeline) advances."""
        last = -1
        while True:
            await asyncio.sleep(interval)
            if self._heartbeat != last:
                notify("WATCHDOG=1")
            last = self._heartbeat

    # -- lifecycle ------------------------------------------------------------------------
    def _build_sensors(self) -> None:
        for sensor in self.config.sensors:
            cls = self.config.driver_class(sensor)
            windows = SensorWindows(sensor.id, cls.streams(sensor), sensor.window,
                                    cls.sample_interval(sensor), self.clock)
            meta = {"driver": sensor.driver, "model": cls.model, "simulated": cls.simulated}
            self.sensors.append(RunningSensor(sensor, cls, self.clock, windows,
                                              functools.partial(self._release, meta), self.event,
                                              i2c=self.i2c))
            log.info("sensor %s: %s", sensor.id, json.dumps(cls(sensor, DriverContext(
                self.clock)).describe(), default=str))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        cfg = self.config
        self.outbox = await Outbox.open(cfg.state_dir / "outbox.sqlite3", cfg.outbox.max_bytes)
        try:
            self._build_sensors()
            settings = cfg.mqtt.model_copy(update={"client_id": cfg.mqtt.client_id
                                                   or cfg.gateway.id})
            manifest = json.dumps(self.manifest()).encode()
            self.publisher = MqttPublisher(settings, self.topics, self.outbox,
                                           manifest=lambda: manifest, password=self.password)
            await self.publisher.start()
            async with asyncio.TaskGroup() as group:
                await self._run_tasks(group, stop)
        finally:
            await self.outbox.close()

    async def _supervise(self, running: RunningSensor, stop: asyncio.Event) -> None:
        """Run one sensor; a sensor with ``startup: error`` that cannot start stops the agent."""
        try:
            await running.run()
        except DriverError as exc:
            self.fatal = f"{exc} (startup: error)"
            log.error("stopping the agent: %s", self.fatal)
            stop.set()

    async def _run_tasks(self, group: asyncio.TaskGroup, stop: asyncio.Event) -> None:
        assert self.publisher is not None
        gw = self.config.gateway.id
        pump = group.create_task(self.publisher.run(), name=f"edgeagent[{gw}].publisher")
        await self.event("agent_started", f"edgeagent {__version__} started with "
                         f"{len(self.sensors)} sensor(s)")
        workers = [group.create_task(self._supervise(s, stop), name=f"edgeagent["
                                     f"{s.config.driver}:{s.config.id}].read")
                   for s in self.sensors]
        workers.append(group.create_task(self._tick_windows(), name=f"edgeagent[{gw}].windows"))
        workers.append(group.create_task(self._report_health(), name=f"edgeagent[{gw}].health"))
        interval = watchdog_interval()
        if interval:
            workers.append(group.create_task(self._watchdog(interval), name="edgeagent.watchdog"))
        notify("READY=1")
        log.info("running: %d sensor(s), publishing to %s:%s under %s", len(self.sensors),
                 self.config.mqtt.host, self.config.mqtt.port, self.topics.root)
        await stop.wait()
        notify("STOPPING=1")
        log.info("stopping")
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for running in self.sensors:
            partial = running.windows.close_partial()
            await running.release([partial] if partial else [])
            running.state = SensorState.STOPPED
        await self.event("agent_stopping", "edgeagent is shutting down; open windows were "
                         "closed as partial")
        flushed = await self.publisher.drained(STOP_BUDGET_S / 2)
        if not flushed:
            log.warning("broker unreachable or slow: unsent data stay in the outbox for the "
                        "next start")
        await self.publisher.stop(STOP_BUDGET_S / 4)
        pump.cancel()
