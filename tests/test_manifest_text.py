"""`edgeagent manifest --text`: the JSON manifest's content, readable."""

import json
import subprocess
from pathlib import Path

import yaml

from conftest import EDGEAGENT

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    done = subprocess.run([*EDGEAGENT, "manifest", *args],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_text_says_what_the_json_says(tmp_path):
    config = yaml.safe_load((ROOT / "deploy/examples/full.yaml").read_text())
    config["state_dir"] = str(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    manifest = json.loads(run("-c", str(path)))
    text = run("-c", str(path), "--text")
    assert manifest["legal_ground"] in text and manifest["purpose"] in text
    assert manifest["config_hash"] in text
    for sensor in manifest["sensors"]:
        assert f"{sensor['id']}: {sensor['model']}" in text
        for stream in sensor["streams"]:
            assert f"{stream['name']} [{stream['unit']}]" in text
    people = manifest["privacy"]["classes"]["people_count"]
    assert f"counts below {people['k']} suppressed" in text
    assert "SIMULATED" in text  # the full example's footfall sensor is the simulator
    assert "in memory only, never on disk" in text
    assert f"at most {manifest['retention']['outbox_max_bytes'] / 2**20:g} MiB" in text


def test_unset_legal_ground_is_said_not_hidden(tmp_path):
    config = yaml.safe_load((ROOT / "deploy/examples/minimal.yaml").read_text())
    config["state_dir"] = str(tmp_path)
    config["gateway"].pop("legal_ground", None)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert "Legal ground:  (not configured)" in run("-c", str(path), "--text")
