"""``edgeagent audit``: the Auditor rule by rule, then against the real agent and a real broker."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import dump, simulated_config
from edgeagent import audit as audit_module
from edgeagent.audit import RULES, AuditConnectionError, Auditor, audit, identifiers
from edgeagent.broker import free_port
from edgeagent.config import validate_config
from edgeagent.supervisor import Agent

EXAMPLES = Path(__file__).resolve().parent / "contract_examples"
PREFIX = "edgeagent/v1"
GW = "gw-1"
ROOT = f"{PREFIX}/{GW}"
STORE = "3f2a9c4e8b7d4e1f9a6b5c4d3e2f1a0b"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def manifest(**sensor_window: float) -> dict[str, Any]:
    """A manifest for gateway gw-1: sensor pm (60 s, pm25 mean/min/max), crowd (300 s, k 5)."""
    doc = example("manifest")
    doc["gateway"] = GW
    doc["contract"]["topic_root"] = ROOT
    doc["privacy"]["classes"] = {
        "particulate": {"min_window_s": 60, "statistics": ["mean", "min", "max", "stddev"],
                        "k": None, "decimals": 2},
        "people_count": {"min_window_s": 300, "statistics": ["sum"], "k": 5, "decimals": 1}}
    pm = doc["sensors"][0]
    pm.update(id="pm", window_s=sensor_window.get("pm", 60))
    pm["streams"][0]["statistics"] = ["mean", "min", "max"]
    crowd = {"id": "crowd", "driver": "simulated", "model": "edgeagent simulated sensor",
             "simulated": True, "window_s": sensor_window.get("crowd", 300),
             "streams": [{"name": "people", "description": "people passing", "unit": "count",
                          "quantity": "people_count", "kind": "counter",
                          "statistics": ["sum"], "k": 5}],
             "duty_cycle": None, "humidity": None}
    doc["sensors"].append(crowd)
    return doc


def stamp(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"2026-01-01T{10 + hours:02d}:{minutes:02d}:{secs:02d}Z"


def pm25(**stats: Any) -> dict[str, Any]:
    return {"unit": "ug/m3", "quantity": "particulate", "n": 59,
            **(stats or {"mean": 8.1, "min": 7.0, "max": 10.0})}


def people(total: Any = 12, *, suppressed: bool = False, reason: str | None = None
           ) -> dict[str, Any]:
    entry = {"unit": "count", "quantity": "people_count", "n": 300, "sum": total, "k": 5,
             "suppressed": suppressed}
    if reason:
        entry["suppressed_reason"] = reason
    return entry


def data(sensor: str = "pm", seq: int = 0, values: dict[str, Any] | None = None, *,
         seconds: float | None = None, length: float | None = None, partial: bool = False,
         **top: Any) -> dict[str, Any]:
    seconds = seconds or (300 if sensor == "crowd" else 60)
    if values is None:
        values = {"people": people()} if sensor == "crowd" else {"pm25": pm25()}
    doc = {"seq": seq, "store": STORE, "gateway": GW, "sensor": sensor, "driver": "pms5003",
           "model": "Plantower PMS5003", "simulated": False,
           "window": {"start": stamp(0), "end": stamp(length or seconds), "seconds": seconds,
                      "clock": "synced", "partial": partial},
           "coverage": 1.0, "errors": 0, "values": values, "corrections": []}
    doc.update(top)
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def rules(violations: list[Any]) -> list[str]:
    return [v.rule for v in violations]


@pytest.fixture
def auditor() -> Auditor:
    """An auditor that has seen the retained manifest of gw-1."""
    auditor = Auditor(PREFIX, GW)
    assert auditor.feed(f"{ROOT}/manifest", raw(manifest()), True) == []
    return auditor


def check(auditor: Auditor, doc: Any, sensor: str = "pm") -> list[str]:
    return rules(auditor.feed(f"{ROOT}/data/{sensor}", raw(doc)))


# -- (1) the Auditor, rule by rule -------------------------------------------------------------
def test_contract_examples_paired_give_no_violation():
    # The shortened example manifest declares only pm25, and people_count at >= 300 s, while the
    # example data message carries pm25, laeq and people at 60 s: pair data.json with the
    # example manifest extended by what the data message shows (crowd-safety-like 60 s counts).
    doc = example("manifest")
    classes = doc["privacy"]["classes"]
    classes["noise"] = {"min_window_s": 60, "statistics": ["mean", "min", "max"], "k": None,
                        "decimals": 1}
    classes["people_count"]["min_window_s"] = 60
    doc["sensors"][0]["streams"] += [
        {"name": "laeq", "description": "A-weighted equivalent level", "unit": "dB",
         "quantity": "noise", "kind": "energetic", "statistics": ["mean", "min", "max"],
         "k": None},
        {"name": "people", "description": "people passing", "unit": "count",
         "quantity": "people_count", "kind": "counter", "statistics": ["sum"], "k": 5}]
    root = doc["contract"]["topic_root"]
    auditor = Auditor(PREFIX)
    auditor.feed(f"{root}/status", b"online", True)
    auditor.feed(f"{root}/manifest", raw(doc), True)
    auditor.feed(f"{root}/data/pm-north", (EXAMPLES / "data.json").read_bytes())
    auditor.feed(f"{root}/events", (EXAMPLES / "events.json").read_bytes())
    auditor.feed(f"{root}/health", (EXAMPLES / "health.json").read_bytes())
    report = auditor.report()
    assert report.violations == [] and report.ok
    assert report.messages == 5 and report.gateways == ["ams-oost-lp0412"]


def test_the_unmodified_example_manifest_is_clean_too():
    auditor = Auditor(PREFIX)
    root = example("manifest")["contract"]["topic_root"]
    assert auditor.feed(f"{root}/manifest", (EXAMPLES / "manifest.json").read_bytes(),
                        True) == []


def test_well_behaved_messages_pass(auditor):
    assert check(auditor, data()) == []
    assert check(auditor, data("crowd", values={"people": people(12)}), "crowd") == []
    below_k = {"people": people(None, suppressed=True, reason="below_k")}
    assert check(auditor, data("crowd", 1, below_k), "crowd") == []
    short = {"people": people(None, suppressed=True, reason="short_window")}
    assert check(auditor, data("crowd", 2, short, length=40, partial=True), "crowd") == []
    empty = {"pm25": {"unit": "ug/m3", "quantity": "particulate", "n": 0}}
    assert check(auditor, data("pm", 1, empty, length=20, partial=True)) == []
    assert check(auditor, data("pm", 2, length=90, partial=True)) == []  # partial, long enough
    assert auditor.feed(f"{ROOT}/status", b"offline", True) == []
    assert auditor.feed(f"{ROOT}/events", raw({**example("events"), "gateway": GW})) == []


def test_schema_unexpected_field(auditor):
    assert check(auditor, data(debug_samples=[1, 2, 3])) == ["schema"]
    assert check(auditor, data(seq=1, values={"pm25": pm25(mean=1.0, raw=[1.0])})) == ["schema"]
    assert rules(auditor.feed(f"{ROOT}/status", b"up", True)) == ["schema"]


def test_not_json(auditor):
    assert rules(auditor.feed(f"{ROOT}/data/pm", b"pm25=8.1")) == ["not_json"]
    assert rules(auditor.feed(f"{ROOT}/health", b"\xff\xfe")) == ["not_json"]


def test_unknown_topic(auditor):
    assert rules(auditor.feed(f"{ROOT}/debug/raw", b"[1, 2, 3]")) == ["unknown_topic"]


def test_topic_mismatch(auditor):
    assert check(auditor, data(sensor="pm", gateway="gw-2")) == ["topic_mismatch"]
    wrong = data()
    wrong["sensor"] = "crowd"
    assert check(auditor, wrong) == ["topic_mismatch"]
    moved = manifest()
    moved["contract"]["topic_root"] = "edgeagent/v1/elsewhere"
    assert rules(auditor.feed(f"{ROOT}/manifest", raw(moved), True)) == ["topic_mismatch"]


def test_no_manifest_warning():
    auditor = Auditor(PREFIX, GW)
    found = auditor.feed(f"{ROOT}/events", raw({**example("events"), "gateway": GW}))
    assert rules(found) == ["no_manifest"] and found[0].severity == "warning"
    assert rules(auditor.feed(f"{ROOT}/data/pm", raw(data()))) == ["no_manifest"]
    assert auditor.feed(f"{ROOT}/status", b"online", True) == []  # status needs no manifest
    assert not auditor.report().ok


def test_a_cleared_manifest_is_forgotten(auditor):
    assert auditor.feed(f"{ROOT}/manifest", b"", True) == []
    assert check(auditor, data()) == ["no_manifest"]


def test_raw_data_declared():
    doc = manifest()
    doc["privacy"]["raw_data_leaves_device"] = True
    assert rules(Auditor(PREFIX).feed(f"{ROOT}/manifest", raw(doc), True)) == \
        ["raw_data_declared"]
    del doc["privacy"]["raw_data_leaves_device"]
    assert "raw_data_declared" in rules(Auditor(PREFIX).feed(f"{ROOT}/manifest", raw(doc)))


@pytest.mark.parametrize("change", ["statistics", "window", "k", "class"])
def test_manifest_policy(change):
    doc = manifest()
    crowd = doc["sensors"][1]
    if change == "statistics":
        crowd["streams"][0]["statistics"] = ["sum", "max"]  # class allows sum only
    elif change == "window":
        crowd["window_s"] = 60  # class minimum 300
    elif change == "k":
        crowd["streams"][0]["k"] = None
    else:
        del doc["privacy"]["classes"]["people_count"]
    assert rules(Auditor(PREFIX).feed(f"{ROOT}/manifest", raw(doc), True)) == \
        ["manifest_policy"]


def test_unknown_sensor(auditor):
    assert check(auditor, data("ghost"), "ghost") == ["unknown_sensor"]


def test_undeclared_stream(auditor):
    values = {"pm25": pm25(), "pm10": pm25()}
    assert check(auditor, data(values=values)) == ["undeclared_stream"]
    reclassed = {"pm25": {**pm25(), "quantity": "climate"}}
    assert check(auditor, data(seq=1, values=reclassed)) == ["undeclared_stream"]


def test_undeclared_statistic(auditor):
    values = {"pm25": pm25(mean=8.1, min=7.0, max=10.0, stddev=0.8)}
    assert check(auditor, data(values=values)) == ["undeclared_statistic"]
    counted = {"people": {**people(12), "max": 3}}
    assert check(auditor, data("crowd", values=counted), "crowd") == ["undeclared_statistic"]


def test_undeclared_statistic_in_a_correction(auditor):
    correction = {"stream": "pm25", "method": "kappa-koehler", "reference": "Crilley 2018",
                  "parameters": {"kappa": 0.4}, "rh_max": 95,
                  "humidity": {"sensor": "pm", "stream": "relativeHumidity"},
                  "unit": "ug/m3", "n": 59, "mean": 7.0, "stddev": 0.5}
    assert check(auditor, data(corrections=[correction])) == ["undeclared_statistic"]


def test_window_below_minimum():
    auditor = Auditor(PREFIX, GW)
    assert rules(auditor.feed(f"{ROOT}/manifest", raw(manifest(pm=10)), True)) == \
        ["manifest_policy"]  # the manifest itself declares 10 s below the 60 s minimum
    assert check(auditor, data(seconds=10)) == ["window_below_minimum"]


def test_window_mismatch(auditor):
    assert check(auditor, data(seconds=120)) == ["window_mismatch"]


def test_short_window_not_marked_partial(auditor):
    assert check(auditor, data(length=30)) == ["short_window"]


def test_partial_window_below_minimum_not_suppressed(auditor):
    assert check(auditor, data(length=30, partial=True)) == ["partial_unsuppressed"]
    counted = {"people": people(12)}
    assert check(auditor, data("crowd", 1, counted, length=100, partial=True), "crowd") == \
        ["partial_unsuppressed"]


def test_count_below_k(auditor):
    assert check(auditor, data("crowd", values={"people": people(3)}), "crowd") == \
        ["count_below_k"]
    unmarked = {"people": {key: value for key, value in people(0).items()
                           if key != "suppressed"}}
    assert check(auditor, data("crowd", 1, unmarked), "crowd") == ["count_below_k"]


def test_suppressed_value_still_carries_a_number(auditor):
    values = {"people": people(3, suppressed=True, reason="below_k")}
    assert check(auditor, data("crowd", values=values), "crowd") == ["suppressed_value"]
    zero = {"people": people(0, suppressed=True, reason="below_k")}
    assert check(auditor, data("crowd", 1, zero), "crowd") == ["suppressed_value"]


@pytest.mark.parametrize("text, kind", [
    ("PMS5003 b8:27:eb:12:34:56", "MAC"), ("PMS5003 B827EB123456", "MAC"),
    ("unit 490154203237518", "IMEI"), ("owner jan.jansen@example.nl", "e-mail"),
    ("from 192.168.1.20", "IPv4"), ("from fe80::1c2b:3ff:fe4d:5e6f", "IPv6"),
    ("from 2001:db8::1", "IPv6")])
def test_identifier_in_data_and_events(auditor, text, kind):
    found = auditor.feed(f"{ROOT}/data/pm", raw(data(model=text)))
    assert rules(found) == ["identifier"] and kind in found[0].message
    event = {**example("events"), "gateway": GW, "message": f"sensor answered {text}"}
    assert rules(auditor.feed(f"{ROOT}/events", raw(event))) == ["identifier"]


def test_identifier_scan_leaves_timestamps_versions_and_citations_alone():
    for text in ("2026-01-01T10:00:00.125Z", "10:00:00", "0.1.0", "Plantower PMS5003",
                 "https://doi.org/10.5194/amt-14-4617-2021", "3f2a9c4e", "ug/m3",
                 "Atmos. Meas. Tech. 14, 4617–4637", "::"):
        assert identifiers(text) == [], text


def test_not_native_format_is_noted_not_audited():
    doc = manifest()
    doc["contract"]["format"] = "senml"
    auditor = Auditor(PREFIX, GW)
    auditor.feed(f"{ROOT}/manifest", raw(doc), True)
    pack = [{"bn": f"urn:dev:edgeagent:{GW}:pm:", "n": "pm25:mean", "u": "kg/m3", "v": 8e-9}]
    found = auditor.feed(f"{ROOT}/data/pm", raw(pack))
    assert rules(found) == ["not_audited"] and "format senml" in found[0].message
    assert found[0].severity == "info"
    assert auditor.feed(f"{ROOT}/data/pm", raw(pack)) == []  # noted once per topic
    leak = [{"bn": f"urn:dev:edgeagent:{GW}:pm:", "n": "host", "vs": "10.0.0.7"}]
    assert rules(auditor.feed(f"{ROOT}/data/pm", raw(leak))) == ["identifier"]
    assert rules(auditor.feed(f"{ROOT}/data/pm", b"<xml/>")) == ["not_json"]
    assert auditor.report().counts == {"identifier": 1, "not_audited": 1, "not_json": 1}
    assert [v.rule for v in auditor.report().failures] == ["identifier", "not_json"]


def test_every_rule_is_tested_and_documented():
    tested = Path(__file__).read_text()
    documented = (Path(__file__).resolve().parent.parent / "docs" / "audit.md").read_text()
    for rule in RULES:
        assert f'"{rule}"' in tested, rule
        assert f"`{rule}`" in documented, rule


def test_duplicates_all_gateways_and_the_report():
    auditor = Auditor(PREFIX, None)
    other = manifest()
    other["gateway"], other["contract"]["topic_root"] = "gw-2", f"{PREFIX}/gw-2"
    auditor.feed(f"{ROOT}/manifest", raw(manifest()), True)
    auditor.feed(f"{PREFIX}/gw-2/manifest", raw(other), True)
    bad = raw(data("crowd", 7, {"people": people(2)}, gateway="gw-2"))
    assert rules(auditor.feed(f"{PREFIX}/gw-2/data/crowd", bad)) == ["count_below_k"]
    assert auditor.feed(f"{PREFIX}/gw-2/data/crowd", bad) == []  # QoS 1 duplicate
    assert auditor.feed(f"{PREFIX}/gw-2/data/pm", raw(data(gateway="gw-2"))) == []
    assert auditor.feed("elsewhere/gw-3/data/pm", b"x") == []  # not below the prefix
    report = auditor.report()
    assert report.counts == {"count_below_k": 1} and report.gateways == [GW, "gw-2"]
    (violation,) = report.violations
    assert (violation.gateway, violation.topic, violation.seq) == ("gw-2", "data/crowd", 7)
    assert "count_below_k" in report.text() and "FAILED: 1 violation" in report.text()
    assert json.loads(json.dumps(report.to_json()))["violations"][0]["severity"] == "error"
    single = Auditor(PREFIX, GW)
    assert single.feed(f"{PREFIX}/gw-2/data/crowd", bad) == [] and single.messages == 0


# -- (2) acceptance: the real agent on simulated sensors ----------------------------------------
@pytest.mark.broker
@pytest.mark.parametrize("data_format", ["native", "fiware"])
def test_the_demo_agent_has_no_violations(broker, tmp_path, data_format):
    config = simulated_config(broker.port, tmp_path / "state")
    config["mqtt"]["format"] = data_format
    agent = Agent(validate_config(config))

    async def scenario():
        listening = asyncio.create_task(audit("127.0.0.1", broker.port, PREFIX, "test-gw",
                                              2.5))
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            return await listening
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    report = asyncio.run(scenario())
    assert report.gateways == ["test-gw"]
    for topic in ("status", "manifest", "events", "health", "data/air", "data/crowd"):
        assert report.topics.get(f"test-gw/{topic}", 0) >= 1, report.topics
    if data_format == "native":
        assert report.violations == [], report.text()
    else:  # data in another encoding are noted, everything else is audited
        assert report.ok and report.counts == {"not_audited": 2}, report.text()


# -- (3) a deliberately broken policy on a real broker ------------------------------------------
def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="broken-gw",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, doc: Any, retain: bool = False) -> None:
    payload = doc if isinstance(doc, bytes) else raw(doc)
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)


BROKEN = [  # (seq, sensor, message, expected rules)
    (1, "crowd", data("crowd", 1, {"people": people(3)}), {"count_below_k"}),
    (2, "crowd", data("crowd", 2, seconds=10), {"window_mismatch", "window_below_minimum"}),
    (3, "pm", data("pm", 3, {"pm25": pm25(mean=8.0, stddev=0.5)}), {"undeclared_statistic"}),
    (4, "pm", data("pm", 4, model="PMS5003 b8:27:eb:12:34:56"), {"identifier"}),
]


@pytest.mark.broker
def test_a_broken_policy_is_flagged(broker):
    client = publisher(broker.port)
    try:
        publish(client, f"{ROOT}/manifest", manifest(), retain=True)

        async def scenario():
            ready = asyncio.Event()
            listening = asyncio.create_task(audit("127.0.0.1", broker.port, PREFIX, None,
                                                  1.0, on_subscribed=ready.set))
            await asyncio.wait_for(ready.wait(), 5)
            publish(client, f"{ROOT}/data/crowd", data("crowd", 0))  # a good one
            for _, sensor, doc, _ in BROKEN:
                publish(client, f"{ROOT}/data/{sensor}", doc)
            return await listening

        report = asyncio.run(scenario())
    finally:
        client.disconnect()
        client.loop_stop()
    assert report.messages == 6
    for seq, _, _, expected in BROKEN:
        assert {v.rule for v in report.violations if v.seq == seq} == expected, report.text()
    assert not [v for v in report.violations if v.seq == 0]
    assert not report.ok


# -- the command ----------------------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgeagent")
    audit_module.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["audit", *argv])


def test_cli_cannot_connect_exits_2(capsys):
    assert audit_module.main(parse("--port", str(free_port()), "--seconds", "0.1")) == 2
    assert "cannot connect" in capsys.readouterr().err
    with pytest.raises(AuditConnectionError):
        asyncio.run(audit("127.0.0.1", free_port(), seconds=0.1))


def test_cli_unreadable_config_exits_2(tmp_path, capsys):
    assert audit_module.main(parse("-c", str(tmp_path / "missing.yaml"))) == 2
    assert "cannot read the settings" in capsys.readouterr().err


@pytest.mark.broker
def test_cli_with_an_agent_config(broker, tmp_path, capsys):
    config = dump(tmp_path / "config.yaml", simulated_config(broker.port, tmp_path / "state"))
    args = parse("-c", str(config), "--seconds", "0.3", "--json")
    assert audit_module.main(args) == 0  # nothing on the broker yet
    assert json.loads(capsys.readouterr().out)["ok"] is True
    broken = copy.deepcopy(manifest())
    broken["gateway"], broken["contract"]["topic_root"] = "test-gw", f"{PREFIX}/test-gw"
    broken["privacy"]["raw_data_leaves_device"] = True
    client = publisher(broker.port)
    try:
        publish(client, f"{PREFIX}/test-gw/manifest", broken, retain=True)
        assert audit_module.main(parse("-c", str(config), "--seconds", "0.3")) == 1
        out = capsys.readouterr().out
        assert "raw_data_declared" in out and "FAILED" in out
        publish(client, f"{PREFIX}/test-gw/manifest", b"", retain=True)  # clean up
    finally:
        client.disconnect()
        client.loop_stop()


def test_precision_beyond_the_declared_decimals(auditor):
    finer = {"pm25": {**pm25(), "mean": 12.3456}}
    assert check(auditor, data(values=finer)) == ["precision_exceeded"]


def test_differential_privacy_declared_but_not_applied():
    doc = manifest()
    doc["privacy"].update(preset="research-dp", dp={
        "mechanism": "geometric", "epsilon_per_window": 0.1, "daily_budget": 30})
    doc["privacy"]["classes"]["people_count"].update(k=None)
    doc["sensors"][1]["streams"][0]["k"] = None
    auditor = Auditor(PREFIX, GW)
    assert rules(auditor.feed(f"{ROOT}/manifest", raw(doc), True)) == []
    plain = {key: value for key, value in people(12).items() if key != "k"}
    noised = {**plain, "dp": {"epsilon": 0.1, "mechanism": "geometric"}}
    other = {**plain, "dp": {"epsilon": 0.5, "mechanism": "geometric"}}
    assert check(auditor, data("crowd", 1, {"people": noised}), "crowd") == []
    assert check(auditor, data("crowd", 2, {"people": plain}), "crowd") == ["dp_mismatch"]
    assert check(auditor, data("crowd", 3, {"people": other}), "crowd") == ["dp_mismatch"]


def test_noise_the_manifest_does_not_declare(auditor):
    noised = {**people(12), "dp": {"epsilon": 0.1, "mechanism": "geometric"}}
    assert check(auditor, data("crowd", values={"people": noised}), "crowd") == ["dp_mismatch"]
