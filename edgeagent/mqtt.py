"""MQTT publisher on paho-mqtt 2.x: drains the outbox, deletes a row only after PUBACK.

paho's network loop runs in its own thread with our own reconnect loop (full-jitter backoff);
its callbacks are handed to the asyncio loop with ``call_soon_threadsafe``. QoS 1 messages
that were in flight when the connection broke are re-sent by paho after reconnecting, so each
row is published once per process; after a restart the outbox re-sends what was not acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edgeagent.backoff import backoff_delay
from edgeagent.outbox import Outbox
from edgeagent.topics import Topics

log = logging.getLogger("edgeagent.mqtt")

MAX_INFLIGHT = 20  # paho's default in-flight window; we never queue more than this in paho
REJECT_RETRY_S = 30.0


class MqttPublisher:
    """Publishes outbox rows, status, manifest and health to one broker."""

    def __init__(self, settings: Any, topics: Topics, outbox: Outbox, *,
                 manifest: Callable[[], bytes], password: str | None = None,
                 retained: Callable[[], list[tuple[str, bytes]]] | None = None,
                 rand: Callable[[], float] = random.random,
                 encode: Callable[[str, bytes], list[tuple[str, bytes]]] | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.outbox = outbox
        self._manifest = manifest
        self._retained = retained or (lambda: [])  # more retained messages on every connect
        self._password = password
        self._rand = rand
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self._ever_connected = False
        self._was_accepted = False  # written by the network thread only
        self._connack_reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._rows_inflight: dict[int, int] = {}  # mid -> outbox row id
        self._parts_left: dict[int, int] = {}  # row id -> its messages not yet acknowledged
        #: Row (topic suffix, stored payload) → (full topic, payload) messages to publish;
        #: default: as stored, below the gateway root.
        self._encode = encode or (lambda suffix, payload: [(topics.topic(suffix), payload)])
        self._direct: dict[int, asyncio.Future[bool]] = {}
        self._acked: list[int] = []
        self._sent_at: dict[int, float] = {}  # mid -> perf_counter at publish
        self._latencies: deque[float] = deque(maxlen=100)  # seconds, publish -> PUBACK
        self._cursor = 0
        outbox.on_put(self._wake.set)

    # -- set-up ---------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        v5 = s.protocol == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else True)
        client.will_set(self.topics.status, "offline", qos=1, retain=True)
        if s.username:
            client.username_pw_set(s.username, self._password)
        if s.tls.enabled:
            client.tls_set(ca_certs=str(s.tls.ca) if s.tls.ca else None,
                           certfile=str(s.tls.cert) if s.tls.cert else None,
                           keyfile=str(s.tls.key) if s.tls.key else None,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            if s.tls.insecure_skip_verify:
                log.warning("TLS certificate verification is OFF for %s: anyone on the path "
                            "can impersonate the broker", s.host)
                client.tls_insecure_set(True)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        return client

    async def start(self) -> None:
        """Create the client and start the network thread (returns at once)."""
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._network, daemon=True,
                                        name=f"edgeagent[mqtt:{self.settings.host}]")
        self._thread.start()

    # -- network thread -------------------------------------------------------------------
    def _network(self) -> None:
        s, client = self.settings, self._client
        assert client is not None
        attempt = 0
        while not self._closing.is_set():
            self._was_accepted = False
            self._connack_reason = None
            try:
                client.connect(s.host, s.port, keepalive=int(s.keepalive))
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._to_loop(self._set_error, f"cannot connect to broker {s.host}:{s.port}: "
                              f"{exc}")
                self._closing.wait(backoff_delay(attempt, base=s.reconnect.min,
                                                 cap=s.reconnect.max, rand=self._rand))
                attempt += 1
                continue
            rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                rc = client.loop(timeout=0.1)
            if self._closing.is_set():
                break
            if not self._was_accepted and self._connack_reason is None:
                # e.g. TLS 1.3 rejects a missing client certificate only after connect()
                self._to_loop(self._set_error, f"broker {s.host}:{s.port} closed the "
                              f"connection before accepting it ({mqtt.error_string(rc)}); "
                              "check TLS client certificate and credentials")
            attempt = 0 if self._was_accepted else attempt + 1
            delay = backoff_delay(attempt, base=s.reconnect.min, cap=s.reconnect.max,
                                  rand=self._rand)
            self._closing.wait(delay)

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed at exit
                self._loop.call_soon_threadsafe(fn, *args)

    def _cb_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        self._was_accepted = not reason.is_failure
        self._connack_reason = str(reason)
        if reason.is_failure:
            self._to_loop(self._set_error, f"broker {self.settings.host} refused the "
                          f"connection: {reason}")
            return
        # Birth and manifest go out straight from this thread: before any queued row.
        client.publish(self.topics.status, "online", qos=1, retain=True)
        client.publish(self.topics.manifest, self._manifest(), qos=1, retain=True)
        for topic, payload in self._retained():  # e.g. Home Assistant discovery
            client.publish(topic, payload, qos=1, retain=True)
        self._to_loop(self._on_connected)

    def _cb_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._to_loop(self._on_disconnected, str(reason))

    def _cb_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        self._to_loop(self._on_ack, mid, bool(reason.is_failure), str(reason))

    # -- loop thread ----------------------------------------------------------------------
    def _set_error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message

    def _on_connected(self) -> None:
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self.connected = True
        self.last_error = None
        log.info("connected to broker %s:%s as %s", self.settings.host, self.settings.port,
                 self.settings.client_id)
        self._wake.set()

    def _on_disconnected(self, reason: str) -> None:
        if self.connected and not self._closing.is_set():
            log.warning("lost broker %s:%s (%s); unsent data stay in the outbox",
                        self.settings.host, self.settings.port, reason)
        self.connected = False
        for future in self._direct.values():
            if not future.done():
                future.set_result(False)
        self._direct.clear()

    @property
    def ack_latency_ms(self) -> float | None:
        """Mean time from publish to the broker's PUBACK over the last 100 messages."""
        if not self._latencies:
            return None
        return round(1000.0 * sum(self._latencies) / len(self._latencies), 1)

    def _on_ack(self, mid: int, failed: bool, reason: str) -> None:
        sent = self._sent_at.pop(mid, None)
        if sent is not None and not failed:
            self._latencies.append(time.perf_counter() - sent)
        future = self._direct.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(not failed)
        row_id = self._rows_inflight.pop(mid, None)
        if row_id is None:
            return
        if failed:  # e.g. v5 "Not authorized": keep the row, try again later
            self._parts_left.pop(row_id, None)
            self._set_error(f"broker rejected a message ({reason}); it stays in the outbox")
            if self._loop is not None:
                self._loop.call_later(REJECT_RETRY_S, self._rewind)
        elif row_id in self._parts_left:
            self._parts_left[row_id] -= 1
            if self._parts_left[row_id] == 0:  # every message of the row arrived
                del self._parts_left[row_id]
                self._acked.append(row_id)
        self._wake.set()

    def _rewind(self) -> None:
        self._cursor = 0
        self._wake.set()

    async def run(self) -> None:
        """Pump rows from the outbox to the broker until cancelled."""
        client = self._client
        assert client is not None
        while True:
            self._wake.clear()
            acked, self._acked = self._acked, []
            for row_id in acked:
                await self.outbox.ack(row_id)
            sent = 0
            if self.connected and len(self._rows_inflight) < MAX_INFLIGHT:
                busy = set(self._rows_inflight.values())
                rows = await self.outbox.peek(self._cursor, MAX_INFLIGHT - len(busy), claim=True)
                for row in rows:
                    self._cursor = row.id
                    if row.id in busy:
                        continue
                    messages = self._encode(row.topic, row.payload)
                    if not messages:  # nothing in this encoding: done with the row
                        self._acked.append(row.id)
                        self._wake.set()
                        continue
                    self._parts_left[row.id] = len(messages)
                    for topic, payload in messages:
                        published = time.perf_counter()
                        info = client.publish(topic, payload, qos=1)
                        if len(self._sent_at) > 4 * MAX_INFLIGHT:  # acks lost with a session
                            self._sent_at.clear()
                        self._sent_at[info.mid] = published
                        self._rows_inflight[info.mid] = row.id
                    sent += 1
            if not sent and not acked:
                if not self._rows_inflight and self.connected:
                    self._idle.set()
                await self._wake.wait()
            self._idle.clear()

    async def drained(self, timeout: float) -> bool:
        """Wait until the outbox is empty and nothing is in flight (or ``timeout``)."""
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._idle.wait()
                    if not (await self.outbox.peek(0, 1)) and not self._rows_inflight:
                        return True
                    self._idle.clear()
                    self._wake.set()
        except TimeoutError:
            return False

    async def publish_now(self, topic: str, payload: bytes | str, *, retain: bool = False,
                          timeout: float = 2.0) -> bool:
        """Publish outside the outbox (health, status); True once the broker acked it."""
        if not self.connected or self._client is None or self._loop is None:
            return False
        future: asyncio.Future[bool] = self._loop.create_future()
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        self._direct[info.mid] = future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return False

    async def stop(self, timeout: float = 2.0) -> None:
        """Publish retained ``offline``, disconnect cleanly and stop the network thread."""
        if self._client is None:
            return
        await self.publish_now(self.topics.status, "offline", retain=True, timeout=timeout / 2)
        self._closing.set()
        with contextlib.suppress(Exception):
            self._client.disconnect()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, timeout)
        self.connected = False
