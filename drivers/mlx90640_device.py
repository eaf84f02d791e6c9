"""Melexis MLX90640 32×24 thermopile array: the I2C register layer (no driver class).

Chip: MLX90640 (BAA 110° × 75° or BAB 55° × 35°), address 0x33, 3.3 V.
Bus: I2C, **16-bit register addresses and 16-bit big-endian words**: a read writes the 2-byte
address and reads 2 × n bytes with a repeated start; a write sends address then words. Memory:
EEPROM 0x2400–0x273F (832 calibration words, read once at :meth:`Mlx90640Device.open`), RAM
0x0400–0x073F (768 pixels + auxiliary words), status register 0x8000 (bit 3 new data, bit 0
the subpage just measured; writing 0x0030 clears bit 3, keeps RAM overwrite enabled), control
register 1 0x800D (bits 9:7 refresh rate, 11:10 ADC resolution, bit 12 chess readout).
Readout: each measurement fills one **subpage**, half of the pixels in a chess pattern; a full
image needs both, so the image rate is half the refresh rate.
Units: °C. Calibration and To math: :mod:`edgeagent.drivers.mlx90640_calibration`.
Datasheet: Melexis MLX90640 datasheet, chapter 11; see docs/drivers/mlx90640.md.
"""

from __future__ import annotations

import numpy as np

from edgeagent.clock import Clock
from edgeagent.driver import DriverError, FrameError
from edgeagent.drivers.mlx90640_calibration import (
    COLUMNS,
    CONTROL_CHESS,
    EEPROM_ADDRESS,
    EEPROM_WORDS,
    RAM_ADDRESS,
    RAM_WORDS,
    ROWS,
    Calibration,
    FrameConstants,
    extract,
    frame_constants,
    interpolate_pixels,
    object_temperatures,
    subpage_mask,
)
from edgeagent.i2c import BusFactory, I2cDevice, open_smbus

ADDRESS = 0x33  # factory default; the EEPROM word 0x240F can move it
REG_STATUS = 0x8000
REG_CONTROL1 = 0x800D
STATUS_SUBPAGE = 0x0001
STATUS_NEW_DATA = 0x0008
STATUS_CLEAR = 0x0030  # bit 3 (new data) 0, bit 4 RAM overwrite enable, bit 5 start measurement
CONTROL_REFRESH_SHIFT = 7
CONTROL_REFRESH_MASK = 0x0380
#: Refresh rate (subpages per second) → control register 1 bits 9:7.
REFRESH_CODES = {0.5: 0, 1.0: 1, 2.0: 2, 4.0: 3, 8.0: 4, 16.0: 5, 32.0: 6, 64.0: 7}
REFRESH_RATES = {code: rate for rate, code in REFRESH_CODES.items()}
TORN_READ_RETRIES = 3  # RAM reads repeated when a new subpage arrived during the read
SUBPAGE_READS_PER_FRAME = 4  # at most this many subpage reads to get both halves


def refresh_code(rate_hz: float) -> int:
    """Control register code of a refresh rate in Hz (0.5, 1, 2 … 64)."""
    try:
        return REFRESH_CODES[float(rate_hz)]
    except KeyError:
        rates = ", ".join(f"{r:g}" for r in REFRESH_CODES)
        raise ValueError(f"MLX90640 refresh rate {rate_hz!r} Hz is not one of {rates}") from None


def refresh_rate(control: int) -> float:
    """Refresh rate in Hz (subpages per second) that control register 1 selects."""
    return REFRESH_RATES[(control & CONTROL_REFRESH_MASK) >> CONTROL_REFRESH_SHIFT]


def address_bytes(register: int) -> bytes:
    """The 2-byte big-endian register address that starts every transfer."""
    return register.to_bytes(2, "big")


def write_command(register: int, value: int) -> bytes:
    """The bytes of a one-word register write: address then value, both big-endian."""
    return address_bytes(register) + value.to_bytes(2, "big")


def words(data: bytes) -> np.ndarray:
    """Big-endian 16-bit words as an int64 array (unsigned)."""
    return np.frombuffer(data, dtype=">u2").astype(np.int64)


def merge_subpages(subpage0: np.ndarray, subpage1: np.ndarray, chess: bool = True) -> np.ndarray:
    """One (768,) image from the To of both subpages (each NaN outside its own pixels)."""
    return np.where(subpage_mask(0, chess), subpage0, subpage1)


class Mlx90640Device:
    """One MLX90640: calibration at :meth:`open`, then :meth:`read_frame` per image.

    ``emissivity`` and ``reflected`` (°C, None: the sensor's own temperature − 8 K, the Melexis
    open-air convention) enter the To equation; ``clock`` paces the polling of the status
    register. Broken pixels (and, with ``interpolate_outliers``, outliers) are replaced by the
    mean of their neighbours.
    """

    def __init__(self, bus: int = 1, address: int = ADDRESS, factory: BusFactory = open_smbus,
                 *, clock: Clock, refresh_hz: float = 4.0, emissivity: float = 0.95,
                 reflected: float | None = None, interpolate_outliers: bool = True) -> None:
        if not 0x01 <= address <= 0x7F:
            raise ValueError(f"MLX90640 address 0x{address:02X} is not a 7-bit I2C address")
        if not 0.1 <= emissivity <= 1.0:
            raise ValueError(f"MLX90640 emissivity {emissivity} is outside 0.1 … 1.0")
        self._code = refresh_code(refresh_hz)
        self.refresh_hz = REFRESH_RATES[self._code]
        self.emissivity = emissivity
        self.reflected = reflected
        self.interpolate_outliers = interpolate_outliers
        self.clock = clock
        self._device = I2cDevice(bus, address, factory)
        self._calibration: Calibration | None = None
        self.control: int | None = None
        #: Frame constants (Vdd, Ta …) of the last subpage read, for health reports.
        self.last: FrameConstants | None = None
        #: How often the control register had lost its setting (a reset chip) and was rewritten.
        self.reconfigured = 0

    @property
    def where(self) -> str:
        """``MLX90640 at I2C bus 1 address 0x33`` for messages."""
        return f"MLX90640 at {self._device.where}"

    @property
    def calibration(self) -> Calibration:
        """The calibration read at :meth:`open`."""
        if self._calibration is None:
            raise DriverError(f"{self.where} is not open")
        return self._calibration

    # --- register access -----------------------------------------------------------------

    async def _read_words(self, register: int, count: int, what: str) -> np.ndarray:
        try:
            data = await self._device.write_read(address_bytes(register), 2 * count)
        except DriverError as exc:
            raise DriverError(f"MLX90640 reading {what} (0x{register:04X}): {exc}",
                              retryable=exc.retryable) from exc
        if len(data) != 2 * count:
            raise DriverError(f"{self.where}: reading {what} (0x{register:04X}) returned "
                              f"{len(data)} bytes, expected {2 * count}")
        return words(data)

    async def read_register(self, register: int, what: str = "a register") -> int:
        """One word."""
        return int((await self._read_words(register, 1, what))[0])

    async def write_register(self, register: int, value: int, what: str = "a register") -> None:
        """One word."""
        try:
            await self._device.write(write_command(register, value))
        except DriverError as exc:
            raise DriverError(f"MLX90640 writing {what} 0x{register:04X}: {exc}",
                              retryable=exc.retryable) from exc

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Read and check the EEPROM, set chess readout and the refresh rate, clear new data.

        Raises:
            DriverError: no answer, a blank or corrupt EEPROM (not retryable), or a control
                register that does not keep what was written.
        """
        await self._device.open()
        try:
            eeprom = await self._read_words(EEPROM_ADDRESS, EEPROM_WORDS, "the EEPROM")
            self._calibration = extract(eeprom, self.where)
            await self._configure()
            await self.write_register(REG_STATUS, STATUS_CLEAR, "the status register")
        except DriverError:
            self._calibration = None
            await self._device.close()
            raise

    async def _configure(self) -> None:
        control = await self.read_register(REG_CONTROL1, "control register 1")
        wanted = (control & ~CONTROL_REFRESH_MASK) | CONTROL_CHESS | (
            self._code << CONTROL_REFRESH_SHIFT)
        if wanted != control:
            await self.write_register(REG_CONTROL1, wanted, "control register 1")
            control = await self.read_register(REG_CONTROL1, "control register 1")
            if control != wanted:
                raise DriverError(f"{self.where}: control register 1 (0x800D) reads "
                                  f"0x{control:04X} after writing 0x{wanted:04X}: another chip "
                                  "at this address?")
        self.control = control

    async def close(self) -> None:
        """Release the bus; idempotent."""
        self._calibration = None
        await self._device.close()

    # --- frames ----------------------------------------------------------------------------

    @property
    def subpage_seconds(self) -> float:
        """Time between two subpages at the configured refresh rate."""
        return 1.0 / self.refresh_hz

    async def _wait_new_data(self) -> int:
        period = self.subpage_seconds
        poll = min(max(period / 10, 0.002), 0.05)
        deadline = self.clock.monotonic() + 2.5 * period + 0.1
        while True:
            status = await self.read_register(REG_STATUS, "the status register")
            if status & STATUS_NEW_DATA:
                return status
            if self.clock.monotonic() >= deadline:
                raise DriverError(f"{self.where}: no new data for {2.5 * period + 0.1:.2f} s "
                                  f"(status 0x8000 = 0x{status:04X}, refresh {self.refresh_hz:g} "
                                  "Hz): the sensor stalled or was reset")
            await self.clock.sleep(poll)

    async def read_subpage(self) -> tuple[int, np.ndarray]:
        """Wait for the next subpage and return (subpage number, the 832 RAM words).

        A read during which the next subpage arrived (new-data bit set again) is repeated.
        """
        for _ in range(TORN_READ_RETRIES):
            status = await self._wait_new_data()
            await self.write_register(REG_STATUS, STATUS_CLEAR, "the status register")
            ram = await self._read_words(RAM_ADDRESS, RAM_WORDS, "the frame RAM")
            after = await self.read_register(REG_STATUS, "the status register")
            if not after & STATUS_NEW_DATA:
                return status & STATUS_SUBPAGE, ram
        raise FrameError(f"{self.where}: new subpages kept arriving during the RAM read "
                         f"({TORN_READ_RETRIES} tries): the bus is too slow for "
                         f"{self.refresh_hz:g} Hz")

    async def _check_control(self) -> int:
        control = await self.read_register(REG_CONTROL1, "control register 1")
        if control != self.control:  # a brown-out reset the chip to its EEPROM defaults
            self.reconfigured += 1
            await self._configure()
            control = self.control or control
        return control

    async def read_frame(self) -> np.ndarray:
        """Read both subpages and return the (24, 32) image of object temperatures in °C.

        Raises:
            DriverError: the chip stopped answering or stalled.
            FrameError: both subpages could not be had within a few reads.
        """
        cal = self.calibration
        control = await self._check_control()
        halves: dict[int, np.ndarray] = {}
        for _ in range(SUBPAGE_READS_PER_FRAME):
            subpage, ram = await self.read_subpage()
            fc = frame_constants(ram, control, cal)
            halves[subpage] = object_temperatures(ram, subpage, control, cal, fc=fc,
                                                  emissivity=self.emissivity,
                                                  reflected=self.reflected)
            self.last = fc
            if len(halves) == 2:
                break
        else:
            raise FrameError(f"{self.where}: only subpage {sorted(halves)} arrived in "
                             f"{SUBPAGE_READS_PER_FRAME} reads (subpage repeat mode set?)")
        image = merge_subpages(halves[0], halves[1], bool(control & CONTROL_CHESS))
        bad = cal.broken + (cal.outliers if self.interpolate_outliers else ())
        if bad:
            image = interpolate_pixels(image, bad)
        return image.reshape(ROWS, COLUMNS)
