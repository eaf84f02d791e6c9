"""The embedded demo broker, exercised by real paho clients (v5 and 3.1.1)."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import EDGEAGENT, wait_for
from edgeagent.minibroker import EmbeddedBroker, matches


class Client:
    def __init__(self, port: int, protocol: int, name: str, will: bool = False) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self.acked = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=protocol)
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload, m.retain))
        self.c.on_publish = lambda *a: self.acked.set()
        if will:
            self.c.will_set("gw/status", "offline", qos=1, retain=True)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def close(self, clean: bool = True) -> None:
        if clean:
            self.c.disconnect()
        else:
            self.c.socket().close()  # connection lost without DISCONNECT: the will fires
        self.c.loop_stop()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["v5", "v3.1.1"])
def test_publish_subscribe_retained_and_will(protocol):
    with EmbeddedBroker() as broker:
        gateway = Client(broker.port, protocol, "gw", will=True)
        gateway.c.publish("gw/status", "online", qos=1, retain=True)
        wait_for(gateway.acked.is_set, 5, "PUBACK")
        platform = Client(broker.port, protocol, "platform")
        platform.c.subscribe("gw/#", qos=1)
        wait_for(lambda: platform.got, 5, "the retained status")
        assert platform.got[0] == ("gw/status", b"online", True)
        gateway.c.publish("gw/data/air", b'{"seq":0}', qos=1)
        gateway.c.publish("other/topic", b"x", qos=0)
        wait_for(lambda: len(platform.got) >= 2, 5, "data")
        assert platform.got[1] == ("gw/data/air", b'{"seq":0}', False)
        gateway.close(clean=False)
        wait_for(lambda: len(platform.got) >= 3, 5, "the Last Will")
        assert platform.got[2][:2] == ("gw/status", b"offline")
        assert all(topic.startswith("gw/") for topic, _, _ in platform.got)
        platform.close()


@pytest.mark.parametrize(("pattern", "topic", "expected"), [
    ("a/#", "a/b/c", True), ("a/+/c", "a/b/c", True), ("a/+", "a/b/c", False),
    ("a/b", "a/b", True), ("a/b", "a/c", False), ("#", "x", True), ("a/+/c", "a/c", False)])
def test_wildcards(pattern, topic, expected):
    assert matches(pattern, topic) is expected


def test_demo_runs_on_the_embedded_broker():
    result = subprocess.run([*EDGEAGENT, "demo", "--seconds", "4", "--embedded-broker"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded broker on 127.0.0.1" in result.stdout
    assert re.search(r"data/air\s+seq 0 .*\[ok\]", result.stdout)
    assert "; 0 invalid" in result.stdout
