"""TLS (verified by default), client certificates and passwords against a real mosquitto."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import pytest

from conftest import async_wait_for
from edgeagent.broker import Mosquitto
from edgeagent.config import resolve_password, validate_config
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
PASSWORD = "correct-horse-battery"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=edgeagent test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
                f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem",
                cwd=d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "gw", PASSWORD],
                   check=True, capture_output=True)
    (d / "mqtt.pass").write_text(PASSWORD + "\n")
    (d / "wrong.pass").write_text("not-the-password\n")
    return d


def tls_broker(pki: Path, workdir: Path, *, client_cert: bool) -> Mosquitto:
    options = (f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
               f"keyfile {pki / 'server.key'}\npassword_file {pki / 'passwd'}\n")
    if client_cert:
        options += "require_certificate true\n"
    server = Mosquitto(workdir=workdir, listener_options=options, anonymous=False)
    server.start()
    return server


def run_agent_until(config: dict, condition, timeout: float = 10.0) -> Agent:
    validated = validate_config(config)
    agent = Agent(validated, password=resolve_password(validated.mqtt))

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await async_wait_for(lambda: agent.publisher is not None and condition(agent),
                                 timeout, "the expected broker state")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    return agent


def config_for(port: int, state: Path, tls: dict, password_file: Path) -> dict:
    return {"gateway": {"id": "tls-gw"},
            "mqtt": {"host": "127.0.0.1", "port": port, "tls": tls, "username": "gw",
                     "password_file": str(password_file),
                     "reconnect": {"min": "100ms", "max": "300ms"}},
            "state_dir": str(state), "privacy": {"preset": "demo"},
            "sensors": [{"id": "air", "driver": "simulated", "quantities": ["pm"],
                         "window": "1s", "interval": "100ms"}]}


def test_tls_with_verified_server_and_password_delivers_data(pki, tmp_path,
                                                             recorder_factory, caplog):
    caplog.set_level(logging.DEBUG)
    server = tls_broker(pki, tmp_path / "broker", client_cert=False)
    try:
        recorder = recorder_factory(server.port, "edgeagent/v1/tls-gw", ca=pki / "ca.pem",
                                    username="gw", password=PASSWORD)
        config = config_for(server.port, tmp_path / "state", {"ca": str(pki / "ca.pem")},
                            pki / "mqtt.pass")
        run_agent_until(config, lambda a: len(recorder.of("data/air")) >= 2)
    finally:
        server.stop()
    assert recorder.of("status")[0] == "online"
    assert PASSWORD not in caplog.text


def test_wrong_password_is_reported_and_the_agent_keeps_running(pki, tmp_path, caplog):
    server = tls_broker(pki, tmp_path / "broker", client_cert=False)
    try:
        config = config_for(server.port, tmp_path / "state", {"ca": str(pki / "ca.pem")},
                            pki / "wrong.pass")
        agent = run_agent_until(config, lambda a: a.publisher.last_error
                                and a.sensors[0].readings > 5)
    finally:
        server.stop()
    assert "refused the connection" in agent.publisher.last_error
    assert not agent.publisher.connected
    assert "not-the-password" not in caplog.text


def test_unknown_server_certificate_is_refused_by_default(pki, tmp_path):
    server = tls_broker(pki, tmp_path / "broker", client_cert=False)
    try:  # no `ca`: the system trust store does not know our private CA
        config = config_for(server.port, tmp_path / "state", {}, pki / "mqtt.pass")
        agent = run_agent_until(config, lambda a: a.publisher.last_error)
    finally:
        server.stop()
    assert "certificate verify failed" in agent.publisher.last_error
    assert not agent.publisher.connected


def test_client_certificate(pki, tmp_path):
    server = tls_broker(pki, tmp_path / "broker", client_cert=True)
    try:
        with_cert = config_for(server.port, tmp_path / "s1", {
            "ca": str(pki / "ca.pem"), "cert": str(pki / "client.pem"),
            "key": str(pki / "client.key")}, pki / "mqtt.pass")
        agent = run_agent_until(with_cert, lambda a: a.publisher.connected)
        assert agent.publisher.last_error is None
        without = config_for(server.port, tmp_path / "s2", {"ca": str(pki / "ca.pem")},
                             pki / "mqtt.pass")
        refused = run_agent_until(without, lambda a: a.publisher.last_error)
        assert not refused.publisher.connected
    finally:
        server.stop()


def test_mqtt_3_1_1_is_selectable(broker, tmp_path, recorder_factory):
    recorder = recorder_factory(broker.port, "edgeagent/v1/old-gw")
    config = {"gateway": {"id": "old-gw"},
              "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": "3.1.1",
                       "tls": {"enabled": False}},
              "state_dir": str(tmp_path / "state"), "privacy": {"preset": "demo"},
              "sensors": [{"id": "air", "driver": "simulated", "quantities": ["pm"],
                           "window": "1s", "interval": "100ms"}]}
    run_agent_until(config, lambda a: len(recorder.of("data/air")) >= 2)
    assert recorder.of("status")[0] == "online"
