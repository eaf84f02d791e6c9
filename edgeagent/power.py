"""Sensor supply switching through a GPIO output (MOSFET, relay or USB hub port power).

gpiozero drives the pin, so tests run on its ``MockFactory`` and a gateway on whatever pin
factory gpiozero finds (lgpio on a Pi 5, RPi.GPIO or pigpio on older boards). The switch is
turned on when the sensor starts (then ``boot_time`` passes before the driver opens) and is only
ever turned off inside :meth:`PowerSwitch.cycle`.
"""

from __future__ import annotations

from typing import Any

from edgeagent.clock import Clock
from edgeagent.driver import DriverError, PowerConfig


class PowerSwitch:
    """One sensor's supply switch; :meth:`cycle` is the last rung of the recovery ladder."""

    def __init__(self, config: PowerConfig, clock: Clock, sensor_id: str) -> None:
        self.config = config
        self.clock = clock
        self.sensor_id = sensor_id
        self._device: Any = None
        #: Whether the supply was last switched on (kept when the pin is released).
        self.is_on = False

    @property
    def where(self) -> str:
        """``GPIO17 (power switch of pm)`` for messages."""
        return f"GPIO{self.config.gpio} (power switch of {self.sensor_id})"

    def open(self) -> None:
        """Claim the pin and switch the sensor on.

        Raises:
            DriverError: gpiozero missing, no GPIO on this machine or the pin is in use.
        """
        if self._device is not None:
            return
        try:
            from gpiozero import OutputDevice
        except ImportError as exc:
            raise DriverError(f"{self.where}: gpiozero is not installed (pip install "
                              "'edgeagent[gpio]' or apt install python3-gpiozero)",
                              retryable=False) from exc
        try:
            self._device = OutputDevice(self.config.gpio, active_high=self.config.active_high,
                                        initial_value=True)
            self.is_on = True
        except Exception as exc:  # gpiozero raises many types: BadPinFactory, GPIOPinInUse …
            raise DriverError(f"{self.where}: cannot drive the pin: {type(exc).__name__}: "
                              f"{exc}", retryable=False) from exc

    async def cycle(self) -> None:
        """Switch off for ``off_time``, on again, and wait ``boot_time`` for the sensor."""
        self.open()
        self._device.off()
        self.is_on = False
        try:
            await self.clock.sleep(self.config.off_time)
        finally:  # never leave a sensor unpowered, also when cancelled on shutdown
            self._device.on()
            self.is_on = True
        await self.clock.sleep(self.config.boot_time)

    def close(self) -> None:
        """Release the pin.

        The supply then follows the switch's own default (with the pull-down recommended in the
        README: off until the agent runs again).
        """
        device, self._device = self._device, None
        if device is not None:
            device.close()
