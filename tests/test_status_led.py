"""The status LED on gpiozero's MockFactory: exact blink codes on the injected clock, and the
agent switching codes when the broker goes away."""

from __future__ import annotations

import asyncio

import pytest
from gpiozero.pins.mock import MockFactory

from conftest import async_wait_for, simulated_config
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.statusled import CODES, StatusLed, StatusLedConfig, blink_code, pattern
from edgeagent.supervisor import Agent


def test_codes_rank_the_alerts():
    assert blink_code([]) == 0
    assert blink_code(["clock_unsynced"]) == 3
    assert blink_code(["broker_disconnected", "under_voltage"]) == 4  # the more urgent wins
    assert blink_code(["memory_high"]) == 0  # not a technician's matter on site
    for code in (0, 2, 3, 4):
        assert sum(seconds for _, seconds in pattern(code)) == pytest.approx(2.5)
    assert [lit for lit, _ in pattern(2)] == [True, False, True, False, False]


def test_the_pin_follows_the_pattern_on_the_clock():
    factory = MockFactory()
    clock = FakeClock(auto_advance=False)
    states: list[tuple[float, bool]] = []

    async def scenario():
        led = StatusLed(StatusLedConfig(gpio=21), clock, pin_factory=factory)
        pin = factory.pin(21)
        led.code = 3
        task = asyncio.create_task(led.run())
        start = clock.monotonic()
        while clock.monotonic() - start < 2.5 - 1e-9:
            await async_wait_for(lambda: clock.sleepers >= 1, 5, "the LED to wait")
            states.append((round(clock.monotonic() - start, 3), pin.state))
            clock.advance_to_next()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pin.state

    assert asyncio.run(scenario()) == 0  # off once stopped
    assert states == [(0.0, 1), (0.2, 0), (0.5, 1), (0.7, 0), (1.0, 1), (1.2, 0), (1.5, 0)]


@pytest.mark.broker
def test_the_agent_blinks_no_broker_when_the_broker_is_down(broker, tmp_path, monkeypatch):
    monkeypatch.setitem(CODES, "clock_unsynced", 0)  # a test machine's clock may be unsynced
    factory = MockFactory()
    config = simulated_config(broker.port, tmp_path / "state")
    config["status_led"] = {"gpio": 21}
    agent = Agent(validate_config(config), pin_factory=factory)

    async def codes() -> list[tuple[int, list[str]]]:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        seen = []
        await async_wait_for(lambda: agent.status_led is not None
                             and agent.status_led.code == 0, 10, "the all-well code")
        seen.append((agent.status_led.code, (await agent.health(sample=False))["alerts"]))
        broker.stop()  # the LED follows the health alerts within STATUS_LED_REFRESH_S
        await async_wait_for(lambda: agent.status_led.code == 2, 15, "the no-broker code")
        seen.append((agent.status_led.code, (await agent.health(sample=False))["alerts"]))
        stop.set()
        await asyncio.wait_for(task, 10)
        broker.start()
        return seen

    (before, before_alerts), (after, after_alerts) = asyncio.run(codes())
    assert (before, after) == (0, 2), (before_alerts, after_alerts)
    assert "broker_disconnected" in after_alerts
    assert factory.pin(21).state == 0  # switched off at shutdown
