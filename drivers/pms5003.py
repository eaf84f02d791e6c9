"""Plantower PMS5003 / PMS7003 family of laser particle counters on a UART.

Chip: Plantower PMS5003; PMS7003, PMS1003 and PMSA003 send the same 32-byte frame. The
``model`` option selects a variant whose frame differs: PMS3003 (24-byte frame, no commands),
PMS5003T (T/RH instead of the > 5.0 / > 10 µm counts), PMS5003S (HCHO word, not published),
PMS5003ST (40-byte frame with HCHO, T and RH).
Bus: UART, 9600 baud 8N1, 3.3 V logic, 5 V supply. Values are u16 big-endian (temperature s16).
Units: PM1.0 / PM2.5 / PM10 in µg/m³ (integers, no scaling); particle counts > 0.3 … > 10 µm
arrive per 0.1 L and are published per cm³ (÷ 100); temperature in °C (``Cel``, raw / 10) and
relative humidity in % (``%RH``, raw / 10) on the T variants.
Datasheet: Plantower PMS5003 data manual (LOGOELE English translation), frame table and the
five commands E1/E2/E4; see docs/drivers/pms5003.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    ParticulateConfig,
    QuantityClass,
    Reading,
    StatKind,
    StreamSpec,
)
from edgeagent.serialport import SerialTransport
from edgeagent.units import Duration, format_duration

FRAME_START = b"\x42\x4d"  # "BM"
DATA_LENGTH = 28  # length field of a data frame: 13 values + checksum
ACK_LENGTH = 4  # length field of the 8-byte command acknowledgement
CMD_MODE = 0xE1
CMD_READ = 0xE2
CMD_SLEEP = 0xE4
MODE_PASSIVE = 0x0000
MODE_ACTIVE = 0x0001
POWER_SLEEP = 0x0000
POWER_WAKE = 0x0001
STALL_TIMEOUT = 0.5  # s of silence after which a partial frame is given up (ESPHome)
MAX_MASS = 2000  # µg/m³: twice the datasheet's "maximum range ≥ 1000"
AFTER_BAD_FRAME_S = 0.2  # s to wait for the answer to a poll once a bad frame came instead
ACTIVE_CADENCE = 2.3  # s between frames in active mode at stable concentrations (datasheet)
COUNT_STREAMS = {"n0_3": "0.3", "n0_5": "0.5", "n1_0": "1.0", "n2_5": "2.5", "n5_0": "5.0",
                 "n10": "10"}
TEMPERATURE = "temperature"
HUMIDITY = "relativeHumidity"
MAX_HUMIDITY = 1000  # raw RH in 0.1 %: above 100.0 % is not physical

Model = Literal["pms5003", "pms7003", "pms1003", "pmsa003", "pms3003", "pms5003t", "pms5003s",
                "pms5003st"]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a variant's data frame keeps what (offsets count from the ``42`` of ``42 4D``)."""

    length: int  # length field of a data frame (frame size = length + 4)
    counts: int  # number of particle counts at offset 16 (the first ``counts`` of COUNT_STREAMS)
    climate: int | None  # offset of temperature (s16 / 10 °C); RH (u16 / 10 %) follows; None
    commands: bool  # whether the sensor understands E1/E2/E4


FULL = Layout(DATA_LENGTH, 6, None, True)
LAYOUTS: dict[str, Layout] = {
    "pms5003": FULL, "pms7003": FULL, "pms1003": FULL, "pmsa003": FULL,
    "pms5003s": FULL,  # data 13 (offset 28) holds HCHO; its unit is not documented: ignored
    "pms3003": Layout(20, 0, None, False),  # offsets 16-21 undocumented: only the 6 masses
    "pms5003t": Layout(DATA_LENGTH, 4, 24, True),
    "pms5003st": Layout(36, 6, 30, True),  # offset 28 HCHO (ignored), 30 T, 32 RH
}
# a parser without a model tells the frames apart by their length field only
BY_LENGTH = {28: "pms5003", 20: "pms3003", 36: "pms5003st"}
BASIS_LABELS = {"atmospheric": "atmospheric environment", "cf1": "CF=1 (standard particle)"}


def sum16(data: bytes) -> bytes:
    """Return the PMS checksum: byte sum mod 65 536, big-endian."""
    return (sum(data) & 0xFFFF).to_bytes(2, "big")


def pms_command(cmd: int, data: int = 0) -> bytes:
    """Build a 7-byte host command: ``42 4D CMD DATAH DATAL CHKH CHKL``."""
    head = FRAME_START + bytes([cmd]) + data.to_bytes(2, "big")
    return head + sum16(head)


class Pms5003Config(ParticulateConfig):
    """A PMS5003 sensor entry."""

    driver: Literal["pms5003"]
    model: Model = Field("pms5003", description="Variant: frame length and field layout")
    port: str = Field(description="Serial device, e.g. /dev/serial0")
    baudrate: Literal[9600] = Field(9600, description="Fixed by the sensor")
    mode: Literal["passive", "active"] = Field("passive", description="Polled or streaming")
    basis: Literal["atmospheric", "cf1"] = Field("atmospheric", description="PM values published")
    number_concentration: bool = Field(False, description="Also publish particles per cm³")
    read_timeout: Duration = Field(5.0, description="No valid frame this long is an error")

    @model_validator(mode="after")
    def _fits_the_model(self) -> Pms5003Config:
        layout = LAYOUTS[self.model]
        if not layout.commands and "mode" in self.model_fields_set and self.mode == "passive":
            raise ValueError(f"model {self.model} takes no commands, so it cannot be polled: "
                             "use mode: active (or leave mode out)")
        if not layout.counts and self.number_concentration:
            raise ValueError(f"model {self.model} sends no particle counts: "
                             "number_concentration must be false")
        return self

    @property
    def streaming(self) -> bool:
        """True if the sensor sends frames on its own (active mode, or a model without commands)."""
        return self.mode == "active" or not LAYOUTS[self.model].commands


@dataclass(frozen=True, slots=True)
class Pms5003Frame:
    """The values of one data frame, as sent (counts per 0.1 L, T and RH in tenths).

    A count the variant does not send is None; ``reserved`` is the last data word before the
    checksum (data 13 on the 32-byte frame).
    """

    pm1_cf1: int
    pm25_cf1: int
    pm10_cf1: int
    pm1_atm: int
    pm25_atm: int
    pm10_atm: int
    n0_3: int | None
    n0_5: int | None
    n1_0: int | None
    n2_5: int | None
    n5_0: int | None
    n10: int | None
    reserved: int
    temperature: int | None = None  # 0.1 °C, signed
    humidity: int | None = None  # 0.1 %RH


class _Step(Enum):
    MORE = "more"
    NOISE = "noise"
    ACK = "ack"


class Pms5003Parser:
    """Finds frames in a byte stream that has neither gaps nor alignment.

    With ``model`` only that variant's data length (and acks, if it takes commands) is
    accepted; without, any family length is, and a length-28 frame is read as a PMS5003.
    """

    def __init__(self, model: Model | None = None) -> None:
        self.model = model
        self._frame = bytearray()
        self._last_byte_at = 0.0

    def feed(self, data: bytes, now: float) -> list[Pms5003Frame | FrameError]:
        """Consume ``data`` received at monotonic time ``now``; return frames and bad frames."""
        out: list[Pms5003Frame | FrameError] = []
        if self._frame and now - self._last_byte_at > STALL_TIMEOUT:
            out.append(FrameError(f"partial frame dropped: {len(self._frame)} bytes, then "
                                  f"more than {STALL_TIMEOUT:g} s of silence"))
            self._frame.clear()
        if data:
            self._last_byte_at = now
        stream, i = bytearray(data), 0
        while i < len(stream):
            self._frame.append(stream[i])
            i += 1
            step = self._step()
            if step is _Step.MORE:
                continue
            if isinstance(step, Pms5003Frame):
                step = _plausible(step)
            if isinstance(step, Pms5003Frame | FrameError):
                out.append(step)
            if step is _Step.NOISE or isinstance(step, FrameError):
                # a real frame may start anywhere after the first rejected byte
                stream, i = self._frame[1:] + stream[i:], 0
            self._frame.clear()
        return out

    def _step(self) -> Pms5003Frame | FrameError | _Step:
        frame, n = self._frame, len(self._frame)
        if n <= len(FRAME_START):
            return _Step.MORE if frame[n - 1] == FRAME_START[n - 1] else _Step.NOISE
        if n < 4:
            return _Step.MORE
        length = int.from_bytes(frame[2:4], "big")
        if self.model is None:
            model = BY_LENGTH.get(length)
            if model is None and length != ACK_LENGTH:
                return FrameError(f"bad frame length {length} (expected "
                                  f"{', '.join(map(str, BY_LENGTH))} for data or {ACK_LENGTH} "
                                  "for an ack)")
        else:
            model, layout = self.model, LAYOUTS[self.model]
            if length != layout.length and not (length == ACK_LENGTH and layout.commands):
                other = BY_LENGTH.get(length)
                hint = f"; {length} is a {other} data frame" if other else ""
                ack = f" or {ACK_LENGTH} for an ack" if layout.commands else ""
                return FrameError(f"bad frame length {length} for model {self.model} "
                                  f"(expected {layout.length} for data{ack}{hint})")
        if n < 4 + length:
            return _Step.MORE
        if sum16(frame[:-2]) != frame[-2:]:
            return FrameError(f"bad checksum: frame says {frame[-2:].hex().upper()}, "
                              f"bytes sum to {sum16(frame[:-2]).hex().upper()}")
        if length == ACK_LENGTH:
            return _Step.ACK  # acks only confirm a command; their payload is undocumented
        return decode_frame(bytes(frame), model)


def decode_frame(frame: bytes, model: str) -> Pms5003Frame:
    """Decode a whole, checked data frame with the layout of ``model``."""
    layout = LAYOUTS[model]
    words = struct.unpack(f">{(layout.length - 2) // 2}H", frame[4:layout.length + 2])
    counts = list(words[6:6 + layout.counts]) + [None] * (6 - layout.counts)
    climate: tuple[int | None, int | None] = (None, None)
    if layout.climate is not None:
        at = (layout.climate - 4) // 2
        climate = (_s16(words[at]), words[at + 1])
    return Pms5003Frame(*words[:6], *counts, words[-1], *climate)


def _s16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def _plausible(frame: Pms5003Frame) -> Pms5003Frame | FrameError:
    # sum16 is weak: a truncated frame glued to the next one passes it 1 time in 65 536, so
    # physics must hold too. Rejected frames are rescanned, recovering a frame inside them.
    masses = (frame.pm1_cf1, frame.pm25_cf1, frame.pm10_cf1,
              frame.pm1_atm, frame.pm25_atm, frame.pm10_atm)
    # only the counts this variant sends (none on a PMS3003, four on a PMS5003T)
    counts = tuple(c for c in (frame.n0_3, frame.n0_5, frame.n1_0, frame.n2_5, frame.n5_0,
                               frame.n10) if c is not None)
    pm10 = max(frame.pm10_cf1, frame.pm10_atm)
    if counts and pm10 > 0 and not any(counts):  # known bad output (PyPMS): mass, no particles
        return FrameError(f"implausible frame: PM10 {pm10} µg/m³ but all particle counts are 0")
    if max(masses) > MAX_MASS:
        return FrameError(f"implausible frame: {max(masses)} µg/m³ is beyond the sensor's "
                          f"range (max {MAX_MASS})")
    cf1, atm = masses[0:3], masses[3:6]
    if list(cf1) != sorted(cf1) or list(atm) != sorted(atm):
        return FrameError(f"implausible frame: PM1 ≤ PM2.5 ≤ PM10 violated ({cf1}, {atm})")
    if list(counts) != sorted(counts, reverse=True):
        return FrameError(f"implausible frame: particle counts are cumulative, so they cannot "
                          f"grow with size ({counts})")
    if frame.humidity is not None and frame.humidity > MAX_HUMIDITY:
        return FrameError(f"implausible frame: relative humidity {frame.humidity / 10:g} % "
                          "is above 100 %")
    return frame


def _as_model(frame: Pms5003Frame, model: str) -> Pms5003Frame:
    # a parser without a model reads every length-28 frame as a PMS5003; on a PMS5003T the
    # words at offsets 24-27 are temperature and RH instead of the two largest counts
    if LAYOUTS[model].climate == 24 and frame.temperature is None and frame.n5_0 is not None:
        return replace(frame, n5_0=None, n10=None, temperature=_s16(frame.n5_0),
                       humidity=frame.n10)
    return frame


def frame_values(frame: Pms5003Frame, config: Pms5003Config) -> dict[str, float]:
    """Return the stream values of a frame under ``config`` (model, basis, number conc.)."""
    frame, layout = _as_model(frame, config.model), LAYOUTS[config.model]
    if config.basis == "cf1":
        mass = (frame.pm1_cf1, frame.pm25_cf1, frame.pm10_cf1)
    else:
        mass = (frame.pm1_atm, frame.pm25_atm, frame.pm10_atm)
    values = {name: float(v) for name, v in zip(("pm1", "pm25", "pm10"), mass, strict=True)}
    if config.number_concentration:
        # counts are per 0.1 L = 100 cm³
        values.update({name: getattr(frame, name) / 100
                       for name in list(COUNT_STREAMS)[:layout.counts]})
    if layout.climate is not None and frame.temperature is not None:
        values[TEMPERATURE] = frame.temperature / 10
        values[HUMIDITY] = (frame.humidity or 0) / 10
    return values


class Pms5003(Driver):
    """Plantower PMS5003 driver, polled (passive) or streaming (active)."""

    Config = Pms5003Config
    model: ClassVar[str] = "Plantower PMS5003"
    transport: ClassVar[str] = "uart"
    sample_config: ClassVar[dict[str, Any]] = {
        "id": "pm-north", "driver": "pms5003", "port": "/dev/serial0"}

    scan_baud: ClassVar[int | None] = 9600

    @classmethod
    def recognise_stream(cls, data: bytes) -> dict[str, Any] | None:
        """Count valid data frames (any family length) in passively read bytes; send nothing.

        A PMS5003 streams after power-up (active mode). Frames of length 20 are a PMS3003,
        length 36 a PMS5003ST; the length-28 models cannot be told apart on the wire.
        """
        frames = [item for item in Pms5003Parser().feed(data, 0.0)
                  if isinstance(item, Pms5003Frame)]
        if not frames:
            return None
        if all(frame.n0_3 is None for frame in frames):
            model, config = "Plantower PMS3003", {"model": "pms3003"}
        elif all(frame.temperature is not None for frame in frames):
            model, config = "Plantower PMS5003ST", {"model": "pms5003st"}
        else:
            model, config = "Plantower PMS5003", {}
        result: dict[str, Any] = {"model": model, "frames": len(frames), "config": config}
        if not config:
            result["note"] = ("PMS7003, PMSA003 and PMS5003T/S send the same frame: set model: "
                              "if yours is one of them")
        return result

    @classmethod
    def sleeps_when_closed(cls, config: Pms5003Config) -> bool:  # type: ignore[override]
        """All models but the PMS3003 (standby only through its SET pin) sleep on command."""
        return LAYOUTS[config.model].commands

    @classmethod
    def correction_problem(cls, config: Pms5003Config,  # type: ignore[override]
                           method: str) -> str | None:
        """The EPA correction needs CF=1 values, its fitting basis."""
        if method == "epa-barkjohn-2021" and config.basis != "cf1":
            return f"{method} is fitted on CF=1 values: set basis: cf1"
        return None

    def __init__(self, config: Pms5003Config, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Pms5003Config = config
        self._transport: SerialTransport | None = None
        self._parser = Pms5003Parser(config.model)
        self._pending: deque[tuple[float, Pms5003Frame | FrameError]] = deque()
        self._pacer = Pacer(config.interval)

    @classmethod
    def streams(cls, config: Pms5003Config) -> list[StreamSpec]:
        """PM1, PM2.5 and PM10 mass, number concentrations if enabled, T/RH on T variants."""
        layout, basis = LAYOUTS[config.model], BASIS_LABELS[config.basis]
        specs = [StreamSpec(name, "ug/m3", QuantityClass.PARTICULATE, StatKind.LINEAR,
                            f"{label} mass concentration, {basis}")
                 for name, label in (("pm1", "PM1.0"), ("pm25", "PM2.5"), ("pm10", "PM10"))]
        if config.number_concentration:
            specs += [StreamSpec(name, "/cm3", QuantityClass.PARTICULATE, StatKind.LINEAR,
                                 f"particles > {size} µm per cm³")
                      for name, size in list(COUNT_STREAMS.items())[:layout.counts]]
        if layout.climate is not None:
            specs += [StreamSpec(TEMPERATURE, "Cel", QuantityClass.CLIMATE, StatKind.LINEAR,
                                 "air temperature inside the sensor"),
                      StreamSpec(HUMIDITY, "%RH", QuantityClass.CLIMATE, StatKind.LINEAR,
                                 "relative humidity inside the sensor")]
        return specs

    @classmethod
    def sample_interval(cls, config: Pms5003Config) -> float:  # type: ignore[override]
        """Passive: the poll interval. Active: ``interval`` if set, else the ~2.3 s cadence."""
        if config.streaming and "interval" not in config.model_fields_set:
            return ACTIVE_CADENCE
        return config.interval

    def describe(self) -> dict[str, Any]:
        """Return the settings, the configured variant and a label of the published PM basis."""
        described = {**super().describe(), "model": self.model, "variant": self.config.model,
                     "pm_basis": BASIS_LABELS[self.config.basis]}
        if not LAYOUTS[self.config.model].commands:
            described["mode"] = "active"  # the sensor streams; it cannot be told otherwise
        return described

    async def open(self) -> None:
        """Open the port, wake the sensor and (re)send the mode, lost on every power cycle."""
        transport = SerialTransport(self.config.port, self.config.baudrate)
        await transport.open()
        self._transport = transport
        self._parser = Pms5003Parser(self.config.model)
        self._pending.clear()
        try:
            await self.wake()
        except DriverError:
            await self.close()
            raise

    async def wake(self) -> None:
        """Leave standby and set the mode; a model without commands (PMS3003) is sent nothing."""
        transport = self._require_open()
        if LAYOUTS[self.config.model].commands:
            await transport.write(pms_command(CMD_SLEEP, POWER_WAKE))
            mode = MODE_PASSIVE if self.config.mode == "passive" else MODE_ACTIVE
            await transport.write(pms_command(CMD_MODE, mode))
        self._pacer.start(self.context.clock.monotonic())

    async def sleep(self) -> None:
        """Put the sensor in standby (fan and laser off); a PMS3003 only has its SET pin."""
        transport = self._require_open()
        if not LAYOUTS[self.config.model].commands:
            raise DriverError(f"{self.config.model} on {self.config.port} takes no commands: "
                              "standby only through its SET pin")
        await transport.write(pms_command(CMD_SLEEP, POWER_SLEEP))

    async def read(self) -> list[Reading] | None:
        """Return the next frame's readings; raise FrameError for a bad frame."""
        transport = self._require_open()
        if not self._pending:
            if not self.config.streaming:
                await self._pacer.wait(self.context.clock)
                await transport.write(pms_command(CMD_READ))
            await self._receive(transport)
        t, item = self._pending.popleft()
        if isinstance(item, FrameError):
            raise item
        return [Reading(name, value, t) for name, value in frame_values(item, self.config).items()]


    async def _receive(self, transport: SerialTransport) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.read_timeout
        # wait for a data frame, not just any item: a bad frame before the answer to this
        # poll must not make the next read() poll again (the answer would then come late)
        polled, hurried = not self.config.streaming, False
        while not (any(isinstance(item, Pms5003Frame) for _, item in self._pending) if polled
                   else self._pending):
            if polled and self._pending and not hurried:
                # a bad frame: the answer follows at once (32 bytes take 33 ms) or never
                deadline, hurried = min(deadline, loop.time() + AFTER_BAD_FRAME_S), True
            remaining = deadline - loop.time()
            if remaining <= 0:
                if self._pending:
                    return  # only bad frames arrived: read() reports them
                raise DriverError(f"no data from PMS5003 on {self.config.port} for "
                                  f"{format_duration(self.config.read_timeout)} "
                                  "(check wiring TX/RX and 5 V supply)")
            data = await transport.read_some(remaining)
            now = self.context.clock.monotonic()
            self._pending.extend((now, item) for item in self._parser.feed(data, now))

    async def close(self) -> None:
        """Put the sensor to sleep (best effort) and release the port; idempotent."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        if LAYOUTS[self.config.model].commands:
            with contextlib.suppress(DriverError):
                await transport.write(pms_command(CMD_SLEEP, POWER_SLEEP))
        await transport.close()

    def _require_open(self) -> SerialTransport:
        if self._transport is None:
            raise DriverError(f"PMS5003 on {self.config.port} is not open")
        return self._transport
