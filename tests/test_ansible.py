"""The Ansible role in deploy/ansible: syntax check, check mode, real runs, idempotence.

The role runs against localhost (``ansible_connection=local``) into a throw-away staging root
(``edgeagent_root``): the service user, apt and systemd tasks are switched off by their variables
(``edgeagent_manage_user/packages/service: false``), everything else runs for real — the wheel of
this checkout is built, copied and pip-installed into a venv below the root (``--no-index
--no-deps``: no network at install time, dependencies are not the role's business here), the
command symlink, certificates, key, password file, the config validated by ``edgeagent
check-config`` and the systemd unit. Owner and group are the test's own user, so nothing needs
root.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import EDGEAGENT

REPO = Path(__file__).resolve().parents[1]
ANSIBLE = REPO / "deploy" / "ansible"
ROLE = ANSIBLE / "roles" / "edgeagent"


def _playbook() -> str | None:
    near = Path(sys.executable).with_name("ansible-playbook")
    return str(near) if near.exists() else shutil.which("ansible-playbook")


PLAYBOOK = _playbook()
needs_ansible = pytest.mark.skipif(PLAYBOOK is None, reason="ansible-playbook is not installed "
                                   "(pip install ansible-core; it is in the test extra)")
#: top-level entries of the checkout a wheel does not need (the rest is copied to build it)
SKIP_FOR_WHEEL = {"tests", "bench", "docs", "build", "dist", "scripts", "systemd"}
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                   r"failed=(\d+)", re.M)

CONFIG = {
    "gateway": {"id": "ams-oost-lp0412", "site": {"name": "Oosterpark noord", "lat": 52.3595,
                                                  "lon": 4.918}},
    "mqtt": {"host": "broker.example.org", "username": "ams-oost-lp0412",
             "password_file": "/etc/edgeagent/mqtt.pass",
             "tls": {"ca": "/etc/edgeagent/ca.pem", "cert": "/etc/edgeagent/client.pem",
                     "key": "/etc/edgeagent/client.key"}},
    "sensors": [{"id": "pm-north", "driver": "pms5003", "port": "/dev/serial0"}],
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A wheel of this checkout (built from a copy, so the work tree gets no build/)."""
    if PLAYBOOK is None:
        return None
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*cache*")
    for path in REPO.iterdir():
        if path.name in SKIP_FOR_WHEEL or path.name.startswith(".") \
                or path.name.endswith(".egg-info"):
            continue
        if path.is_dir():
            shutil.copytree(path, src / path.name, ignore=ignore)
        else:
            shutil.copy2(path, src / path.name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "--disable-pip-version-check", "-w", str(work / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300, check=False)
    wheels = sorted((work / "dist").glob("edgeagent-*.whl"))
    if done.returncode != 0 or not wheels:
        print(f"cannot build a wheel, the pip task is switched off: {done.stderr[-2000:]}")
        return None
    return wheels[0]


def ansible(tmp: Path, *args: str) -> tuple[int, str, tuple[int, int, int, int] | None]:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",  # ansible insists on UTF-8
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_HOME": str(tmp / "ansible-home"),
           "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
           "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-tmp"),
           "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_LOCALHOST_WARNING": "0",
           "ANSIBLE_CONFIG": str(tmp / "no-ansible.cfg"), "ANSIBLE_DEPRECATION_WARNINGS": "0"}
    assert PLAYBOOK is not None
    done = subprocess.run([PLAYBOOK, *args], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=300, check=False)
    output = done.stdout + done.stderr
    found = RECAP.search(done.stdout)
    recap = tuple(int(n) for n in found.groups()) if found else None
    return done.returncode, output, recap  # type: ignore[return-value]


def stage(tmp: Path, wheel: Path | None) -> tuple[Path, Path]:
    """Inventory and extra vars for a run of the role into ``tmp/root``."""
    files = tmp / "files"
    files.mkdir()
    (files / "ca.pem").write_text("CA\n")
    (files / "client.pem").write_text("CERT\n")
    (files / "client.key").write_text("KEY\n")
    inventory = tmp / "inventory.ini"
    inventory.write_text("[edgeagent]\nlocalhost ansible_connection=local "
                         f"ansible_python_interpreter={sys.executable}\n")
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    variables = {
        "edgeagent_root": str(tmp / "root"),
        "edgeagent_become": False, "edgeagent_gather_facts": False,
        "edgeagent_manage_user": False, "edgeagent_manage_packages": False,
        "edgeagent_manage_service": False,
        "edgeagent_file_owner": user, "edgeagent_file_group": group,
        "edgeagent_install_package": wheel is not None,
        "edgeagent_wheel": str(wheel or ""), "edgeagent_extras": [],
        "edgeagent_pip_extra_args": "--no-index --no-deps",
        "edgeagent_venv_python": sys.executable,
        "edgeagent_venv_system_site_packages": False,
        # the staged venv has no dependencies (--no-deps): validate with this checkout's agent
        "edgeagent_check_command": " ".join([*EDGEAGENT, "check-config", "-c", "%s"]),
        "edgeagent_tls_ca_src": str(files / "ca.pem"),
        "edgeagent_tls_cert_src": str(files / "client.pem"),
        "edgeagent_tls_key_src": str(files / "client.key"),
        "edgeagent_mqtt_password": "s3cret-from-the-vault",
        "edgeagent_config": CONFIG,
    }
    extra = tmp / "vars.yml"
    extra.write_text(yaml.safe_dump(variables))
    return inventory, extra


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@needs_ansible
def test_syntax_check(tmp_path):
    code, output, _ = ansible(tmp_path, "-i", str(ANSIBLE / "inventory.example.ini"),
                              "--syntax-check", str(ANSIBLE / "site.yml"))
    assert code == 0, output
    assert "playbook: " in output


@needs_ansible
@pytest.mark.slow
def test_check_mode_then_two_real_runs_into_a_staging_root(tmp_path, wheel):
    inventory, extra = stage(tmp_path, wheel)
    root = tmp_path / "root"
    site = str(ANSIBLE / "site.yml")
    base = ("-i", str(inventory), "-e", f"@{extra}", site)

    code, output, recap = ansible(tmp_path, "--check", "--diff", *base)
    assert code == 0, output
    assert recap is not None and recap[1] > 0 and recap[3] == 0, output
    assert not root.exists() or not any(root.rglob("*")), "check mode wrote files"
    assert "s3cret-from-the-vault" not in output and "KEY" not in output  # no_log, diff: false

    code, output, recap = ansible(tmp_path, *base)
    assert code == 0, output
    assert recap is not None and recap[1] > 0, output
    etc = root / "etc" / "edgeagent"
    config = yaml.safe_load((etc / "config.yaml").read_text())
    assert config == CONFIG
    assert mode(etc / "config.yaml") == 0o640
    assert (etc / "config.yaml").stat().st_gid == os.getgid()
    assert (etc / "client.key").read_text() == "KEY\n" and mode(etc / "client.key") == 0o640
    assert (etc / "mqtt.pass").read_text() == "s3cret-from-the-vault\n"
    assert mode(etc / "mqtt.pass") == 0o640
    assert mode(etc / "ca.pem") == 0o640 and (etc / "client.pem").read_text() == "CERT\n"
    unit = root / "etc" / "systemd" / "system" / "edgeagent.service"
    assert unit.read_text() == (REPO / "systemd" / "edgeagent.service").read_text()
    if wheel is not None:
        link = root / "usr" / "local" / "bin" / "edgeagent"
        assert os.readlink(link) == "/opt/edgeagent/bin/edgeagent"  # as the gateway sees it
        venv = root / "opt" / "edgeagent"
        assert (venv / "bin" / "edgeagent").exists()
        assert list(venv.glob("lib/python*/site-packages/edgeagent-0.1.0.dist-info"))

    code, output, recap = ansible(tmp_path, *base)
    assert code == 0, output
    assert recap is not None and recap[1] == 0, f"second run changed something:\n{output}"

    # a config that check-config refuses is not installed; the running one stays
    bad = {**CONFIG, "mqtt": {**CONFIG["mqtt"], "prot": 8883}}
    (tmp_path / "bad.yml").write_text(yaml.safe_dump({"edgeagent_config": bad}))
    before = (etc / "config.yaml").read_bytes()
    code, output, recap = ansible(tmp_path, "--tags", "edgeagent_config", *base[:4],
                                  "-e", f"@{tmp_path / 'bad.yml'}", site)
    assert code != 0 and recap is not None and recap[3] == 1, output
    assert "failed to validate" in output and "mqtt.prot: unknown key" in output
    assert (etc / "config.yaml").read_bytes() == before


def test_every_role_variable_is_documented():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    readme = (ANSIBLE / "README.md").read_text()
    missing = [name for name in defaults if f"`{name}`" not in readme]
    assert not missing, f"not in deploy/ansible/README.md: {missing}"
