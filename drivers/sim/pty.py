"""A pseudo-terminal front end for UART simulators.

The driver opens :attr:`PtySimulator.port` exactly like a real serial port; the simulator
answers on the other end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from typing import Generic, Protocol, Self, TypeVar


class WireProtocol(Protocol):
    """The sensor side of a UART protocol."""

    def handle(self, rx: bytes) -> bytes:
        """Consume bytes from the host; return what the sensor answers."""


SimT = TypeVar("SimT", bound=WireProtocol)


class PtySimulator(Generic[SimT]):
    """Runs ``sim`` behind a pty on the event loop; :attr:`received` logs what the host wrote."""

    def __init__(self, sim: SimT) -> None:
        self.sim = sim
        self.received = bytearray()  # everything the driver wrote, for byte-exact checks
        self.mute = False  # unplugged: receive, never answer
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)  # no line discipline: bytes pass unchanged
        self.port = os.ttyname(self._slave)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Answer commands on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._on_readable)

    def _on_readable(self) -> None:
        data = os.read(self._master, 1024)
        self.received += data
        reply = self.sim.handle(data)
        if reply and not self.mute:
            self.emit(reply)

    def emit(self, data: bytes) -> None:
        """Write raw bytes to the driver side (frames, garbage, faults)."""
        os.write(self._master, data)

    def close(self) -> None:
        """Stop answering and close both ends of the pty; idempotent."""
        if self._loop is not None:
            self._loop.remove_reader(self._master)
            self._loop = None
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
