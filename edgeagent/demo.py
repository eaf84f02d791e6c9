"""``edgeagent demo``: simulated sensors, a private mosquitto and a printing subscriber.

The subscriber shows every message a platform would receive and checks it against the
contract's JSON Schemas.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeagent import contract
from edgeagent.broker import BrokerUnavailable, Mosquitto
from edgeagent.config import validate_config
from edgeagent.minibroker import EmbeddedBroker


def demo_config(port: int, state_dir: Path) -> dict[str, Any]:
    """The demo's config: three simulated sensors, 2 s windows (preset demo)."""
    sensor = {"driver": "simulated", "window": "2s", "interval": "250ms"}
    return {
        "gateway": {"id": "demo-gateway", "purpose": "edgeagent demo on simulated sensors",
                    "owner": {"name": "edgeagent demo", "contact": "nobody@example.org"}},
        "mqtt": {"host": "127.0.0.1", "port": port, "tls": {"enabled": False}},
        "state_dir": str(state_dir),
        "privacy": {"preset": "demo"},
        "health": {"interval": "5s"},
        "sensors": [{**sensor, "id": "air", "quantities": ["pm"]},
                    {**sensor, "id": "noise", "quantities": ["noise"]},
                    {**sensor, "id": "entrance", "quantities": ["people"],
                     "people_per_minute": 240}],
    }


def summarize(kind: str, doc: Any) -> str:
    """One readable line per message."""
    if kind == "status":
        return str(doc)
    if kind == "manifest":
        return (f"{len(doc['sensors'])} sensors, preset {doc['privacy']['preset']}, raw data "
                f"leaves device: {'yes' if doc['privacy']['raw_data_leaves_device'] else 'no'}")
    if kind == "health":
        return (f"outbox {doc['outbox']['depth']} queued, sensors "
                + ", ".join(f"{k}={v['state']}" for k, v in doc["sensors"].items()))
    if kind == "events":
        return f"seq {doc['seq']} {doc['type']}: {doc['message']}"
    parts = []
    for name, value in doc["values"].items():
        if value.get("suppressed"):
            why = (f"<{value['k']}" if value["suppressed_reason"] == "below_k"
                   else "window too short")
            parts.append(f"{name} suppressed ({why})")
        elif "mean" in value:
            parts.append(f"{name} {value['mean']:g} {value['unit']}")
        elif "sum" in value:
            parts.append(f"{name} {value['sum']:g} {value['unit']}")
    sim = " [simulated]" if doc["simulated"] else ""
    return (f"seq {doc['seq']} {doc['window']['start'][11:19]}–{doc['window']['end'][11:19]} "
            + ", ".join(parts) + sim)


class Subscriber:
    """Prints and validates everything below a topic root."""

    def __init__(self, port: int, root: str, out: TextIO) -> None:
        self.root, self.out = root, out
        self.counts: dict[str, int] = {}
        self.invalid = 0
        self.started = time.monotonic()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgeagent-demo-sub",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{root}/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = contract.message_type(msg.topic, self.root)
        if kind is None:
            return
        try:
            doc = contract.decode(kind, msg.payload)
            errors = contract.problems(kind, doc)
            line = summarize(kind, doc)
        except Exception as exc:  # show, count, keep going
            errors, line = [str(exc)], repr(msg.payload[:80])
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.invalid += bool(errors)
        mark = "ok" if not errors else "INVALID: " + "; ".join(errors[:2])
        topic = msg.topic[len(self.root) + 1:]
        print(f"{time.monotonic() - self.started:6.1f}s  {topic:<15} {line}  [{mark}]",
              file=self.out, flush=True)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def run_demo(seconds: float | None = None, out: TextIO = sys.stdout, *,
             embedded: bool = False) -> int:
    """Run the demo; returns 0 when data arrived and every message matched its schema.

    Uses mosquitto when installed, else (or with ``embedded=True``) the embedded broker.
    """
    from edgeagent.supervisor import Agent

    broker: Mosquitto | EmbeddedBroker
    try:
        broker = EmbeddedBroker() if embedded else Mosquitto()
    except BrokerUnavailable as exc:
        print(f"edgeagent demo: {exc}\nedgeagent demo: using the embedded demo broker instead "
              "(no persistence, no authentication: for the demo only)", file=out)
        broker = EmbeddedBroker()
    with broker, tempfile.TemporaryDirectory(prefix="edgeagent-demo-") as state:
        config = validate_config(demo_config(broker.port, Path(state)), source="demo")
        root = f"{config.mqtt.topic_prefix}/{config.gateway.id}"
        name = "embedded broker" if broker.pid is None else f"mosquitto (pid {broker.pid})"
        print(f"edgeagent demo: simulated sensors -> {name} on 127.0.0.1:{broker.port} "
              f"-> this subscriber on {root}/#", file=out)
        print("Every line is a message a platform would receive; [ok] = matches "
              "deploy/schemas/. Ctrl-C stops.", file=out, flush=True)
        subscriber = Subscriber(broker.port, root, out)
        subscriber.subscribed.wait(5)
        asyncio.run(_run_agent(Agent(config), seconds))
        time.sleep(0.3)  # let the last messages (offline) arrive before counting
        subscriber.close()
    counts = ", ".join(f"{n} {k}" for k, n in sorted(subscriber.counts.items()))
    print(f"received {sum(subscriber.counts.values())} messages ({counts}); "
          f"{subscriber.invalid} invalid", file=out)
    return 0 if subscriber.counts.get("data") and not subscriber.invalid else 1


async def _run_agent(agent: Any, seconds: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if seconds:
        loop.call_later(seconds, stop.set)
    await agent.run(stop)
