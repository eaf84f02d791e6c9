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
import math
import random
import shutil
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgeagent import __version__
from edgeagent.backoff import RestartBudget, backoff_delay
from edgeagent.clock import Clock, SystemClock
from edgeagent.config import AgentConfig
from edgeagent.dp import DpBudget
from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Reading,
    SensorConfig,
)
from edgeagent.encoders import Encoder
from edgeagent.humidity import make_correction
from edgeagent.i2c import open_smbus, reset_bus
from edgeagent.mqtt import MqttPublisher
from edgeagent.outbox import Outbox
from edgeagent.power import PowerSwitch
from edgeagent.privacy import PrivacyGate, Released, decimals, rfc3339
from edgeagent.systemd import notify, watchdog_interval
from edgeagent.telemetry import Telemetry, alerts
from edgeagent.topics import Topics
from edgeagent.windows import ClosedWindow, SensorWindows

log = logging.getLogger("edgeagent")

LOW_STORAGE_BYTES = 50 * 1024 * 1024
LOOP_LAG_PROBE_S = 0.5  # real seconds between event-loop lag probes
HOME_ASSISTANT_STATE = "homeassistant-manifest.json"  # the manifest of the last discovery
STATUS_LED_REFRESH_S = 5.0  # how often the status LED's blink code follows the health alerts
STOP_BUDGET_S = 4.0  # SIGTERM -> exit well within 5 s
_WARN_AFTER_FRAME_ERRORS = 3


class SensorState(StrEnum):
    """Supervisor's view of one sensor."""

    STARTING = "starting"
    OK = "ok"
    WARNING = "warning"
    SLEEPING = "sleeping"
    FAILED = "failed"
    STOPPED = "stopped"


class RecoveryStep(StrEnum):
    """Rungs of the recovery ladder, from cheap to drastic (counted in health, each an event)."""

    RESYNC = "resync"  # in the driver: bad frames skipped until the next valid one
    REINIT = "reinit"  # close and open again: the sensor's own start-up commands
    BUS_RESET = "bus_reset"  # I2C: fresh bus handle and the general-call reset
    POWER_CYCLE = "power_cycle"  # supply off and on through the configured GPIO switch


#: The step taken before retry number n (1-based) after consecutive failures; later: reinit.
LADDER = (RecoveryStep.REINIT, RecoveryStep.REINIT, RecoveryStep.BUS_RESET,
          RecoveryStep.POWER_CYCLE)
#: A failed sensor is probed this often with the strongest step it has (replugged → back).
FAILED_PROBE_S = 600.0

EventSink = Callable[..., Awaitable[None]]
#: Latest relative humidity per sensor id: (value %, monotonic time), shared by the agent.
HumidityBoard = dict[str, tuple[float, float]]
HUMIDITY_STREAM = "relativeHumidity"


class RunningSensor:
    """Runs one driver: open, warm up, read, feed windows; climb the recovery ladder on faults.

    A fault closes the driver; the next attempt, after a full-jitter backoff, first takes a
    step of :data:`LADDER` (steps the sensor lacks fall back to reinit). When the restart budget
    is spent the sensor is ``failed`` and probed every ``failed_probe`` seconds (None: never).
    With a duty cycle the driver is closed (sensor asleep) between measuring periods.
    """

    def __init__(self, config: SensorConfig, driver_class: type[Driver], clock: Clock,
                 windows: SensorWindows, release: Callable[[list[ClosedWindow]], Awaitable[None]],
                 event: EventSink, *, restart_limit: int = 5, restart_period: float = 300.0,
                 rand: Callable[[], float] = random.random,
                 i2c: Callable[[int], Any] | None = None,
                 failed_probe: float | None = FAILED_PROBE_S,
                 humidity: HumidityBoard | None = None,
                 state_dir: Path | None = None) -> None:
        self.config = config
        self.driver_class = driver_class
        self.clock = clock
        self.windows = windows
        self.release = release
        self._event = event
        self._budget = RestartBudget(restart_limit, restart_period)
        self._rand = rand
        self._i2c = i2c
        self._failed_probe = failed_probe
        self._state_dir = state_dir
        self._board = humidity if humidity is not None else {}
        self._link = getattr(config, "humidity", None)
        self.log = logging.getLogger(f"edgeagent.sensor.{config.id}")
        self.state = SensorState.STARTING
        self.restarts = 0
        self.readings = 0
        self.frame_errors = 0
        self.warmup_discarded = 0
        self.cycles = 0
        self.recovery = {step.value: 0 for step in RecoveryStep}
        self.last_error: str | None = None
        self._consecutive_frame_errors = 0
        self._failures = 0  # consecutive failed attempts; 0 after a good reading
        self._cycle_start = 0.0  # when the current measuring period began (duty cycle)
        self._driver: Driver | None = None  # the open (or last) driver, for its health figures
        self._power = (PowerSwitch(config.power, clock, config.id)
                       if config.power is not None else None)

    def health(self) -> dict[str, Any]:
        """Figures for the health message."""
        return {"state": self.state.value, "restarts": self.restarts, "readings": self.readings,
                "frame_errors": self.frame_errors, "last_error": self.last_error,
                "warmup_discarded": self.warmup_discarded, "recovery": dict(self.recovery),
                "duty_cycles": self.cycles,
                "power": None if self._power is None else {"gpio": self._power.config.gpio,
                                                           "on": self._power.is_on},
                "driver": self._driver_health()}

    def _driver_health(self) -> dict[str, Any]:
        if self._driver is None:
            return {}
        try:
            return dict(self._driver.health())
        except Exception as exc:  # a driver bug must not break the health report
            self.log.warning("driver %s health failed: %s", self.config.driver, exc)
            return {}

    def _steps(self) -> set[RecoveryStep]:
        available = {RecoveryStep.REINIT}
        if self.driver_class.transport == "i2c" and getattr(self.config, "bus", None) is not None:
            available.add(RecoveryStep.BUS_RESET)
        if self._power is not None:
            available.add(RecoveryStep.POWER_CYCLE)
        return available

    async def run(self) -> None:
        """Supervise the driver until cancelled (or failed, without probing)."""
        try:
            await self._power_on()
            await self._supervise()
        finally:
            if self._power is not None:
                self._power.close()

    async def _power_on(self) -> None:
        if self._power is None:
            return
        try:
            self._power.open()
        except DriverError as exc:
            self.log.warning("%s; the recovery ladder has no power cycle", exc)
            await self._event("sensor_fault", str(exc), sensor=self.config.id)
            self._power = None
            return
        await self.clock.sleep(self._power.config.boot_time)  # it may just have been off

    async def _supervise(self) -> None:
        first = True
        while True:
            context = DriverContext(self.clock, self.log, state_dir=self._state_dir)
            if self._i2c is not None:
                context.i2c = self._i2c
            driver = self.driver_class(self.config, context)
            self._driver = driver
            asleep = hopeless = False
            try:
                await driver.open()
                first = False
                asleep = await self._read_loop(driver)
            except asyncio.CancelledError:
                raise
            except DriverError as exc:
                hopeless = not exc.retryable  # e.g. another chip model: retrying cannot help
                await self._fault(str(exc))
            except Exception as exc:  # a driver bug must not stop the other sensors
                self.log.exception("driver %s crashed", self.config.driver)
                await self._fault(f"driver crashed: {type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await driver.close()
            if asleep:
                await self._sleep_between_measurements()
                continue
            if first and self.config.startup == "error":
                raise DriverError(f"sensor {self.config.id}: {self.last_error}")
            self._failures += 1
            if self.state is not SensorState.FAILED and (
                    hopeless or (first and self.config.startup == "ignore")
                    or not self._budget.spend(self.clock.monotonic())):
                await self._give_up()
            if self.state is SensorState.FAILED:
                if self._failed_probe is None:
                    return
                await self.clock.sleep(self._failed_probe)
                step = max(self._steps(), key=list(RecoveryStep).index)
            else:
                self.restarts += 1
                await self.clock.sleep(backoff_delay(self._failures - 1, cap=60.0,
                                                     rand=self._rand))
                step = LADDER[self._failures - 1] if self._failures <= len(LADDER) else (
                    RecoveryStep.REINIT)
                if step not in self._steps():
                    step = RecoveryStep.REINIT
            await self._recover(step)

    async def _give_up(self) -> None:
        self.state = SensorState.FAILED
        probing = (f"; probing every {self._failed_probe:g}s" if self._failed_probe
                   else "")
        self.log.error("sensor %s failed; no more restarts%s: %s", self.config.id, probing,
                       self.last_error)
        await self._event("sensor_failed", f"sensor {self.config.id} stopped after repeated "
                          f"faults: {self.last_error}", sensor=self.config.id,
                          probe_interval_s=self._failed_probe)

    async def _recover(self, step: RecoveryStep) -> None:
        """Take one ladder step before the next open; reinit is the open itself."""
        self.recovery[step.value] += 1
        detail = {RecoveryStep.REINIT: "re-initialising the sensor",
                  RecoveryStep.BUS_RESET: "resetting the I2C bus",
                  RecoveryStep.POWER_CYCLE: "power-cycling the sensor"}[step]
        try:
            if step is RecoveryStep.BUS_RESET:
                detail = await reset_bus(self.config.bus,  # type: ignore[attr-defined]
                                         self._i2c or open_smbus)
            elif step is RecoveryStep.POWER_CYCLE:
                assert self._power is not None
                await self._power.cycle()
                detail = f"{self._power.where} switched off for " \
                         f"{self._power.config.off_time:g}s and on again"
        except DriverError as exc:
            detail = f"{step.value} failed: {exc}"
        self.log.info("sensor %s: recovery step %s (attempt %d): %s", self.config.id,
                      step.value, self._failures, detail)
        if self.state is not SensorState.FAILED:  # a failed sensor's probes are only counted
            await self._event("sensor_recovery", f"sensor {self.config.id}: {detail}",
                              sensor=self.config.id, step=step.value, attempt=self._failures)

    async def _sleep_between_measurements(self) -> None:
        duty = self.config.duty_cycle  # type: ignore[attr-defined]
        self.cycles += 1
        self.state = SensorState.SLEEPING
        await self.clock.sleep(max(0.0, self._cycle_start + duty.period - self.clock.monotonic()))

    async def _read_loop(self, driver: Driver) -> bool:
        """Read until a fault (raises) or the end of a duty cycle's measuring time (True)."""
        opened = self.clock.monotonic()
        self._cycle_start = opened
        warm_until = opened + self.config.warmup
        duty = getattr(self.config, "duty_cycle", None)
        awake_until = opened + duty.measure if duty is not None else math.inf
        if self.state is SensorState.SLEEPING:
            self.state = SensorState.OK
        while True:
            try:
                readings = await driver.read()
            except FrameError as exc:
                await self._bad_frame(exc)
                continue
            if readings is None:
                await asyncio.sleep(0)
            elif readings and readings[0].t_monotonic < warm_until:
                self.warmup_discarded += 1
            else:
                await self._good(readings)
            if self.clock.monotonic() >= awake_until:
                return True

    async def _bad_frame(self, exc: FrameError) -> None:
        self.frame_errors += 1
        self.recovery[RecoveryStep.RESYNC.value] += 1
        self._consecutive_frame_errors += 1
        self.windows.count_error()
        self.log.debug("bad frame: %s", exc)
        if self._consecutive_frame_errors == _WARN_AFTER_FRAME_ERRORS:
            self.state = SensorState.WARNING
            self.last_error = str(exc)
            self.log.warning("%d bad frames in a row: %s", _WARN_AFTER_FRAME_ERRORS, exc)
            await self._event("sensor_recovery", f"sensor {self.config.id}: "
                              f"{_WARN_AFTER_FRAME_ERRORS} bad frames in a row ({exc}); "
                              "resynchronising on the next valid frame",
                              sensor=self.config.id, step=RecoveryStep.RESYNC.value,
                              attempt=_WARN_AFTER_FRAME_ERRORS)

    async def _good(self, readings: list[Reading]) -> None:
        self._consecutive_frame_errors = 0
        self._failures = 0
        self.readings += 1
        if self.state is not SensorState.OK:
            recovered = self.state in (SensorState.WARNING, SensorState.FAILED) or (
                self.restarts > 0)
            self.state = SensorState.OK
            if recovered:
                self.log.info("sensor %s recovered", self.config.id)
                await self._event("sensor_recovered", f"sensor {self.config.id} delivers "
                                  "data again", sensor=self.config.id)
        for reading in readings:
            if reading.stream == HUMIDITY_STREAM:
                self._board[self.config.id] = (reading.value, reading.t_monotonic)
        await self.release(self.windows.add(readings, humidity=self._humidity(readings)))

    def _humidity(self, readings: list[Reading]) -> float | None:
        """The RH that goes with this sample: the sensor's own, or a fresh one of its source."""
        link = self._link
        if link is None:
            return None
        source = link.source or self.config.id
        latest = self._board.get(source)
        if latest is None or readings[0].t_monotonic - latest[1] > link.max_age:
            return None
        return latest[0]

    async def _fault(self, message: str) -> None:
        repeat = message == self.last_error
        self.last_error = message
        if self.state is not SensorState.FAILED:
            self.state = SensorState.WARNING
        (self.log.debug if repeat else self.log.warning)("sensor %s: %s", self.config.id,
                                                         message)
        if not repeat and self.state is not SensorState.FAILED:
            await self._event("sensor_fault", message, sensor=self.config.id)


class Agent:
    """The whole pipeline for one config: sensors → windows → gate → outbox → MQTT."""

    def __init__(self, config: AgentConfig, *, clock: Clock | None = None,
                 password: str | None = None, i2c: Callable[[int], Any] | None = None,
                 system_root: Path = Path("/"), pin_factory: Any = None) -> None:
        self.config = config
        self.pin_factory = pin_factory  # gpiozero pin factory for the status LED (tests: mock)
        self.status_led: Any = None  # the StatusLed while it runs
        self.telemetry = Telemetry(system_root)  # process and board figures for health
        self.i2c = i2c  # bus factory for I2C drivers; None = the real /dev/i2c-N
        self.clock = clock or SystemClock()
        self.password = password
        self.topics = Topics(config.mqtt.topic_prefix, config.gateway.id)
        self.gate = PrivacyGate(config.privacy, config.gateway.id,
                                budget=DpBudget(config.state_dir))
        self.outbox: Outbox | None = None
        self.publisher: MqttPublisher | None = None
        self.sensors: list[RunningSensor] = []
        self._started_mono = self.clock.monotonic()
        self._heartbeat = 0
        self.loop_lag_s: float | None = None  # latest event-loop lag (real time), for /metrics
        self._loop_lag_max = 0.0  # largest lag since the last health message
        #: The last released body per sensor (what the commissioning page shows).
        self.last_windows: dict[str, dict[str, Any]] = {}
        self._store_lock = asyncio.Lock()
        #: Why the agent stopped by itself (a sensor with ``startup: error``), else None.
        self.fatal: str | None = None

    # -- pipeline steps -------------------------------------------------------------------
    async def _release(self, meta: dict[str, Any], closed: list[ClosedWindow]) -> None:
        for window in closed:
            released = self.gate.release_window(window, meta)
            self.last_windows[window.sensor_id] = released.body  # for the commissioning page
            await self._store(released)

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
        # drops and merges the put made are announced as events (which can push out more)
        await self.outbox.announce_pending(self._event)

    async def install_report(self, note: str, *, env: Any = None) -> dict[str, Any]:
        """Run the doctor checks, sign the result with the note and queue it as an event.

        Returns the event's details (``signature`` included). ``env``: the doctor's
        environment (tests); default the real machine.
        """
        from edgeagent import doctor, installreport

        findings = await asyncio.to_thread(doctor.run_checks, self.config,
                                           env=env or doctor.DoctorEnv())
        health = await self.health(sample=False)
        details = installreport.build_details(
            config_hash=self.config.fingerprint(), version=__version__, note=note,
            findings=findings, sensors=health["sensors"])
        key = await asyncio.to_thread(installreport.report_key, self.config.state_dir)
        details["signature"] = installreport.sign(details, key)
        await self._store(self._event("install_report", installreport.summary(details),
                                      sensor=None, details=details))
        log.info("install report queued: %s", installreport.summary(details))
        return details

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
                                                "k": policy.k,
                                                "decimals": decimals(spec.quantity)}
                streams.append({"name": spec.name, "description": spec.description,
                                "unit": spec.unit,
                                "quantity": spec.quantity.value, "kind": spec.kind.value,
                                "statistics": stats, "k": k})
            config = running.config
            duty, link = getattr(config, "duty_cycle", None), getattr(config, "humidity", None)
            sensors.append({"id": config.id, "driver": config.driver,
                            "model": running.driver_class.model_of(config),
                            "simulated": running.driver_class.simulated,
                            "window_s": config.window, "streams": streams,
                            "duty_cycle": None if duty is None else {
                                "period_s": duty.period, "measure_s": duty.measure,
                                "warmup_s": config.warmup},
                            "humidity": None if link is None else {
                                "source": link.source or config.id,
                                "correction": link.correction}})
        return {"gateway": gw.id, "version": __version__,
                "config_hash": self.config.fingerprint(), "published": rfc3339(self.clock.time()),
                "site": gw.site.model_dump() if gw.site else None,
                "owner": gw.owner.model_dump() if gw.owner else None, "purpose": gw.purpose,
                "legal_ground": gw.legal_ground,
                "retention": {"raw_data": "memory_only",
                              "window_max_s": max((s.config.window for s in self.sensors),
                                                  default=0.0),
                              "outbox": "until_acknowledged",
                              "outbox_max_bytes": self.config.outbox.max_bytes},
                "contract": {"format": self.config.mqtt.format, "version": 1,
                             "topic_root": self.topics.root},
                "privacy": {"preset": privacy.preset, "raw_data_leaves_device": False,
                            "personal_data": False, "dp": privacy.dp_manifest(),
                            "classes": classes},
                "sensors": sensors}

    async def health(self, *, sample: bool = True) -> dict[str, Any]:
        """The periodic health report.

        ``sample=False`` peeks (the status LED): the CPU share of the next report is still
        measured from the previous report.
        """
        assert self.outbox is not None and self.publisher is not None
        stats = await self.outbox.stats()
        try:
            free = shutil.disk_usage(self.config.state_dir).free
        except OSError:
            free = 0
        report = {"gateway": self.config.gateway.id, "time": rfc3339(self.clock.time()),
                 "version": __version__, "interval_s": self.config.health.interval,
                 "uptime_s": round(self.clock.monotonic() - self._started_mono, 1),
                 "clock": self.clock.quality().value,
                 "outbox": {"depth": stats.depth, "bytes": stats.bytes,
                            "max_bytes": stats.max_bytes, "dropped": stats.dropped,
                            "coarsened": stats.coarsened,
                            "oldest_age_s": None if stats.oldest_age_s is None
                            else round(stats.oldest_age_s, 1)},
                 "mqtt": {"connected": self.publisher.connected,
                          "reconnects": self.publisher.reconnects,
                          "ack_latency_ms": self.publisher.ack_latency_ms},
                 "loop_lag_ms": (None if self.loop_lag_s is None
                                 else round(1000.0 * self._loop_lag_max, 1)),
                 "sensors": {s.config.id: s.health() for s in self.sensors},
                 "storage": {"free_bytes": free, "low": free < LOW_STORAGE_BYTES
                             or stats.storage_error is not None},
                 "process": self.telemetry.process(advance=sample),
                  "board": self.telemetry.board()}
        report["alerts"] = alerts(report)
        return report

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
            self._loop_lag_max = 0.0

    async def _drive_status_led(self) -> None:
        """Blink codes from the health alerts, refreshed every few seconds (docs/status-led.md)."""
        from edgeagent.statusled import StatusLed, blink_code

        assert self.config.status_led is not None
        try:
            led = StatusLed(self.config.status_led, self.clock, pin_factory=self.pin_factory)
        except Exception as exc:  # gpiozero missing, no GPIO, pin in use: measure on without
            log.error("status LED on GPIO%d not available: %s: %s",
                      self.config.status_led.gpio, type(exc).__name__, exc)
            return
        self.status_led = led
        blinking = asyncio.create_task(led.run(), name="edgeagent.led.blink")
        try:
            while True:
                led.code = blink_code((await self.health(sample=False))["alerts"])
                await self.clock.sleep(STATUS_LED_REFRESH_S)
        finally:
            blinking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await blinking

    async def _measure_loop_lag(self) -> None:
        """How late the event loop wakes a sleeper, in real time: a busy or stuck loop shows."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LOOP_LAG_PROBE_S)
            lag = max(0.0, loop.time() - started - LOOP_LAG_PROBE_S)
            self.loop_lag_s = lag
            self._loop_lag_max = max(self._loop_lag_max, lag)

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
        humidity: HumidityBoard = {}  # latest RH of every sensor, for PM humidity links
        for sensor in self.config.sensors:
            cls = self.config.driver_class(sensor)
            duty = getattr(sensor, "duty_cycle", None)
            link = getattr(sensor, "humidity", None)
            correction = None
            if link is not None and link.correction != "none":
                options = {} if link.kappa is None else {"kappa": link.kappa}
                correction = make_correction(link.correction, **options)
            windows = SensorWindows(
                sensor.id, cls.streams(sensor), sensor.window, cls.sample_interval(sensor),
                self.clock, duty=1.0 if duty is None else (
                    duty.measure - sensor.warmup) / duty.period,
                correction=correction,
                humidity_source=None if link is None else link.source or sensor.id)
            meta = {"driver": sensor.driver, "model": cls.model_of(sensor),
                    "simulated": cls.simulated,
                    **cls.message_meta(sensor, self.config.state_dir)}
            self.sensors.append(RunningSensor(sensor, cls, self.clock, windows,
                                              functools.partial(self._release, meta), self.event,
                                              i2c=self.i2c, humidity=humidity,
                                              state_dir=self.config.state_dir))
            log.info("sensor %s: %s", sensor.id, json.dumps(cls(sensor, DriverContext(
                self.clock, state_dir=self.config.state_dir)).describe(), default=str))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        cfg = self.config
        self.outbox = await Outbox.open(cfg.state_dir / "outbox.sqlite3", cfg.outbox.max_bytes)
        try:
            self._build_sensors()
            settings = cfg.mqtt.model_copy(update={"client_id": cfg.mqtt.client_id
                                                   or cfg.gateway.id})
            document = self.manifest()
            manifest = json.dumps(document).encode()
            retained = self._discovery(document)
            self.publisher = MqttPublisher(settings, self.topics, self.outbox,
                                           manifest=lambda: manifest, password=self.password,
                                           retained=lambda: retained,
                                           encode=self._data_encoder())
            await self.publisher.start()
            web = await self._start_web()
            try:
                async with asyncio.TaskGroup() as group:
                    await self._run_tasks(group, stop)
            finally:
                if web is not None:
                    await web.stop()
        finally:
            await self.outbox.close()

    def _discovery(self, manifest: dict[str, Any]) -> list[tuple[str, bytes]]:
        """Home Assistant discovery (and removal of entities gone since the last start)."""
        settings = self.config.mqtt.home_assistant
        if not settings.enabled:
            return []
        from edgeagent.encoders import homeassistant

        path = self.config.state_dir / HOME_ASSISTANT_STATE
        previous = None
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("Home Assistant: cannot read %s (%s); entities of removed sensors "
                        "stay in Home Assistant until deleted there", path, exc)
        prefix = settings.discovery_prefix
        messages = (homeassistant.removal_messages(previous, manifest, discovery_prefix=prefix)
                    + homeassistant.discovery_messages(manifest, discovery_prefix=prefix))
        try:
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(manifest), encoding="utf-8")
            temporary.replace(path)
        except OSError as exc:
            log.warning("Home Assistant: cannot keep the manifest in %s (%s)", path, exc)
        return messages

    async def _start_web(self) -> Any:
        """The commissioning page, /healthz and /metrics, if configured (docs/web.md)."""
        web = self.config.web
        if not web.enabled:
            return None
        try:
            from edgeagent.web import WebServer

            token = web.token_file.read_text(encoding="utf-8").strip() if web.token_file else None
            server = WebServer(self, host=web.host, port=web.port, token=token,
                               require_broker=web.require_broker, page_url=web.page_url,
                               register_url=web.register_url)
            await server.start()
        except (ImportError, OSError, ValueError) as exc:  # the agent measures on without it
            why = ("aiohttp is not installed (pip install 'edgeagent[web]')"
                   if isinstance(exc, ImportError) else str(exc))
            log.error("web page not started: %s", why)
            await self.event("web_unavailable", f"the local web page is not running: {why}")
            return None
        log.info("web page on http://%s:%s/", web.host, server.port)
        return server

    def _data_encoder(self) -> Callable[[str, bytes], list[tuple[str, bytes]]] | None:
        """The configured projection of data messages to (full topic, payload); None: as stored."""
        mqtt, site = self.config.mqtt, self.config.gateway.site
        if mqtt.format == "native":
            return None
        encoder: Encoder
        if mqtt.format == "fiware":
            from edgeagent.encoders.fiware import FiwareEncoder

            encoder = FiwareEncoder(site.model_dump() if site else None, ref_device=True)
        elif mqtt.format == "sensorthings":
            from edgeagent.encoders.sensorthings import SensorThingsEncoder

            encoder = SensorThingsEncoder(mqtt.sensorthings.datastreams)
        else:
            from edgeagent.encoders.senml import SenmlEncoder

            encoder = SenmlEncoder()
        topic = self.topics.topic
        absolute = getattr(encoder, "absolute_topics", False)  # SensorThings: v1.1/Datastreams

        def encode(suffix: str, payload: bytes) -> list[tuple[str, bytes]]:
            if not suffix.startswith("data/"):  # status, events, health: the native contract
                return [(topic(suffix), payload)]
            return [(m.topic if absolute else topic(m.topic), m.payload)
                    for m in encoder.encode(suffix, json.loads(payload))]

        return encode

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
        workers.append(group.create_task(self._measure_loop_lag(), name=f"edgeagent[{gw}].lag"))
        if self.config.status_led is not None:
            workers.append(group.create_task(self._drive_status_led(), name="edgeagent.led"))
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
