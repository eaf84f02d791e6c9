"""The local web endpoints against a real Agent on simulated sensors and a real mosquitto.

Everything listens on and talks to 127.0.0.1 only; every agent, server and session is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from conftest import REPO, async_wait_for, simulated_config
from edgeagent import exports, supervisor
from edgeagent.config import validate_config
from edgeagent.supervisor import Agent, RecoveryStep, SensorState
from edgeagent.web import (
    METRICS_CONTENT_TYPE,
    WebServer,
    _Exposition,
    escape_label,
    is_loopback,
    render_metrics,
)

HEALTH_SCHEMA = json.loads((REPO / "deploy/schemas/health.schema.json").read_text())
TOKEN = "s3cret-token"


# -- a Prometheus text-format 0.0.4 parser, strict enough to catch format mistakes -------------
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _value(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    return float(text)


def _labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    """Parse ``{name="value",...}`` starting at ``line[pos] == '{'``; return labels and end."""
    labels: dict[str, str] = {}
    pos += 1
    while True:
        if line[pos] == "}":
            return labels, pos + 1
        match = _LABEL.match(line, pos)
        assert match, f"bad label name at {pos}: {line!r}"
        name, pos = match.group(), match.end()
        assert line[pos:pos + 2] == '="', f"expected =\" at {pos}: {line!r}"
        pos += 2
        value = []
        while line[pos] != '"':
            if line[pos] == "\\":
                escaped = line[pos + 1]
                assert escaped in '\\"n', f"bad escape \\{escaped}: {line!r}"
                value.append("\n" if escaped == "n" else escaped)
                pos += 2
            else:
                value.append(line[pos])
                pos += 1
        pos += 1
        assert name not in labels, f"duplicate label {name}: {line!r}"
        labels[name] = "".join(value)
        if line[pos] == ",":
            pos += 1
        else:
            assert line[pos] == "}", f"expected , or }} at {pos}: {line!r}"


def parse_prometheus(text: str) -> dict[str, dict[str, Any]]:
    """Families by name: {"type", "help", "samples": [(labels, value)]}; asserts the rules."""
    assert text.endswith("\n"), "the exposition must end with a line feed"
    families: dict[str, dict[str, Any]] = {}
    closed: set[str] = set()  # families whose samples ended (they must be contiguous)
    current: str | None = None
    for line in text.split("\n")[:-1]:
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert _NAME.fullmatch(name), line
                family = families.setdefault(name, {"type": None, "help": None, "samples": []})
                key = parts[1].lower()
                assert family[key] is None, f"second {parts[1]} for {name}"
                assert not family["samples"], f"{parts[1]} after samples of {name}"
                if key == "type":
                    assert parts[3] in _TYPES, line
                family[key] = parts[3] if len(parts) > 3 else ""
                if current is not None and current != name:
                    closed.add(current)
                current = name
            continue
        match = _NAME.match(line)
        assert match, f"bad sample line: {line!r}"
        name, pos = match.group(), match.end()
        labels: dict[str, str] = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = _labels(line, pos)
        rest = line[pos:].split()
        assert len(rest) in (1, 2), f"expected value [timestamp]: {line!r}"
        value = _value(rest[0])
        family = families.get(name)
        assert family is not None and family["type"], f"sample {name} without a TYPE before it"
        assert name not in closed, f"samples of {name} are not contiguous"
        if family["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} should end in _total"
            assert value >= 0, line
        assert labels not in [lab for lab, _ in family["samples"]], f"duplicate series: {line}"
        family["samples"].append((labels, value))
        if current is not None and current != name:
            closed.add(current)
        current = name
    return families


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    matches = [v for lab, v in families[name]["samples"] if lab == labels]
    assert len(matches) == 1, (name, labels, families[name]["samples"])
    return matches[0]


# -- running an agent with its web server ------------------------------------------------------
@contextlib.asynccontextmanager
async def serving(config: dict[str, Any], **web: Any) -> AsyncIterator[tuple[Agent, WebServer]]:
    """A running Agent (connected, every sensor read at least once) and its WebServer."""
    agent = Agent(validate_config(config))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    server = WebServer(agent, host="127.0.0.1", port=0, **web)
    try:
        def ready() -> bool:
            if task.done():
                task.result()  # the agent died: show why
            return (agent.publisher is not None and agent.publisher.connected
                    and len(agent.sensors) == len(config["sensors"])
                    and all(s.readings > 0 or s.state is SensorState.FAILED
                            for s in agent.sensors))

        await async_wait_for(ready, 10, "the agent to run")
        await server.start()
        yield agent, server
    finally:
        await server.stop()
        stop.set()
        await asyncio.wait_for(task, 10)


async def fetch(server: WebServer, path: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{server.port}{path}", **kwargs) as response:
        return response.status, dict(response.headers), await response.text()


def config_for(broker: Any, tmp_path: Path) -> dict[str, Any]:
    return simulated_config(broker.port, tmp_path / "state")


# -- tests ---------------------------------------------------------------------------------------
@pytest.mark.broker
def test_healthz_is_200_with_the_health_report(broker, tmp_path):
    async def scenario() -> None:
        async with serving(config_for(broker, tmp_path)) as (_, server):
            assert server.port > 0
            status, headers, body = await fetch(server, "/healthz")
            assert status == 200, body
            assert headers["Content-Type"].startswith("application/json")
            report = json.loads(body)
            assert report.pop("ok") is True
            jsonschema.validate(report, HEALTH_SCHEMA)
            assert report["gateway"] == "test-gw" and set(report["sensors"]) == {"air", "crowd"}
            assert report["mqtt"]["connected"] is True

    asyncio.run(scenario())


@pytest.mark.broker
def test_metrics_are_valid_prometheus_text_with_the_expected_series(broker, tmp_path):
    async def scenario() -> None:
        config = config_for(broker, tmp_path)
        async with serving(config) as (agent, server):
            status, headers, body = await fetch(server, "/metrics")
            assert status == 200
            assert headers["Content-Type"] == METRICS_CONTENT_TYPE
            families = parse_prometheus(body)
            agent.loop_lag_s = 0.012  # the agent's latest probe (real time): exported as is
            lag = parse_prometheus((await fetch(server, "/metrics"))[2])
            assert sample(lag, "edgeagent_event_loop_lag_seconds") == pytest.approx(0.012)

        # and the reference parser (prometheus_client) reads the same text without complaint
        from prometheus_client.parser import text_string_to_metric_families

        reference = {f.name: f for f in text_string_to_metric_families(body)}
        assert {name.removesuffix("_total") for name in families} == set(reference)
        for family in families.values():
            assert family["help"] and family["type"] in ("counter", "gauge")
        for sensor in ("air", "crowd"):
            assert sample(families, "edgeagent_sensor_readings_total", sensor=sensor) > 0
            for name in ("frame_errors", "restarts", "warmup_discarded", "duty_cycles"):
                assert sample(families, f"edgeagent_sensor_{name}_total", sensor=sensor) == 0
            for step in RecoveryStep:
                assert sample(families, "edgeagent_sensor_recovery_steps_total", sensor=sensor,
                              step=step.value) == 0
            states = {lab["state"]: v for lab, v in families["edgeagent_sensor_state"]["samples"]
                      if lab["sensor"] == sensor}
            assert set(states) == {s.value for s in SensorState}
            assert sum(states.values()) == 1 and states["ok"] == 1
        assert families["edgeagent_sensor_readings_total"]["type"] == "counter"
        assert families["edgeagent_sensor_state"]["type"] == "gauge"
        assert sample(families, "edgeagent_outbox_max_bytes") == 64 * 1024 * 1024
        assert sample(families, "edgeagent_outbox_messages") >= 0
        assert sample(families, "edgeagent_outbox_bytes") >= 0
        assert sample(families, "edgeagent_outbox_dropped_total") == 0
        assert sample(families, "edgeagent_outbox_oldest_age_seconds") >= 0
        assert sample(families, "edgeagent_mqtt_connected") == 1
        assert sample(families, "edgeagent_mqtt_reconnects_total") == 0
        assert sample(families, "edgeagent_uptime_seconds") >= 0  # rounded to 0.1 s
        assert sample(families, "edgeagent_storage_free_bytes") > 0
        assert sample(families, "edgeagent_storage_low") == 0
        assert sum(v for _, v in families["edgeagent_clock_state"]["samples"]) == 1
        assert families["edgeagent_info"]["samples"][0][0]["gateway"] == "test-gw"

    asyncio.run(scenario())


@pytest.mark.broker
def test_commissioning_page_shows_gateway_and_sensors_without_external_resources(broker,
                                                                                 tmp_path):
    async def scenario() -> tuple[str, str]:
        async with serving(config_for(broker, tmp_path)) as (agent, server):
            status, headers, page = await fetch(server, "/")
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            # The integration hook: the agent keeps the last released (gated) window body.
            agent.last_windows = {}
            release = agent.gate.release_window

            def keep(window, meta):
                released = release(window, meta)
                agent.last_windows[window.sensor_id] = released.body
                return released

            agent.gate.release_window = keep
            await async_wait_for(lambda: {"air", "crowd"} <= set(agent.last_windows), 5,
                                 "a closed window of each sensor")
            return page, (await fetch(server, "/"))[2]

    page, with_windows = asyncio.run(scenario())
    assert "test-gw" in page
    assert 'id="sensor-air"' in page and 'id="sensor-crowd"' in page
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "HEALTHY" in page and "connected" in page
    for forbidden in ("<script", "<img", "<audio", "<video", "<link", "src=", "http://",
                      "https://"):
        assert forbidden not in page.lower(), forbidden
    assert "last window" not in page  # the agent does not keep one by itself
    assert "last window" in with_windows and "pm25" in with_windows
    assert "ug/m3" in with_windows or "µg/m³" in with_windows


@pytest.mark.broker
def test_a_failed_sensor_makes_healthz_503(broker, tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "backoff_delay", lambda *a, **k: 0.01)  # fail fast
    config = config_for(broker, tmp_path)
    config["sensors"][1].update(fail_every=2, fail_with="crash")

    async def scenario() -> tuple[int, dict[str, Any], str, str]:
        async with serving(config) as (agent, server):
            await async_wait_for(lambda: agent.sensors[1].state is SensorState.FAILED, 10,
                                 "the crashing sensor to fail")
            status, _, body = await fetch(server, "/healthz")
            return status, json.loads(body), (await fetch(server, "/metrics"))[2], (
                await fetch(server, "/"))[2]

    status, report, metrics, page = asyncio.run(scenario())
    assert status == 503
    assert report.pop("ok") is False
    jsonschema.validate(report, HEALTH_SCHEMA)
    assert report["sensors"]["crowd"]["state"] == "failed"
    assert report["sensors"]["crowd"]["restarts"] == 5
    families = parse_prometheus(metrics)
    assert sample(families, "edgeagent_sensor_state", sensor="crowd", state="failed") == 1
    assert sample(families, "edgeagent_sensor_restarts_total", sensor="crowd") == 5
    assert sample(families, "edgeagent_sensor_recovery_steps_total", sensor="crowd",
                  step="reinit") >= 5
    assert "NEEDS ATTENTION" in page and "simulated bug" in page


@pytest.mark.broker
def test_token_is_required_on_every_route(broker, tmp_path):
    async def scenario() -> None:
        async with serving(config_for(broker, tmp_path), token=TOKEN) as (_, server):
            for path in ("/", "/healthz", "/metrics"):
                status, headers, _ = await fetch(server, path)
                assert status == 401, path
                assert headers["WWW-Authenticate"].startswith("Bearer")
                assert (await fetch(server, path, headers={
                    "Authorization": "Bearer wrong"}))[0] == 401
                assert (await fetch(server, path, params={"token": "s3cret"}))[0] == 401
                assert (await fetch(server, path, headers={
                    "Authorization": f"Bearer {TOKEN}"}))[0] == 200, path
                assert (await fetch(server, path, params={"token": TOKEN}))[0] == 200, path

    asyncio.run(scenario())


@pytest.mark.broker
def test_citizen_pages_are_public_and_built_by_register_exports_function(broker, tmp_path):
    """/info, /info/en, /info/qr.png need no token (the commissioning page still does)."""
    async def scenario() -> None:
        async with serving(config_for(broker, tmp_path), token=TOKEN,
                           register_url="https://reg.example/test-gw") as (agent, server):
            assert (await fetch(server, "/"))[0] == 401
            manifest = agent.manifest()
            for path, lang, other in (("/info", "nl", "info/en"), ("/info/en", "en", "../info")):
                status, headers, page = await fetch(server, path)
                assert status == 200, path
                assert headers["Content-Type"] == "text/html; charset=utf-8"
                assert headers["Content-Language"] == lang
                assert headers["Content-Security-Policy"] == \
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
                assert headers["Cache-Control"] == "no-store"
                assert page == exports.citizen_page(manifest, lang, other_page=other,
                                                    register_url="https://reg.example/test-gw")
                for forbidden in ("<script", "<img", "<link", "src=", "url("):
                    assert forbidden not in page.lower(), (path, forbidden)
            if importlib.util.find_spec("segno") is None:
                assert (await fetch(server, "/info/qr.png"))[0] == 404
                return
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{server.port}/info/qr.png") as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "image/png"
                png = await response.read()
            # register-export without --url encodes the same placeholder: the same bytes.
            assert png == exports.qr_png(exports.PAGE_URL_PLACEHOLDER.format(gateway="test-gw"))
            server.page_url = "https://www.example.org/sensoren/test-gw"
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{server.port}/info/qr.png") as response:
                assert await response.read() == exports.qr_png(server.page_url)

    asyncio.run(scenario())


def test_citizen_pages_are_503_before_the_agent_has_sensors(tmp_path):
    agent = Agent(validate_config(simulated_config(1, tmp_path / "state")))

    async def scenario() -> list[int]:
        server = WebServer(agent, port=0)
        await server.start()
        try:
            return [(await fetch(server, p))[0] for p in ("/info", "/info/en")]
        finally:
            await server.stop()

    assert asyncio.run(scenario()) == [503, 503]


@pytest.mark.broker
def test_broker_down_is_unhealthy_only_when_required(broker, tmp_path):
    async def scenario() -> None:
        async with serving(config_for(broker, tmp_path), require_broker=True) as (agent,
                                                                                  strict):
            lenient = WebServer(agent, port=0)
            await lenient.start()
            try:
                assert (await fetch(strict, "/healthz"))[0] == 200
                await asyncio.to_thread(broker.stop)
                assert agent.publisher is not None
                await async_wait_for(lambda: not agent.publisher.connected, 5, "disconnect")
                status, _, body = await fetch(strict, "/healthz")
                assert status == 503 and json.loads(body)["mqtt"]["connected"] is False
                assert (await fetch(lenient, "/healthz"))[0] == 200  # the outbox keeps data
                metrics = parse_prometheus((await fetch(lenient, "/metrics"))[2])
                assert sample(metrics, "edgeagent_mqtt_connected") == 0
            finally:
                await lenient.stop()

    asyncio.run(scenario())


def test_healthz_is_503_while_the_agent_is_not_running(tmp_path):
    agent = Agent(validate_config(simulated_config(1, tmp_path / "state")))

    async def scenario() -> list[tuple[int, str]]:
        server = WebServer(agent, port=0)
        await server.start()
        try:
            return [(s, b) for s, _, b in [await fetch(server, p)
                                           for p in ("/healthz", "/metrics", "/")]]
        finally:
            await server.stop()
            await server.stop()  # idempotent

    (health, body), (metrics, _), (page, _) = asyncio.run(scenario())
    assert (health, metrics, page) == (503, 503, 503)
    assert json.loads(body) == {"ok": False, "error": "agent not running"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gateway.local", ""])
def test_a_non_loopback_bind_without_token_is_refused(host):
    with pytest.raises(ValueError, match="without a token"):
        WebServer(object(), host=host)  # type: ignore[arg-type]
    WebServer(object(), host=host, token=TOKEN)  # type: ignore[arg-type]  # allowed


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_loopback_needs_no_token(host):
    assert is_loopback(host)
    WebServer(object(), host=host)  # type: ignore[arg-type]


def test_an_empty_token_is_refused():
    with pytest.raises(ValueError, match="token is empty"):
        WebServer(object(), token="  ")  # type: ignore[arg-type]


def test_label_values_are_escaped_per_the_text_format():
    tricky = 'a "quoted" back\\slash\nnewline'
    assert escape_label(tricky) == 'a \\"quoted\\" back\\\\slash\\nnewline'
    out = _Exposition()
    out.family("x_total", "counter", "help with \\ and\nline", [({"v": tricky}, 3)])
    out.family("y", "gauge", "g", [({}, math.inf), ({"a": "1"}, 0.5)])
    families = parse_prometheus(out.render())
    assert families["x_total"]["samples"] == [({"v": tricky}, 3.0)]
    assert families["x_total"]["help"] == "help with \\\\ and\\nline"
    assert families["y"]["samples"] == [({}, math.inf), ({"a": "1"}, 0.5)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.broker
def test_the_agent_serves_the_page_when_web_is_enabled(broker, tmp_path):
    """Config ``web:`` starts the server with the agent and stops it with the agent."""
    port = _free_port()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = simulated_config(broker.port, tmp_path / "state")
    config["web"] = {"enabled": True, "host": "127.0.0.1", "port": port,
                     "token_file": str(token)}
    agent = Agent(validate_config(config))

    async def scenario() -> tuple[int, int, str]:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await async_wait_for(lambda: agent.last_windows.get("air"), 20, "a released window")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as anonymous:
                refused = anonymous.status
            async with session.get(f"http://127.0.0.1:{port}/?token=s3cret") as page:
                text = await page.text()
                allowed = page.status
        stop.set()
        await asyncio.wait_for(task, 10)
        return refused, allowed, text

    refused, allowed, text = asyncio.run(scenario())
    assert (refused, allowed) == (401, 200)
    assert "test-gw" in text and "air" in text
    with socket.socket() as probe:  # stopped with the agent: nothing listens any more
        assert probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.broker
def test_a_web_port_in_use_is_reported_and_the_agent_measures_on(broker, recorder_factory,
                                                                 tmp_path):
    recorder = recorder_factory(broker.port, "edgeagent/v1/test-gw")
    with socket.socket() as squatter:  # another program holds the port
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        config = simulated_config(broker.port, tmp_path / "state")
        config["web"] = {"enabled": True, "port": squatter.getsockname()[1]}
        agent = Agent(validate_config(config))

        async def scenario() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await async_wait_for(lambda: len(recorder.of("data/air")) >= 2, 20, "data")
            stop.set()
            await asyncio.wait_for(task, 10)

        asyncio.run(scenario())
    (event,) = [e for e in recorder.of("events") if e["type"] == "web_unavailable"]
    assert "the local web page is not running" in event["message"]


def test_counting_sensor_figures_are_exported_and_others_have_none():
    report = json.loads((REPO / "tests" / "contract_examples" / "health.json").read_text())
    pm = report["sensors"]["pm-north"]
    report["sensors"]["door-1"] = {**pm, "driver": {
        "frames": 3000, "dropped_frames": 2, "fps": 9.98, "inference_ms": 0.21,
        "inference_ms_max": 0.9, "detector": "cnn", "runtime": "ai_edge_litert"}}
    families = parse_prometheus(render_metrics(report))
    assert sample(families, "edgeagent_sensor_frames_total", sensor="door-1") == 3000
    assert sample(families, "edgeagent_sensor_dropped_frames_total", sensor="door-1") == 2
    assert sample(families, "edgeagent_sensor_fps", sensor="door-1") == pytest.approx(9.98)
    assert sample(families, "edgeagent_board_temperature_celsius") == 51.6
    assert sample(families, "edgeagent_process_resident_memory_bytes") == 48234496
    assert sample(families, "edgeagent_alert", alert="storage_low") == 0
    assert sample(families, "edgeagent_sensor_inference_ms", sensor="door-1") == \
        pytest.approx(0.21)
    assert families["edgeagent_sensor_fps"]["type"] == "gauge"
    assert all(labels["sensor"] == "door-1"
               for labels, _ in families["edgeagent_sensor_frames_total"]["samples"])
