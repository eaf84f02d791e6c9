"""Acceptance: the agent publishes its data in the configured encoding to a real mosquitto,
valid against the format's schema; status, events and health stay native."""

from __future__ import annotations

import asyncio
import json

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import simulated_config, wait_for
from edgeagent.config import validate_config
from edgeagent.supervisor import Agent
from test_fiware import check_entity
from test_homeassistant import ha_state
from test_senml import native_from_senml, rfc_problems

pytestmark = pytest.mark.broker
ROOT = "edgeagent/v1/test-gw"
SITE = {"name": "Westerpark zuid", "lat": 52.3858, "lon": 4.8772, "height_m": 3.5}


def run_agent(config: dict, until) -> Agent:
    agent = Agent(validate_config(config))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.to_thread(wait_for, until, 20, "encoded data")
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    return agent


def test_fiware_entities_on_the_data_topics(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT, data_format="fiware")
    config = simulated_config(broker.port, tmp_path / "state")
    config["mqtt"]["format"] = "fiware"
    config["gateway"]["site"] = SITE
    run_agent(config, lambda: len(recorder.of("data/air")) >= 2
              and len(recorder.of("data/crowd")) >= 2 and recorder.of("health"))
    air, crowd = recorder.of("data/air")[-1], recorder.of("data/crowd")[-1]
    assert air["type"] == "AirQualityObserved" and crowd["type"] == "CrowdFlowObserved"
    assert air["id"] == "urn:ngsi-ld:AirQualityObserved:test-gw:air"
    for entity in (air, crowd):
        check_entity(entity)  # NGSI-LD normalized form + the official Smart Data Model schema
    assert air["location"]["value"]["coordinates"] == [4.8772, 52.3858]
    manifest = recorder.of("manifest")[-1]
    assert manifest["contract"]["format"] == "fiware"
    assert recorder.of("events")[0]["type"] == "agent_started"  # native, schema-checked
    assert recorder.invalid == []


def test_senml_packs_on_the_data_topics(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT, data_format="senml")
    config = simulated_config(broker.port, tmp_path / "state")
    config["mqtt"]["format"] = "senml"
    run_agent(config, lambda: len(recorder.of("data/air")) >= 3)
    packs = recorder.of("data/air")
    for pack in packs:
        assert rfc_problems(json.dumps(pack).encode()) == []  # schema and RFC 8428 rules
        assert pack[0]["bn"] == "urn:dev:edgeagent:test-gw:air:"
    natives = [native_from_senml(pack) for pack in packs]  # lossless: back to the aggregate
    assert [n["seq"] for n in natives] == list(range(len(natives)))
    means = [n["values"]["pm25"]["mean"] for n in natives
             if not n["values"]["pm25"].get("suppressed")]  # the first window may be short
    assert len(means) >= 2 and all(mean > 0 for mean in means)
    assert recorder.of("manifest")[-1]["contract"]["format"] == "senml"
    assert recorder.invalid == []


def test_sensorthings_observations_on_the_datastream_topics(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT)  # status, events, health stay native
    observations: list[tuple[str, dict]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sensorthings-server",
                         protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, msg: observations.append(
        (msg.topic, json.loads(msg.payload)))
    client.connect("127.0.0.1", broker.port)
    client.subscribe("v1.1/#", qos=1)
    client.loop_start()
    try:
        config = simulated_config(broker.port, tmp_path / "state")
        config["mqtt"]["format"] = "sensorthings"
        config["mqtt"]["sensorthings"] = {"datastreams": {"air/pm25": 42, "air/pm25:max": 43,
                                                          "crowd/people:sum": "ds-people"}}
        run_agent(config, lambda: len([t for t, _ in observations
                                       if t == "v1.1/Datastreams(42)/Observations"]) >= 2)
    finally:
        client.loop_stop()
        client.disconnect()
    topics = {topic for topic, _ in observations}
    assert topics <= {"v1.1/Datastreams(42)/Observations", "v1.1/Datastreams(43)/Observations",
                      "v1.1/Datastreams('ds-people')/Observations"}
    observation = next(o for t, o in observations if t.endswith("(42)/Observations"))
    start, end = observation["phenomenonTime"].split("/")
    assert start < end == observation["resultTime"]
    assert observation["parameters"]["statistic"] == "mean"
    assert recorder.of("data/air") == []  # data go only to the Datastreams
    assert recorder.of("events") and recorder.invalid == []


class Retained:
    """A plain subscriber that keeps the latest retained payload per topic below a prefix."""

    def __init__(self, port: int, prefix: str) -> None:
        self.latest: dict[str, bytes] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-{port}-{id(self)}")
        self.client.on_message = lambda c, u, m: self.latest.__setitem__(m.topic, m.payload)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{prefix}/#", qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_home_assistant_discovery_is_retained_and_removed_sensors_are_forgotten(
        broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    config = simulated_config(broker.port, tmp_path / "state")
    config["mqtt"]["home_assistant"] = {"enabled": True}
    bench = Retained(broker.port, "homeassistant")
    try:
        run_agent(config, lambda: recorder.of("data/crowd") and recorder.of("manifest"))
        manifest = recorder.of("manifest")[-1]
        wanted = {f"homeassistant/sensor/test-gw/{s['id']}_{st['name']}_{stat}/config"
                  for s in manifest["sensors"] for st in s["streams"] for stat in st["statistics"]}
        wait_for(lambda: wanted <= set(bench.latest), 10, "discovery configs")
        for topic in wanted:
            entity = json.loads(bench.latest[topic])
            sensor = topic.split("/")[3].split("_")[0]
            assert entity["state_topic"] == f"{ROOT}/data/{sensor}"
            assert entity["availability_topic"] == f"{ROOT}/status"
        crowd = {t for t in wanted if "/crowd_" in t}
        assert crowd
        # what Home Assistant shows for the last window is what the gateway published
        last = recorder.of("data/air")[-1]
        pm25 = json.loads(bench.latest["homeassistant/sensor/test-gw/air_pm25_mean/config"])
        assert ha_state(pm25["value_template"], json.dumps(last)) == \
            last["values"]["pm25"]["mean"]

        # the crowd sensor is taken out of the config: its entities are removed (empty retained)
        config["sensors"] = [s for s in config["sensors"] if s["id"] != "crowd"]
        run_agent(config, lambda: all(bench.latest.get(t) == b"" for t in crowd))
    finally:
        bench.close()
    late = Retained(broker.port, "homeassistant")
    try:
        wait_for(lambda: wanted - crowd <= set(late.latest), 10, "retained configs")
        assert not crowd & set(late.latest)  # the broker forgot them: Home Assistant does too
    finally:
        late.close()
