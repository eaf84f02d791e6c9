"""Panasonic Grid-EYE AMG8833 8×8 thermopile array: the I2C register layer (no driver class).

Chip: AMG8833 (high-gain Grid-EYE, 60° field of view), address 0x69 (AD_SELECT high, the
Adafruit breakout default) or 0x68 (AD_SELECT low), 3.3 V.
Bus: I2C, 8-bit register addresses, 16-bit values little-endian. Registers: PCTL 0x00 (power
mode), RST 0x01, FPSC 0x02 (frame rate), INTC 0x03, STAT 0x04, SCLR 0x05, thermistor TTHL/TTHH
0x0E–0x0F (12-bit sign-magnitude, 0.0625 °C), pixels T01L … T64H 0x80–0xFF (64 × 12-bit two's
complement, 0.25 °C, pixel i at 0x80 + 2i, row-major, LSB first).
Units: °C. Register facts: sensors.md §5.1 (Adafruit CircuitPython AMG88xx, HARDWARIO);
see docs/drivers/amg8833.md.

Why the frame is read as four 32-byte block reads (0x80, 0xA0, 0xC0, 0xE0), each with its own
register address: it is exactly what SMBus ``read_i2c_block_data`` puts on the wire (32 bytes is
``I2C_SMBUS_BLOCK_MAX``), so it works on adapters that offer only SMBus block transfers as well as
on full I2C ones; it relies on the chip's register auto-increment for 32 bytes at a time only
(a single 128-byte burst is not confirmed by a primary source, Adafruit reads pixel by pixel);
and a NACK or glitch costs one short block, not the whole frame.
"""

from __future__ import annotations

import numpy as np

from edgeagent.clock import Clock
from edgeagent.driver import DriverError, FrameError
from edgeagent.i2c import BusFactory, I2cDevice, open_smbus

ADDRESSES = (0x68, 0x69)
REG_PCTL = 0x00
REG_RST = 0x01
REG_FPSC = 0x02
REG_INTC = 0x03
REG_STAT = 0x04
REG_SCLR = 0x05
REG_AVE = 0x07
REG_TTHL = 0x0E
REG_PIXELS = 0x80
PCTL_NORMAL = 0x00
PCTL_SLEEP = 0x10
PCTL_STANDBY_60S = 0x20
PCTL_STANDBY_10S = 0x21
RST_FLAG = 0x30
RST_INITIAL = 0x3F
FPSC_10 = 0x00
FPSC_1 = 0x01
FPSC_CODES = {10: FPSC_10, 1: FPSC_1}
STAT_INTERRUPT = 0x02
STAT_PIXEL_OVERFLOW = 0x04
STAT_THERMISTOR_OVERFLOW = 0x08
ROWS = COLUMNS = 8
FRAME_BYTES = 128
BLOCK_BYTES = 32  # I2C_SMBUS_BLOCK_MAX
PIXEL_LSB = 0.25  # °C
THERMISTOR_LSB = 0.0625  # °C
MODE_CHANGE_SECONDS = 0.05  # datasheet: 50 ms after entering normal mode before access
RESET_SECONDS = 0.002
#: Output stabilises about this long after power-on (sensors.md §5.1, ⚠ unverified).
WARM_UP_SECONDS = 15.0


def pixel_celsius(lo: int, hi: int) -> float:
    """°C of one pixel register pair: 12-bit two's complement × 0.25 (``64 00`` → 25.0)."""
    raw = ((hi << 8) | lo) & 0xFFF
    return (raw - 0x1000 if raw & 0x800 else raw) * PIXEL_LSB


def thermistor_celsius(lo: int, hi: int) -> float:
    """°C of TTHL/TTHH: 12-bit sign-magnitude × 0.0625 (``90 01`` → 25.0, ``10 08`` → −1.0)."""
    raw = ((hi << 8) | lo) & 0xFFF
    return (-(raw & 0x7FF) if raw & 0x800 else raw) * THERMISTOR_LSB


def decode_frame(raw128: bytes) -> np.ndarray:
    """The (8, 8) image in °C from the 128 bytes of registers 0x80–0xFF.

    Raises:
        FrameError: not 128 bytes.
    """
    if len(raw128) != FRAME_BYTES:
        raise FrameError(f"AMG8833 frame has {len(raw128)} bytes, expected {FRAME_BYTES}")
    raw = np.frombuffer(raw128, dtype="<u2").astype(np.int32) & 0xFFF
    raw = np.where(raw & 0x800, raw - 0x1000, raw)
    return (raw * PIXEL_LSB).reshape(ROWS, COLUMNS)


def encode_pixel(celsius: float) -> bytes:
    """The two register bytes (LSB first) for ``celsius``: nearest 0.25 °C, 12-bit range."""
    raw = int(min(max(round(celsius / PIXEL_LSB), -0x800), 0x7FF)) & 0xFFF
    return bytes([raw & 0xFF, raw >> 8])


def encode_thermistor(celsius: float) -> bytes:
    """TTHL, TTHH for ``celsius``: nearest 0.0625 °C, sign-magnitude, magnitude ≤ 0x7FF."""
    magnitude = min(round(abs(celsius) / THERMISTOR_LSB), 0x7FF)
    raw = magnitude | (0x800 if celsius < 0 and magnitude else 0)
    return bytes([raw & 0xFF, raw >> 8])


class Amg8833Device:
    """One AMG8833: :meth:`open` runs the init sequence, :meth:`read_frame` reads 64 pixels."""

    def __init__(self, bus: int = 1, address: int = 0x69, factory: BusFactory = open_smbus,
                 *, clock: Clock, fps: int = 10) -> None:
        if address not in ADDRESSES:
            raise ValueError(f"AMG8833 address must be 0x68 (AD_SELECT low) or 0x69 "
                             f"(AD_SELECT high), not 0x{address:02X}")
        if fps not in FPSC_CODES:
            raise ValueError(f"AMG8833 frame rate must be 10 or 1 fps, not {fps!r}")
        self.fps = fps
        self.clock = clock
        self._device = I2cDevice(bus, address, factory)
        self._opened = False

    @property
    def where(self) -> str:
        """``AMG8833 at I2C bus 1 address 0x69`` for messages."""
        return f"AMG8833 at {self._device.where}"

    async def _write(self, register: int, value: int) -> None:
        try:
            await self._device.write(bytes([register, value]))
        except DriverError as exc:
            raise DriverError(f"AMG8833 writing register 0x{register:02X}: {exc}",
                              retryable=exc.retryable) from exc

    async def _read(self, register: int, length: int) -> bytes:
        try:
            data = await self._device.write_read(bytes([register]), length)
        except DriverError as exc:
            raise DriverError(f"AMG8833 reading register 0x{register:02X}: {exc}",
                              retryable=exc.retryable) from exc
        if len(data) != length:
            raise FrameError(f"{self.where}: register 0x{register:02X} read returned "
                             f"{len(data)} bytes, expected {length}")
        return data

    async def open(self) -> None:
        """Normal mode, initial reset, interrupts off, frame rate; then check FPSC reads back.

        Raises:
            DriverError: no answer (NACK) or a chip that does not keep FPSC (not an AMG8833).
        """
        await self._device.open()
        try:
            await self._write(REG_PCTL, PCTL_NORMAL)
            await self.clock.sleep(MODE_CHANGE_SECONDS)
            await self._write(REG_RST, RST_INITIAL)
            await self.clock.sleep(RESET_SECONDS)
            await self._write(REG_INTC, 0x00)
            await self._write(REG_FPSC, FPSC_CODES[self.fps])
            fpsc = (await self._read(REG_FPSC, 1))[0]
            if fpsc & 0x01 != FPSC_CODES[self.fps]:
                raise DriverError(f"{self.where}: FPSC (0x02) reads 0x{fpsc:02X} after writing "
                                  f"0x{FPSC_CODES[self.fps]:02X}: another chip at this address "
                                  "(SPS30 and SEN5x also use 0x69)?")
            await self.clock.sleep(1.0 / self.fps)  # the first frame at the new rate
        except DriverError:
            await self._device.close()
            raise
        self._opened = True

    async def close(self) -> None:
        """Release the bus; idempotent (the chip keeps running in normal mode)."""
        self._opened = False
        await self._device.close()

    def _check_open(self) -> None:
        if not self._opened:
            raise DriverError(f"{self.where} is not open")

    async def read_status(self) -> int:
        """STAT (0x04): bit 1 interrupt, bit 2 pixel overflow, bit 3 thermistor overflow."""
        return (await self._read(REG_STAT, 1))[0]

    async def check_overflow(self) -> None:
        """Raise FrameError if STAT reports an overflow, after clearing it through SCLR."""
        status = await self.read_status()
        flags = status & (STAT_PIXEL_OVERFLOW | STAT_THERMISTOR_OVERFLOW)
        if flags:
            await self._write(REG_SCLR, flags)
            what = " and ".join(name for bit, name in ((STAT_PIXEL_OVERFLOW, "pixel"),
                                                       (STAT_THERMISTOR_OVERFLOW, "thermistor"))
                                if flags & bit)
            raise FrameError(f"{self.where}: {what} temperature overflow (STAT 0x04 = "
                             f"0x{status:02X}: outside the measuring range); flag cleared")

    async def read_raw_frame(self) -> bytes:
        """The 128 pixel bytes, as four 32-byte block reads (see the module docstring)."""
        self._check_open()
        blocks = [await self._read(REG_PIXELS + offset, BLOCK_BYTES)
                  for offset in range(0, FRAME_BYTES, BLOCK_BYTES)]
        return b"".join(blocks)

    async def read_frame(self) -> np.ndarray:
        """The (8, 8) image in °C, row-major as the chip numbers its pixels.

        Raises:
            FrameError: an overflow flag was set (then cleared) or a short read.
            DriverError: the chip stopped answering.
        """
        self._check_open()
        await self.check_overflow()
        return decode_frame(await self.read_raw_frame())

    async def read_thermistor(self) -> float:
        """The chip's own temperature in °C (TTHL/TTHH), not the room's."""
        self._check_open()
        lo, hi = await self._read(REG_TTHL, 2)
        return thermistor_celsius(lo, hi)
