"""End to end against a real mosquitto on 127.0.0.1: the agent runs as a real process."""

from __future__ import annotations

import datetime
import itertools
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EDGEAGENT, dump, simulated_config, wait_for

pytestmark = pytest.mark.broker
ROOT = "edgeagent/v1/test-gw"
STREAMS = ("data/air", "data/crowd", "events")


class AgentProcess:
    """``edgeagent run`` in a subprocess, stopped by PID."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*EDGEAGENT, "run", "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def agent_factory(tmp_path):
    made: list[AgentProcess] = []

    def make(config: dict) -> AgentProcess:
        agent = AgentProcess(dump(tmp_path / "config.yaml", config), tmp_path / "agent.log")
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.stop()


def parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def assert_no_holes(recorder, suffix: str) -> list[int]:
    seqs = recorder.seqs(suffix)
    assert seqs, f"nothing received on {suffix}"
    unique = sorted(set(seqs))
    assert unique == list(range(unique[0], unique[-1] + 1)), f"hole in {suffix}: {unique}"
    return unique


def test_demo_command_shows_valid_data_within_5s():
    started = time.monotonic()
    result = subprocess.run([*EDGEAGENT, "demo", "--seconds", "6"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    data_times = [float(m.group(1)) for m in
                  re.finditer(r"^\s*([\d.]+)s\s+data/\S+.*\[ok\]$", result.stdout, re.M)]
    assert data_times and data_times[0] <= 5.0, result.stdout
    assert re.search(r"received \d+ messages .*; 0 invalid", result.stdout)
    assert "[simulated]" in result.stdout and "INVALID" not in result.stdout
    assert time.monotonic() - started < 30


def test_contract_messages_retained_flags_and_clean_shutdown(broker, recorder_factory,
                                                             agent_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    agent = agent_factory(simulated_config(broker.port, tmp_path / "state"))
    agent.start()
    wait_for(lambda: len(recorder.of("data/air")) >= 3 and any(
        h["mqtt"]["ack_latency_ms"] is not None and h["loop_lag_ms"] is not None
        for h in recorder.of("health")), 15, "data, and health with latency and loop lag")
    begun = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    assert time.monotonic() - begun < 5.0
    wait_for(lambda: "offline" in recorder.of("status"), 5, "offline status")

    assert recorder.invalid == []
    measured = [h for h in recorder.of("health") if h["mqtt"]["ack_latency_ms"] is not None]
    # a loopback broker acknowledges in milliseconds; an idle agent's loop is barely late
    assert 0 < measured[-1]["mqtt"]["ack_latency_ms"] < 1000
    assert 0 <= measured[-1]["loop_lag_ms"] < 1000
    retained = {topic: flag for topic, _, flag in recorder.messages}
    assert recorder.of("status")[0] == "online" and recorder.of("status")[-1] == "offline"
    manifest = recorder.of("manifest")[0]
    assert manifest["privacy"]["raw_data_leaves_device"] is False
    assert {s["id"] for s in manifest["sensors"]} == {"air", "crowd"}
    data = recorder.of("data/air")
    assert all(d["simulated"] and d["model"] == "edgeagent simulator" for d in data)
    stopping = recorder.of("events")[-1]
    assert stopping["type"] == "agent_stopping"
    # the window open at SIGTERM was closed early and flushed: data up to the stop left
    assert parse_time(stopping["time"]) - parse_time(data[-1]["window"]["end"]) < 0.25
    assert {d["window"]["seconds"] for d in data} == {1.0}
    crowd = recorder.of("data/crowd")[1:-1]  # full windows: 10 samples at 10/s on average
    assert all(d["values"]["people"]["k"] == 5 for d in crowd)
    for d in crowd:
        people = d["values"]["people"]
        assert (people["sum"] is None) == people["suppressed"]
        assert people["suppressed"] or people["sum"] >= 5
    types = [e["type"] for e in recorder.of("events")]
    assert types[0] == "agent_started" and types[-1] == "agent_stopping"
    assert retained.get("data/air") is False
    for suffix in STREAMS:
        assert_no_holes(recorder, suffix)
    # a subscriber arriving later sees the retained status and manifest
    late = recorder_factory(broker.port, ROOT, client_id="late")
    wait_for(lambda: late.of("manifest") and late.of("status"), 5, "retained messages")
    assert late.of("status") == ["offline"]


def test_sigint_also_stops_cleanly(broker, recorder_factory, agent_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    agent = agent_factory(simulated_config(broker.port, tmp_path / "state"))
    agent.start()
    wait_for(lambda: recorder.of("data/air"), 15, "data")
    agent.signal(signal.SIGINT)
    assert agent.wait(5) == 0


@pytest.mark.slow
def test_broker_down_for_30s_then_every_seq_arrives(broker, recorder_factory, agent_factory,
                                                    tmp_path):
    recorder = recorder_factory(broker.port, ROOT, persistent=True, client_id="platform")
    agent = agent_factory(simulated_config(broker.port, tmp_path / "state"))
    agent.start()
    wait_for(lambda: len(recorder.of("data/air")) >= 3, 15, "first data")
    before = max(recorder.seqs("data/air"))
    broker.stop()  # SIGTERM: mosquitto saves the platform's session
    time.sleep(30)  # the outage itself: the agent keeps measuring into its outbox
    broker.start()
    wait_for(lambda: max(recorder.seqs("data/air")) >= before + 32, 30,
             "the backlog of the outage")
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    wait_for(lambda: "offline" in recorder.of("status"), 5, "offline")
    for suffix in STREAMS:
        seqs = assert_no_holes(recorder, suffix)
        assert seqs[0] == 0
    assert recorder.invalid == []
    air = assert_no_holes(recorder, "data/air")
    assert air[-1] >= before + 30


def test_kill_9_then_restart_seq_continues_and_no_window_is_lost(broker, recorder_factory,
                                                                  agent_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT, persistent=True, client_id="platform")
    config = simulated_config(broker.port, tmp_path / "state")
    agent = agent_factory(config)
    agent.start()
    wait_for(lambda: len(recorder.of("data/air")) >= 4, 15, "data before the kill")
    agent.signal(signal.SIGKILL)
    agent.wait(5)
    killed_at = {s: max(recorder.seqs(s), default=-1) for s in STREAMS}
    outbox = tmp_path / "state" / "outbox.sqlite3"
    assert outbox.exists()
    agent.start()
    wait_for(lambda: max(recorder.seqs("data/air")) >= killed_at["data/air"] + 3, 15,
             "data after the restart")
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    for suffix in STREAMS:
        seqs = assert_no_holes(recorder, suffix)
        assert seqs[0] == 0
        assert seqs[-1] > killed_at[suffix]  # seq continued across the kill
    starts = [e for e in recorder.of("events") if e["type"] == "agent_started"]
    assert len(starts) == 2
    # windows do not overlap across the restart: each start is after the previous end
    windows = sorted({(parse_time(d["window"]["start"]), parse_time(d["window"]["end"]))
                      for d in recorder.of("data/air")})
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(windows)), windows


def test_dead_broker_at_start_then_it_appears(broker, recorder_factory, agent_factory,
                                              tmp_path):
    port = broker.port
    recorder = recorder_factory(port, ROOT, persistent=True, client_id="platform")
    broker.stop()  # the platform's session survives the broker restart
    agent = agent_factory(simulated_config(port, tmp_path / "state"))
    agent.start()
    time.sleep(2)  # scenario: the agent runs for a while with no broker at all
    assert agent.process.poll() is None, "the agent must keep running without a broker"
    broker.start()
    wait_for(lambda: recorder.of("data/air") and min(recorder.seqs("data/air")) == 0, 15,
             "the data measured while the broker was missing")
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    log = (tmp_path / "agent.log").read_text()
    assert f"cannot connect to broker 127.0.0.1:{port}" in log
    assert_no_holes(recorder, "data/air")


def test_systemd_notify_ready_watchdog_stopping(broker, agent_factory, tmp_path):
    import socket

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    agent = agent_factory(simulated_config(broker.port, tmp_path / "state"))
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
    with agent.log.open("ab") as out:
        agent.process = subprocess.Popen(
            [*EDGEAGENT, "run", "-c", str(agent.config)], env=env,
            stdout=out, stderr=subprocess.STDOUT)
    try:
        seen = [sock.recv(64).decode()]
        while seen.count("WATCHDOG=1") < 2:
            seen.append(sock.recv(64).decode())
        agent.signal(signal.SIGTERM)
        while "STOPPING=1" not in seen:
            seen.append(sock.recv(64).decode())
        assert agent.wait(10) == 0
    finally:
        sock.close()
    assert seen[0] == "READY=1"
    assert seen.index("STOPPING=1") > seen.index("WATCHDOG=1")


def test_startup_error_policy_stops_the_agent_with_a_reason(broker, agent_factory, tmp_path):
    config = simulated_config(broker.port, tmp_path / "state")
    config["privacy"] = {"preset": "strict"}
    config["sensors"] = [{"id": "pm", "driver": "pms5003", "port": "/dev/ttyNOPE7",
                          "startup": "error"}]
    agent = agent_factory(config)
    agent.start()
    assert agent.wait(10) == 1
    log = (tmp_path / "agent.log").read_text()
    assert "edgeagent stopped: sensor pm: cannot open serial port /dev/ttyNOPE7" in log


def test_unwritable_state_dir_is_a_clear_refusal(broker, agent_factory, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    agent = agent_factory(simulated_config(broker.port, blocker / "state"))
    agent.start()
    assert agent.wait(10) == 73
    assert "Refusing to start: cannot open outbox" in (tmp_path / "agent.log").read_text()


def test_every_hole_from_a_full_outbox_is_announced(broker, recorder_factory, agent_factory,
                                                    tmp_path):
    recorder = recorder_factory(broker.port, ROOT, persistent=True, client_id="platform")
    broker.stop()  # the platform's session survives; the gateway starts into an outage
    config = simulated_config(broker.port, tmp_path / "state", outbox={"max_bytes": "3KiB"})
    agent = agent_factory(config)
    agent.start()
    time.sleep(4)  # scenario: four seconds of 1 s windows into a 3 KiB outbox
    broker.start()
    wait_for(lambda: any(e["type"] == "outbox_dropped" for e in recorder.of("events")), 15,
             "drop announcements")
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    announced: dict[str, set[int]] = {}
    for e in recorder.of("events"):
        if e["type"] == "outbox_dropped":
            d = e["details"]
            announced.setdefault(d["stream"], set()).update(
                range(d["first_seq"], d["last_seq"] + 1))
            if d["stream"].startswith("data/"):
                assert e["sensor"] == d["stream"].removeprefix("data/")
    holes = 0
    for suffix in ("data/air", "data/crowd", "events"):
        received = set(recorder.seqs(suffix))
        for doc in recorder.of(suffix):  # a merged window stands for the seqs it replaced
            if "coarsened" in doc:
                received |= set(range(doc["coarsened"]["seq_first"],
                                      doc["coarsened"]["seq_last"] + 1))
        missing = set(range(max(received) + 1)) - received
        holes += len(missing)
        assert missing <= announced.get(suffix, set()), "\n".join(
            f"{e['seq']} {e['type']} {e['details']}" for e in recorder.of("events"))
        assert not (announced.get(suffix, set()) & received)  # announced = really dropped
    assert holes, "a 3 KiB outbox must have dropped something in four seconds"


def test_sigterm_without_a_broker_still_exits_in_time_and_keeps_the_data(
        broker, recorder_factory, agent_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT, persistent=True, client_id="platform")
    broker.stop()
    agent = agent_factory(simulated_config(broker.port, tmp_path / "state"))
    agent.start()
    time.sleep(2.5)  # scenario: measuring with no broker at all
    begun = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    assert time.monotonic() - begun < 5.0
    broker.start()
    agent.start()  # the next start delivers what the first one measured
    wait_for(lambda: any(e["type"] == "agent_stopping" for e in recorder.of("events")), 15,
             "the first run's backlog")
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    air = assert_no_holes(recorder, "data/air")
    assert air[0] == 0 and len(air) >= 3
    stopping = next(e for e in recorder.of("events") if e["type"] == "agent_stopping")
    first_run = [d for d in recorder.of("data/air")
                 if parse_time(d["window"]["end"]) <= parse_time(stopping["time"]) + 0.01]
    assert first_run and first_run[-1]["window"]["partial"]  # flushed to disk at SIGTERM
