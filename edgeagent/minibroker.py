"""A tiny in-process MQTT 3.1.1 / 5 broker, so ``edgeagent demo`` runs where mosquitto is absent.

Demo use only: 127.0.0.1, no authentication, no persistence, QoS 0 and 1 (QoS 2 is refused),
retained messages and Last Will supported. Real deployments and the test suite use mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + _varint(len(body)) + body


def _text(data: bytes, pos: int) -> tuple[bytes, int]:
    size = int.from_bytes(data[pos:pos + 2], "big")
    return data[pos + 2:pos + 2 + size], pos + 2 + size


def _skip_properties(data: bytes, pos: int) -> int:
    length, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return pos + length


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT wildcard match of ``+`` (one level) and ``#`` (the rest)."""
    want, have = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or (part != "+" and part != have[i]):
            return False
    return len(want) == len(have)


@dataclass(eq=False)  # identity: one object per connection
class _Client:
    writer: asyncio.StreamWriter
    v5: bool
    subscriptions: dict[str, int] = field(default_factory=dict)
    will: tuple[str, bytes, int, bool] | None = None
    next_id: int = 0

    def send(self, data: bytes) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(data)


class EmbeddedBroker:
    """Runs on its own thread and event loop; ``with EmbeddedBroker() as b: b.port``."""

    pid = None  # not a separate process

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._clients: set[_Client] = set()
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="edgeagent-minibroker")

    def __enter__(self) -> EmbeddedBroker:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for client in list(self._clients):
                client.writer.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client: _Client | None = None
        clean = False
        try:
            while True:
                first = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(length)
                kind, flags = first >> 4, first & 0x0F
                if kind == CONNECT:
                    client = self._connect(writer, body)
                elif client is None:
                    return
                elif kind == PUBLISH:
                    self._publish(client, flags, body)
                elif kind == SUBSCRIBE:
                    self._subscribe(client, body)
                elif kind == UNSUBSCRIBE:
                    self._unsubscribe(client, body)
                elif kind == PINGREQ:
                    client.send(_packet(PINGRESP, 0, b""))
                elif kind == DISCONNECT:
                    clean = True
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError,
                UnicodeDecodeError):
            pass  # a broken or malformed client is simply dropped
        finally:
            if client is not None:
                self._clients.discard(client)
                if not clean and client.will:
                    self._route(*client.will)
            writer.close()

    def _connect(self, writer: asyncio.StreamWriter, body: bytes) -> _Client:
        _, pos = _text(body, 0)
        level, flags = body[pos], body[pos + 1]
        v5 = level == 5
        pos += 4  # level, flags, keepalive
        if v5:
            pos = _skip_properties(body, pos)
        _, pos = _text(body, pos)  # client id
        client = _Client(writer, v5)
        if flags & 0x04:
            if v5:
                pos = _skip_properties(body, pos)
            topic, pos = _text(body, pos)
            payload, pos = _text(body, pos)
            client.will = (topic.decode(), payload, (flags >> 3) & 3, bool(flags & 0x20))
        self._clients.add(client)
        client.send(_packet(CONNACK, 0, b"\x00\x00\x00" if v5 else b"\x00\x00"))
        return client

    def _publish(self, client: _Client, flags: int, body: bytes) -> None:
        qos, retain = (flags >> 1) & 3, bool(flags & 1)
        topic, pos = _text(body, 0)
        if qos:
            packet_id = body[pos:pos + 2]
            pos += 2
            client.send(_packet(PUBACK, 0, packet_id))
        if client.v5:
            pos = _skip_properties(body, pos)
        self._route(topic.decode(), body[pos:], min(qos, 1), retain)

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            if payload:
                self._retained[topic] = (payload, qos)
            else:
                self._retained.pop(topic, None)
        for other in list(self._clients):
            granted = [q for f, q in other.subscriptions.items() if matches(f, topic)]
            if granted:
                self._deliver(other, topic, payload, min(qos, max(granted)), retain=False)

    def _deliver(self, client: _Client, topic: str, payload: bytes, qos: int, *,
                 retain: bool) -> None:
        name = topic.encode()
        body = len(name).to_bytes(2, "big") + name
        if qos:
            client.next_id = client.next_id % 65535 + 1
            body += client.next_id.to_bytes(2, "big")
        if client.v5:
            body += b"\x00"
        client.send(_packet(PUBLISH, qos << 1 | int(retain), body + payload))

    def _subscribe(self, client: _Client, body: bytes) -> None:
        packet_id, pos = body[:2], 2
        if client.v5:
            pos = _skip_properties(body, pos)
        codes, filters = bytearray(), []
        while pos < len(body):
            name, pos = _text(body, pos)
            qos = min(body[pos] & 3, 1)
            pos += 1
            client.subscriptions[name.decode()] = qos
            codes.append(qos)
            filters.append((name.decode(), qos))
        client.send(_packet(SUBACK, 0, packet_id + (b"\x00" if client.v5 else b"") + codes))
        for topic_filter, qos in filters:
            for topic, (payload, msg_qos) in self._retained.items():
                if matches(topic_filter, topic):
                    self._deliver(client, topic, payload, min(qos, msg_qos), retain=True)

    def _unsubscribe(self, client: _Client, body: bytes) -> None:
        packet_id, pos = body[:2], 2
        if client.v5:
            pos = _skip_properties(body, pos)
        count = 0
        while pos < len(body):
            name, pos = _text(body, pos)
            client.subscriptions.pop(name.decode(), None)
            count += 1
        reasons = (b"\x00" + b"\x00" * count) if client.v5 else b""
        client.send(_packet(UNSUBACK, 0, packet_id + reasons))
