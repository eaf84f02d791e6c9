"""HLK-LD2410 simulator, byte for byte: config mode, parameters, engineering mode, reports.

A scene gives the radar's target at a monotonic time (:class:`Ld2410Target`: state, distances
in cm, energies 0–100); the simulator encodes basic or engineering report frames from it (gate
energies are synthesised around the target's gates) and answers the configuration commands
with the ACKs of the protocol tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.hilink import STATUS_FAILED, STATUS_OK, Command, ack_frame
from edgeagent.drivers.ld2410 import (
    ENGINEERING_OFF,
    ENGINEERING_ON,
    GATE_SENSITIVITY,
    HEAD,
    MAX_ENERGY,
    MAX_GATE,
    PARAM_DURATION,
    PARAM_MOVING_GATE,
    PARAM_STILL_GATE,
    QUERY_RESOLUTION,
    READ_PARAMETERS,
    REPORT_END,
    REPORT_HEADER,
    REPORT_TAIL,
    SET_GATES,
    SET_RESOLUTION,
    STATE_NONE,
    TYPE_BASIC,
    TYPE_ENGINEERING,
    Ld2410,
    Ld2410Config,
    Ld2410Report,
)
from edgeagent.drivers.sim.hilink import HilinkSimulator, PtyHilink

EXAMPLE_FIRMWARE = (0x0204, 0x23022511)  # V2.04.23022511, a common LD2410B/C release
GATE_CM = 75  # gate size at the default resolution
#: Factory sensitivities per gate 0–8 (ESPHome's defaults table).
DEFAULT_MOVING = (50, 50, 40, 30, 20, 15, 15, 15, 15)
DEFAULT_STILL = (0, 0, 40, 40, 30, 30, 20, 20, 20)
DEFAULT_DURATION = 5


@dataclass(frozen=True, slots=True)
class Ld2410Target:
    """What the radar sees: target state 0–3, distances (cm) and energies (0–100)."""

    state: int = STATE_NONE
    moving_distance: int = 0
    moving_energy: int = 0
    still_distance: int = 0
    still_energy: int = 0
    detection_distance: int = 0


Scene = Callable[[float], Ld2410Target]
NOBODY = Ld2410Target()


def empty_scene(t: float) -> Ld2410Target:
    """Nobody there."""
    return NOBODY


def _gate_energies(distance: int, energy: int, count: int) -> tuple[int, ...]:
    """Energy around the target's gate, fading over the neighbours."""
    gate = min(distance // GATE_CM, count - 1)
    return tuple(max(0, energy - 30 * abs(g - gate)) if energy else 0 for g in range(count))


class Ld2410Simulator(HilinkSimulator):
    """The radar side: answers commands in configuration mode and encodes reports."""

    def __init__(self, scene: Scene = empty_scene, *, firmware: tuple[int, int] =
                 EXAMPLE_FIRMWARE, reports_in_config_mode: bool = False,
                 extra: bytes | None = None) -> None:
        super().__init__(firmware=firmware, reports_in_config_mode=reports_in_config_mode)
        self.scene = scene
        self.engineering = False  # lost at power-off
        #: Extra engineering bytes after the gate energies. None: light level 0 and the OUT pin
        #: state, as the datasheet's 45-byte frame; b"" gives the 43-byte frame without them.
        self.extra = extra
        self.resolution = 0  # 0 = 0.75 m gates, 1 = 0.2 m
        self.factory_reset()

    def factory_reset(self) -> None:
        """Gates 8/8, the default sensitivities, 5 s no-one duration (all persistent)."""
        self.max_moving_gate = MAX_GATE
        self.max_still_gate = MAX_GATE
        self.no_one_duration = DEFAULT_DURATION
        self.moving_sensitivity = list(DEFAULT_MOVING)
        self.still_sensitivity = list(DEFAULT_STILL)

    def power_cycle(self) -> None:
        """Power off and on: engineering mode is lost (parameters persist)."""
        super().power_cycle()
        self.engineering = False

    @staticmethod
    def encode_report(report: Ld2410Report) -> bytes:
        """A report frame of ``report`` (engineering if it says so), length from its content."""
        data = struct.pack("<BBBHBHBH", TYPE_ENGINEERING if report.engineering else TYPE_BASIC,
                           HEAD, report.state, report.moving_distance, report.moving_energy,
                           report.still_distance, report.still_energy,
                           report.detection_distance)
        if report.engineering:
            data += bytes([len(report.moving_gates) - 1, len(report.still_gates) - 1])
            data += bytes(report.moving_gates) + bytes(report.still_gates) + report.extra
        data += REPORT_TAIL
        return REPORT_HEADER + len(data).to_bytes(2, "little") + data + REPORT_END

    def report_of(self, target: Ld2410Target) -> Ld2410Report:
        """The report the radar sends for ``target`` in its current mode."""
        if not self.engineering:
            return Ld2410Report(target.state, target.moving_distance, target.moving_energy,
                                target.still_distance, target.still_energy,
                                target.detection_distance)
        return Ld2410Report(
            target.state, target.moving_distance, target.moving_energy, target.still_distance,
            target.still_energy, target.detection_distance, engineering=True,
            moving_gates=_gate_energies(target.moving_distance, target.moving_energy,
                                        MAX_GATE + 1),
            still_gates=_gate_energies(target.still_distance, target.still_energy,
                                       MAX_GATE + 1),
            extra=self.extra if self.extra is not None
            else bytes([0, 1 if target.state != STATE_NONE else 0]))

    def report(self, t: float) -> bytes | None:
        """The report frame at ``t`` (None in configuration mode)."""
        if not self.reporting:
            return None
        return self.encode_report(self.report_of(self.scene(t)))

    def parameters_data(self) -> bytes:
        """Read-parameters ACK data: AA, N, moving N, still N, 2 × 9 sensitivities, duration."""
        return (bytes([HEAD, MAX_GATE, self.max_moving_gate, self.max_still_gate])
                + bytes(self.moving_sensitivity) + bytes(self.still_sensitivity)
                + self.no_one_duration.to_bytes(2, "little"))

    def execute(self, command: Command) -> bytes | None:
        """Parameters, engineering mode, sensitivities and resolution."""
        word, value = command.word, command.value
        if word == READ_PARAMETERS:
            return ack_frame(word, STATUS_OK, self.parameters_data())
        if word in (ENGINEERING_ON, ENGINEERING_OFF):
            self.engineering = word == ENGINEERING_ON
            return ack_frame(word)
        if word == SET_GATES:
            return ack_frame(word, STATUS_OK if self._set_gates(value) else STATUS_FAILED)
        if word == GATE_SENSITIVITY:
            return ack_frame(word, STATUS_OK if self._set_sensitivity(value) else STATUS_FAILED)
        if word == SET_RESOLUTION:
            if value[:2] not in (b"\x00\x00", b"\x01\x00"):
                return ack_frame(word, STATUS_FAILED)
            self.resolution = value[0]
            return ack_frame(word)
        if word == QUERY_RESOLUTION:
            return ack_frame(word, STATUS_OK, self.resolution.to_bytes(2, "little"))
        return None

    @staticmethod
    def _pairs(value: bytes) -> dict[int, int] | None:
        if len(value) % 6:
            return None
        return dict(struct.unpack_from("<HI", value, i) for i in range(0, len(value), 6))

    def _set_gates(self, value: bytes) -> bool:
        pairs = self._pairs(value)
        if not pairs or set(pairs) - {PARAM_MOVING_GATE, PARAM_STILL_GATE, PARAM_DURATION}:
            return False
        gates = [pairs.get(PARAM_MOVING_GATE, self.max_moving_gate),
                 pairs.get(PARAM_STILL_GATE, self.max_still_gate)]
        duration = pairs.get(PARAM_DURATION, self.no_one_duration)
        if not all(2 <= g <= MAX_GATE for g in gates) or duration > 0xFFFF:
            return False
        self.max_moving_gate, self.max_still_gate = gates
        self.no_one_duration = duration
        return True

    def _set_sensitivity(self, value: bytes) -> bool:
        pairs = self._pairs(value)
        if not pairs or set(pairs) != {0, 1, 2}:
            return False
        gate, moving, still = pairs[0], pairs[1], pairs[2]
        if max(moving, still) > MAX_ENERGY or (gate > MAX_GATE and gate != 0xFFFF):
            return False
        for g in range(MAX_GATE + 1) if gate == 0xFFFF else [gate]:
            self.moving_sensitivity[g], self.still_sensitivity[g] = moving, still
        return True


class PtyLd2410(PtyHilink):
    """An LD2410 simulator behind a pty, streaming reports on a clock."""

    sim: Ld2410Simulator

    def __init__(self, sim: Ld2410Simulator | None = None, period: float = 0.1) -> None:
        super().__init__(sim or Ld2410Simulator(), period)


def conformance_scene(t: float) -> Ld2410Target:
    """Someone walks in, stands still, leaves: a 20 s cycle."""
    phase = t % 20
    if phase < 5:
        return Ld2410Target(1, 250, 60, 0, 0, 250)
    if phase < 12:
        return Ld2410Target(3, 180, 30, 175, 55, 180)
    if phase < 16:
        return Ld2410Target(2, 0, 0, 175, 50, 175)
    return NOBODY


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Ld2410]:
    """Yield a driver wired to this simulator, streaming in the background; not yet opened."""
    async with PtyLd2410(Ld2410Simulator(conformance_scene)) as pty:
        config = Ld2410Config(id="ld2410-conf", driver="ld2410", port=pty.port,
                              engineering=True, max_gate=6)
        stream = asyncio.create_task(pty.run_reports(clock, pause=0.002))
        try:
            yield Ld2410(config, DriverContext(clock=clock))
        finally:
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream
