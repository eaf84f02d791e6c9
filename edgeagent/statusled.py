"""A status LED for the technician at the lamp post: blink codes from the health alerts.

The agent drives the pin itself on its clock (not gpiozero's blink thread), so the pattern is
exact and testable on gpiozero's ``MockFactory``. Codes, most urgent first (one cycle is
2.5 s, then it repeats):

- **steady on, short dark blink every 2.5 s** — all well;
- **2 blinks** — no broker (data are kept in the outbox);
- **3 blinks** — a sensor failed (restart budget used up) or the clock is not synchronised;
- **4 blinks** — power or storage: under-voltage, throttling, SD card full, outbox dropping;
- **fast flicker** — the agent is starting (before the first health check).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgeagent.clock import Clock

CYCLE_S = 2.5
BLINK_ON_S, BLINK_OFF_S = 0.2, 0.3
#: Health alert → blink count; the highest count of the raised alerts wins.
CODES: dict[str, int] = {"broker_disconnected": 2, "sensor_failed": 3, "clock_unsynced": 3,
                         "under_voltage": 4, "throttled": 4, "storage_low": 4,
                         "outbox_dropping": 4}


class StatusLedConfig(BaseModel):
    """``status_led:`` — a GPIO with an LED (and resistor) to ground, or to 3.3 V if low-active."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpio: int = Field(ge=0, le=53, description="BCM GPIO number of the LED")
    active_high: bool = Field(True, description="True if a high level lights the LED")


def blink_code(alerts: list[str]) -> int:
    """Number of blinks for these alerts; 0 = all well."""
    return max((CODES.get(name, 0) for name in alerts), default=0)


def pattern(code: int) -> list[tuple[bool, float]]:
    """(lit, seconds) steps of one cycle for a blink code; -1 = starting (fast flicker)."""
    if code < 0:
        return [(True, 0.1), (False, 0.1)]
    if code == 0:
        return [(True, CYCLE_S - 0.1), (False, 0.1)]
    steps: list[tuple[bool, float]] = []
    for _ in range(code):
        steps += [(True, BLINK_ON_S), (False, BLINK_OFF_S)]
    return [*steps, (False, CYCLE_S - code * (BLINK_ON_S + BLINK_OFF_S))]


class StatusLed:
    """Shows the current blink code until cancelled; :attr:`code` is set from health."""

    def __init__(self, config: StatusLedConfig, clock: Clock, *, pin_factory: Any = None
                 ) -> None:
        from gpiozero import LED  # the gpio extra; the agent reports if it is missing

        self.clock = clock
        self.code = -1  # starting
        self._led = LED(config.gpio, active_high=config.active_high, initial_value=False,
                        pin_factory=pin_factory)

    async def run(self) -> None:
        """Blink the current code, cycle after cycle; the LED is off when cancelled."""
        try:
            while True:
                for lit, seconds in pattern(self.code):
                    if lit:
                        self._led.on()
                    else:
                        self._led.off()
                    await self.clock.sleep(seconds)
        finally:
            self._led.off()
            self._led.close()
