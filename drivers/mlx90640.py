"""Melexis MLX90640 32×24 thermal array as a people counter (I2C).

Chip: MLX90640 (BAA 110° × 75°, BAB 55° × 35°), address 0x33, 3.3 V; needs a 400 kHz–1 MHz
bus for 16 Hz (``dtparam=i2c_arm_baudrate=1000000``), so not on the SPS30/SEN5x bus.
Bus: I2C, 16-bit register addresses; register layer and calibration in
:mod:`edgeagent.drivers.mlx90640_device` (sensors.md §5.2).
Output: ``peopleIn``/``peopleOut`` across the configured line, ``occupancy`` and one
``occupancy_<zone>`` per zone — counts only; frames stay in memory (docs/drivers/mlx90640.md,
models/MODEL_CARD.md).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from edgeagent.clock import Clock
from edgeagent.drivers.mlx90640_device import (
    ADDRESS,
    EEPROM_ADDRESS,
    REFRESH_CODES,
    Mlx90640Device,
    address_bytes,
)
from edgeagent.drivers.sensirion import address_validator
from edgeagent.drivers.thermal import ThermalArrayDriver, ThermalConfig
from edgeagent.i2c import I2cDevice

DEVICE_ID_REGISTER = EEPROM_ADDRESS + 0x07  # 0x2407–0x2409: three device ID words
DEVICE_ID_WORDS = 3
I2C_ADDRESS_REGISTER = EEPROM_ADDRESS + 0x0F  # 0x240F: bits 7:0 hold the chip's own address


class Mlx90640Config(ThermalConfig):
    """An MLX90640 entry."""

    driver: Literal["mlx90640"]
    address: Annotated[int, address_validator(*range(0x01, 0x78))] = Field(
        ADDRESS, description="0x33 unless the EEPROM was changed")
    refresh_hz: Literal[2, 4, 8, 16, 32] = Field(
        16, description="Subpage rate; a full image takes two, so 16 Hz = 8 frames per second "
        "(what the shipped model was trained for)")
    emissivity: float = Field(0.95, ge=0.1, le=1.0, description="Emissivity of people and "
                              "clothing seen from above")


class Mlx90640(ThermalArrayDriver):
    """MLX90640 people counter: both subpages per frame through the counting pipeline."""

    Config = Mlx90640Config
    model = "Melexis MLX90640"
    sensor: ClassVar[str] = "mlx90640"
    shape: ClassVar[tuple[int, int]] = (24, 32)
    paced: ClassVar[bool] = False  # read_frame waits for the chip's new-data bit itself
    sample_config: ClassVar[dict[str, Any]] = {
        "id": "square-1", "driver": "mlx90640", "window": "5min",
        "counting": {"line": {"start": [0, 0.5], "end": [1, 0.5]},
                     "zones": [{"name": "kiosk", "rect": [0, 0, 0.5, 0.5]}]}}

    scan_addresses: ClassVar[tuple[int, ...]] = (ADDRESS,)

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Read the device ID words 0x2407–0x2409 and the address word 0x240F (EEPROM, read).

        16-bit register addresses: each read writes the 2-byte address, then reads words.
        The ID must not be blank (all 0x0000 or 0xFFFF) and 0x240F must hold this address.
        """
        raw = await device.write_read(address_bytes(DEVICE_ID_REGISTER), 2 * DEVICE_ID_WORDS)
        ids = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw) - 1, 2)]
        own = await device.write_read(address_bytes(I2C_ADDRESS_REGISTER), 2)
        if (len(ids) != DEVICE_ID_WORDS or all(w == 0 for w in ids)
                or all(w == 0xFFFF for w in ids) or len(own) != 2 or own[1] != device.address):
            return None
        return {"model": cls.model, "detail": "device ID and EEPROM address word read",
                "note": "it needs a fast bus (400 kHz–1 MHz) of its own, not the SPS30/SEN5x bus"}

    @classmethod
    def sample_interval(cls, config: Mlx90640Config) -> float:  # type: ignore[override]
        """One image per two subpages."""
        return 2.0 / config.refresh_hz

    def make_device(self) -> Mlx90640Device:
        """The register layer on the configured bus (reads the EEPROM at open)."""
        assert float(self.config.refresh_hz) in REFRESH_CODES
        return Mlx90640Device(self.config.bus, self.config.address, self.context.i2c,
                              clock=self.context.clock, refresh_hz=float(self.config.refresh_hz),
                              emissivity=self.config.emissivity)
