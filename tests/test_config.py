import subprocess
from pathlib import Path

import pytest

from conftest import EDGEAGENT
from edgeagent.config import (
    EX_CONFIG,
    ConfigError,
    load_config,
    resolve_password,
    validate_config,
)
from edgeagent.units import parse_duration, parse_size

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.yaml"))

THREE_MISTAKES = """\
gateway:
  id: gw-1
mqtt:
  host: broker.example.org
  protocl: 5
sensors:
  - id: pm-north
    driver: pms5003
    port: /dev/serial0
    baudrate: 9601
  - id: crowd
    driver: simulated
    quantities: [people]
    window: 30s
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEAGENT, *args], capture_output=True,
                          text=True, timeout=60)


def issues_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def test_check_config_prints_all_three_mistakes_with_paths_and_exits_78(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(THREE_MISTAKES)
    result = cli("check-config", "-c", str(path))
    assert result.returncode == EX_CONFIG == 78
    err = result.stderr
    assert "3 errors in" in err
    assert "mqtt.protocl: unknown key; did you mean 'protocol'?  [line 5]" in err
    assert "sensors[0].baudrate: must be 9600 (got 9601)  [line 10]" in err
    assert "sensors[1].window: 30s is below the privacy minimum of 300s for people_count" in err


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_is_valid(example):
    result = cli("check-config", "-c", str(example))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"minimal.yaml", "full.yaml", "demo.yaml"}


def test_literal_with_several_choices_lists_them(tmp_path):
    text = THREE_MISTAKES.replace("protocl: 5", 'protocol: "4"')
    assert any("mqtt.protocol: must be one of 5, 3.1.1 (got '4')" in i
               for i in issues_of(text, tmp_path))


def test_missing_file_and_bad_yaml_are_single_clear_errors(tmp_path):
    result = cli("check-config", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 78 and "cannot read config" in result.stderr
    issues = issues_of("gateway: {id: x\nmqtt: [", tmp_path)
    assert len(issues) == 1 and "not valid YAML" in issues[0] and "[line" in issues[0]


def test_missing_required_sections_are_named(tmp_path):
    issues = issues_of("gateway: {id: gw}\n", tmp_path)
    assert "mqtt: required key is missing" in issues[0]
    assert any(i.startswith("sensors: required key is missing") for i in issues)


def test_demo_preset_is_refused_for_real_sensors(tmp_path):
    text = THREE_MISTAKES.replace("  protocl: 5\n", "").replace("baudrate: 9601", "window: 60s")
    text += "privacy: {preset: demo}\n"
    issues = issues_of(text, tmp_path)
    assert any("privacy.preset: 'demo' is only for simulated sensors" in i for i in issues)


def test_raw_statistics_and_low_k_are_refused(tmp_path):
    text = (THREE_MISTAKES.replace("  protocl: 5\n", "").replace("    baudrate: 9601\n", "")
            .replace("window: 30s", "window: 15min")
            + "privacy:\n  classes:\n")
    raw = text + "    particulate: {min_window: 60s, statistics: [mean, raw]}\n"
    assert any("privacy.classes.particulate.statistics" in i and "raw or per-object" in i
               for i in issues_of(raw, tmp_path))
    low_k = text + "    people_count: {min_window: 15min, statistics: [sum], k: 2}\n"
    assert any("privacy.classes.people_count.k" in i and "at least 3" in i
               for i in issues_of(low_k, tmp_path))


def test_duplicate_ids_and_shared_serial_port(tmp_path):
    text = THREE_MISTAKES.replace("  protocl: 5\n", "").replace("    baudrate: 9601\n", "")
    text = text.replace("window: 30s", "window: 15min")
    text += "  - {id: pm-north, driver: pms5003, port: /dev/serial0}\n"
    issues = issues_of(text, tmp_path)
    assert any("sensors[2].id: duplicate id 'pm-north'" in i for i in issues)
    assert any("sensors[2].port: serial port /dev/serial0 is already used by sensors[0]" in i
               for i in issues)


def test_mac_address_as_gateway_id_is_refused(tmp_path):
    issues = issues_of(THREE_MISTAKES.replace("id: gw-1", "id: b827eb123456"), tmp_path)
    assert any(i.startswith("gateway.id: looks like a MAC address") for i in issues)


def test_password_from_file_and_env_is_never_in_the_config_dump(tmp_path, monkeypatch):
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret-value\n")
    base = {"gateway": {"id": "gw"},
            "sensors": [{"id": "s", "driver": "simulated", "quantities": ["pm"]}]}
    config = validate_config({**base, "mqtt": {"host": "h", "username": "u",
                                               "password_file": str(secret)}})
    assert resolve_password(config.mqtt) == "s3cret-value"
    assert "s3cret-value" not in repr(config) and "s3cret" not in config.fingerprint()
    monkeypatch.setenv("EA_PASS", "from-env")
    config = validate_config({**base, "mqtt": {"host": "h", "password_env": "EA_PASS"}})
    assert resolve_password(config.mqtt) == "from-env"
    monkeypatch.delenv("EA_PASS")
    with pytest.raises(ConfigError, match="EA_PASS is not set"):
        resolve_password(config.mqtt)
    with pytest.raises(ConfigError, match="not both"):
        validate_config({**base, "mqtt": {"host": "h", "password_env": "A",
                                          "password_file": str(secret)}})


def test_run_refuses_to_start_on_missing_secret_file_with_78(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gateway: {id: gw}\nmqtt: {host: 127.0.0.1, password_file: /nonexistent/p}\n"
                    "sensors: [{id: s, driver: simulated, quantities: [pm]}]\n")
    result = cli("run", "-c", str(path))
    assert result.returncode == 78
    assert "Refusing to start" in result.stderr and "mqtt.password_file" in result.stderr


def test_tls_client_cert_needs_key(tmp_path):
    issues = issues_of(THREE_MISTAKES.replace("  protocl: 5\n", "  tls: {cert: /x.pem}\n"),
                       tmp_path)
    assert any("mqtt.tls: cert and key must be given together" in i for i in issues)


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60), ("5min", 300), ("1h", 3600),
                                               ("250ms", 0.25), (90, 90), ("1.5s", 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["60 sec", "-1s", "0", True, "fast"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes():
    assert parse_size("64MiB") == 64 * 1024 * 1024
    assert parse_size("10kB") == 10_000
    with pytest.raises(ValueError):
        parse_size("lots")


def test_fingerprint_changes_with_privacy_settings():
    base = {"gateway": {"id": "gw"}, "mqtt": {"host": "h"},
            "sensors": [{"id": "s", "driver": "simulated", "window": "15min"}]}
    strict = validate_config(base)
    crowd = validate_config({**base, "privacy": {"preset": "crowd-safety"}})
    assert strict.fingerprint() != crowd.fingerprint()
    assert strict.fingerprint() == validate_config(base).fingerprint()


def test_manifest_command_prints_a_valid_manifest():
    import json

    from edgeagent import contract

    result = cli("manifest", "-c", str(REPO / "deploy" / "examples" / "full.yaml"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert contract.problems("manifest", manifest) == []
    assert manifest["privacy"]["classes"]["people_count"] == {
        "min_window_s": 900.0, "statistics": ["sum"], "k": 10, "decimals": 1}
    assert [s["id"] for s in manifest["sensors"]] == ["pm-north", "climate", "footfall"]


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("edgeagent 0.1.0")


def test_two_sensors_on_one_i2c_address_are_refused(tmp_path):
    text = ("gateway: {id: gw}\nmqtt: {host: h}\nsensors:\n"
            "  - {id: a, driver: sht4x, bus: 1, address: 0x44}\n"
            "  - {id: b, driver: bme280, bus: 1}\n"
            "  - {id: c, driver: sht3x, bus: 1, address: 0x44}\n"
            "  - {id: d, driver: sht3x, bus: 3, address: 0x44}\n")
    issues = issues_of(text, tmp_path)
    assert issues == ["sensors[2].address: I2C bus 1 address 0x44 is already used by "
                      "sensors[0]  [line 6]"]
