"""Asyncio access to a serial port through pyserial, without blocking the event loop.

Real ports and pseudo-terminals have a file descriptor, watched with ``loop.add_reader``.
URL ports without one (``loop://``, ``socket://``) fall back to a short blocking read in a
worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib

import serial

from edgeagent.driver import DriverError


class SerialTransport:
    """A serial port opened on demand; errors become :class:`DriverError` naming the port."""

    def __init__(self, port: str, baudrate: int, *, poll_timeout: float = 0.2) -> None:
        self.port = port
        self.baudrate = baudrate
        self._poll_timeout = poll_timeout
        self._serial: serial.SerialBase | None = None

    @property
    def is_open(self) -> bool:
        """Whether the port is currently open."""
        return self._serial is not None

    async def open(self) -> None:
        """Open the port 8N1 at the configured speed; exclusive where the OS allows."""
        if self._serial is not None:
            return
        try:
            if "://" in self.port:
                self._serial = serial.serial_for_url(self.port, self.baudrate,
                                                     timeout=self._poll_timeout)
            else:
                self._serial = serial.Serial(self.port, self.baudrate, timeout=0,
                                             exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverError(f"cannot open serial port {self.port}: {_plain(exc)}") from exc

    def _port(self) -> serial.SerialBase:
        if self._serial is None:
            raise DriverError(f"serial port {self.port} is not open")
        return self._serial

    async def read_some(self, timeout: float) -> bytes:
        """Return the bytes that arrive within ``timeout`` seconds (b"" if none)."""
        port = self._port()
        try:
            fd = port.fileno()
        except (AttributeError, OSError, serial.SerialException):
            fd = None
        try:
            if fd is None:
                return await asyncio.get_running_loop().run_in_executor(
                    None, lambda: port.read(max(1, port.in_waiting)))
            return await self._read_fd(port, fd, timeout)
        except (serial.SerialException, OSError) as exc:
            raise DriverError(f"read from {self.port} failed: {_plain(exc)}") from exc

    async def _read_fd(self, port: serial.SerialBase, fd: int, timeout: float) -> bytes:
        data = port.read(port.in_waiting or 0) if port.in_waiting else b""
        if data:
            return data
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await asyncio.wait({ready}, timeout=timeout)
        finally:
            loop.remove_reader(fd)
        if not ready.done():
            ready.cancel()
            return b""
        waiting = port.in_waiting
        if not waiting:
            # readable but nothing waiting: the other end hung up (USB unplugged, pty closed)
            raise DriverError(f"serial port {self.port} disappeared (device unplugged?)")
        return port.read(waiting)

    async def write(self, data: bytes) -> None:
        """Write a short command; serial commands are a few bytes, so this does not block."""
        try:
            self._port().write(data)
        except (serial.SerialException, OSError) as exc:
            raise DriverError(f"write to {self.port} failed: {_plain(exc)}") from exc

    async def close(self) -> None:
        """Close the port; safe to call twice or after a failed open."""
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()


def _plain(exc: BaseException) -> str:
    """Pyserial messages carry errno tuples; keep the readable part."""
    text = str(exc)
    if "[Errno 2]" in text or "No such file" in text:
        return "no such device (is the sensor plugged in and the UART enabled?)"
    if "[Errno 13]" in text or "Permission denied" in text:
        return "permission denied (is the service user in the 'dialout' group?)"
    if "[Errno 16]" in text or "busy" in text.lower():
        return "port busy (another program, e.g. a serial console, holds it)"
    return text
