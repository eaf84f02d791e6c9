"""Shared fixtures: a real mosquitto on a free 127.0.0.1 port, subscribers, config helpers."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeagent import contract
from edgeagent.broker import Mosquitto, find_mosquitto

REPO = Path(__file__).resolve().parent.parent
# Deterministic property tests: the same examples on every run and in CI, nothing stored.
hypothesis_settings.register_profile("edgeagent", derandomize=True, database=None)
hypothesis_settings.load_profile("edgeagent")
#: The installed ``edgeagent`` command, as a user runs it (not ``python -m`` from the checkout).
_SCRIPT = Path(sys.executable).with_name("edgeagent")
EDGEAGENT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "edgeagent"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private mosquitto with persistence, stopped (by PID) after the test."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed (the test suite needs it: apt-get install "
                    "mosquitto)")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    server = Mosquitto(workdir=workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
             ) -> Any:
    """Poll ``condition`` (real time, for I/O across processes) until truthy or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def async_wait_for(condition: Callable[[], Any], timeout: float = 10.0,
                         what: str = "condition") -> Any:
    """Like :func:`wait_for` but yields to the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_stepped(agent: Any, clock: Any, until: float, *, sleepers: int = 3,
                each: Callable[[float], None] | None = None,
                then: Callable[[], Any] | None = None) -> None:
    """Run an Agent on a manual FakeClock until monotonic ``until``, then stop it.

    Whenever ``sleepers`` tasks (sensors, window ticker, health loop) wait on the clock, time
    jumps to the next deadline: the whole agent is stepped event by event, deterministically.
    ``each(now)`` runs before every step (change what a simulated chip reports); ``then()`` is
    awaited-for before stopping (e.g. until the recorder has the last window).
    """
    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        while clock.monotonic() < until:
            await async_wait_for(lambda: clock.sleepers >= sleepers, 10, "the agent to wait")
            if each is not None:
                each(clock.monotonic())
            clock.advance_to_next()
        if then is not None:
            await async_wait_for(then, 10, "the last messages")
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())


class Recorder:
    """A subscriber on ``<root>/#`` that keeps every message and validates it on arrival.

    With ``persistent=True`` it uses an MQTT v5 session that outlives disconnects and broker
    restarts (clean_start False, long session expiry), as a platform would.
    """

    def __init__(self, port: int, root: str, *, persistent: bool = False,
                 client_id: str = "test-recorder", ca: Path | None = None,
                 username: str | None = None, password: str | None = None,
                 data_format: str = "native") -> None:
        self.root = root
        self.data_format = data_format  # other formats: data payloads are kept, not checked
        self.messages: list[tuple[str, Any, bool]] = []
        self.invalid: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        if username is not None:
            self.client.username_pw_set(username, password)
        props = None
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=not persistent, properties=props)
        self.client.loop_start()
        assert self._subscribed.wait(5), "recorder could not subscribe"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if not flags.session_present:
            client.subscribe(f"{self.root}/#", qos=1)
        else:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = contract.message_type(msg.topic, self.root)
        assert kind is not None, msg.topic
        doc = contract.decode(kind, msg.payload)
        native = kind != "data" or self.data_format == "native"
        errors = contract.problems(kind, doc) if native else []
        with self._lock:
            self.messages.append((msg.topic[len(self.root) + 1:], doc, bool(msg.retain)))
            if errors:
                self.invalid.append((msg.topic, errors))

    def of(self, suffix: str) -> list[Any]:
        """Decoded payloads received on one topic suffix (e.g. ``data/air``)."""
        with self._lock:
            return [doc for topic, doc, _ in self.messages if topic == suffix]

    def seqs(self, suffix: str) -> list[int]:
        """The ``seq`` values received on one topic, in arrival order."""
        return [doc["seq"] for doc in self.of(suffix)]

    def close(self) -> None:
        """Disconnect (the session stays on the broker if persistent)."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def recorder_factory() -> Iterator[Callable[..., Recorder]]:
    """Make recorders; all are closed after the test."""
    made: list[Recorder] = []

    def make(port: int, root: str, **kwargs: Any) -> Recorder:
        made.append(Recorder(port, root, **kwargs))
        return made[-1]

    yield make
    for recorder in made:
        recorder.close()
    for recorder in made:  # every message any test received must match deploy/schemas/
        assert recorder.invalid == [], recorder.invalid


def simulated_config(port: int, state_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A small valid config on simulated sensors with 1 s windows (demo preset)."""
    config: dict[str, Any] = {
        "gateway": {"id": "test-gw"},
        "mqtt": {"host": "127.0.0.1", "port": port, "tls": {"enabled": False},
                 "reconnect": {"min": "100ms", "max": "500ms"}},
        "state_dir": str(state_dir),
        "privacy": {"preset": "demo"},
        "health": {"interval": "1s"},
        "sensors": [{"id": "air", "driver": "simulated", "quantities": ["pm"],
                     "window": "1s", "interval": "100ms", "seed": 1},
                    {"id": "crowd", "driver": "simulated", "quantities": ["people"],
                     "window": "1s", "interval": "100ms", "seed": 2,
                     "people_per_minute": 600}],
    }
    config.update(overrides)
    return config


def dump(path: Path, data: Any) -> Path:
    """Write a config dict as YAML-compatible JSON (JSON is valid YAML)."""
    path.write_text(json.dumps(data, indent=1))
    return path


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves an agent thread (MQTT network loop, outbox worker) running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in set(threading.enumerate()) - before
                  if t.is_alive() and t.name.startswith("edgeagent")]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"
