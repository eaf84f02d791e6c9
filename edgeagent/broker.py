"""Start a private mosquitto on a free 127.0.0.1 port (for the demo and the tests)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerUnavailable(RuntimeError):
    """mosquitto is not installed or would not start."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """A mosquitto process with persistence in a temporary folder; stop/start keep its port.

    ``listener_options`` go right after the listener line (TLS files, password_file, …).

    Stop it with SIGTERM so it saves sessions and queued messages, as a real restart would.
    """

    def __init__(self, port: int | None = None, workdir: Path | None = None, *,
                 listener_options: str = "", anonymous: bool = True) -> None:
        self.binary = find_mosquitto()
        if self.binary is None:
            raise BrokerUnavailable("mosquitto is not installed; on Debian/Raspberry Pi OS: "
                                    "sudo apt-get install -y mosquitto")
        self.port = port or free_port()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="edgeagent-mqtt-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n{listener_options}\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\npersistence true\n"
            f"persistence_location {self.workdir}/\nautosave_interval 1\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
            "max_queued_messages 100000\n"
            # as root, mosquitto would drop to user 'mosquitto' and lose access to our files
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running broker."""
        return self.process.pid if self.process else None

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port accepts connections."""
        self.process = subprocess.Popen([str(self.binary), "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerUnavailable(f"mosquitto exited at start: {self._log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(f"mosquitto did not listen on port {self.port}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()[-500:]
        return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (saves its state), then SIGKILL if it does not exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
