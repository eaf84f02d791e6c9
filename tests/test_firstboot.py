"""``edgeagent first-boot``: real files on a fake boot partition and /etc in temporary dirs."""

from __future__ import annotations

import grp
import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import EDGEAGENT
from edgeagent import firstboot
from edgeagent.cli import build_parser
from edgeagent.config import EX_CONFIG, load_config
from edgeagent.firstboot import BOOT_NAME, INSTALLED_NAME, FirstBootEnv, run

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edgeagent-firstboot.service"

CONFIG = """\
# written on the technician's laptop
gateway:
  id: ams-oost-lp0412   # configured name, never a MAC address
mqtt:
  host: broker.example.org
  username: ams-oost-lp0412
  password_file: mqtt.pass          # next to edgeagent.yaml
  tls:
    ca: /boot/firmware/edgeagent/ca.pem
    cert: "/boot/firmware/edgeagent/client.pem"
    key: /boot/firmware/edgeagent/client.key
sensors:
  - id: pm-north
    driver: pms5003
    port: /dev/serial0
"""
KEY = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n"
PASSWORD = b"hunter2-not-in-any-log\n"


def service_group() -> int | None:
    try:
        return grp.getgrnam("edgeagent").gr_gid
    except KeyError:
        return None


@pytest.fixture
def card(tmp_path: Path) -> tuple[Path, Path]:
    """A boot partition with edgeagent.yaml, a password file, a key and certificates."""
    boot, etc = tmp_path / "boot", tmp_path / "etc" / "edgeagent"
    (boot / "edgeagent").mkdir(parents=True)
    (boot / "config.txt").write_text("dtparam=uart0=on\n")  # the firmware's own files stay
    (boot / BOOT_NAME).write_text(CONFIG)
    (boot / "mqtt.pass").write_bytes(PASSWORD)
    (boot / "edgeagent" / "client.key").write_bytes(KEY)
    (boot / "edgeagent" / "client.pem").write_text("CERT\n")
    (boot / "edgeagent" / "ca.pem").write_text("CA\n")
    return boot, etc


def first_boot(boot: Path, etc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEAGENT, "first-boot", "--boot", str(boot),
                           "--etc", str(etc), *args], capture_output=True, text=True,
                          timeout=60)


def in_process(boot: Path, etc: Path, *, dry_run: bool = False,
               env: FirstBootEnv | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(boot, etc, dry_run=dry_run, env=env or FirstBootEnv(group_id=lambda _: None),
               out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def tree(*roots: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            out[str(path)] = path.read_bytes() if path.is_file() else None
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_installs_config_and_secrets_then_a_second_run_does_nothing(card):
    boot, etc = card
    done = first_boot(boot, etc)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = etc / "config.yaml"
    config = load_config(installed)  # the installed file is a valid config on its own
    assert config.mqtt.password_file == etc / "mqtt.pass"
    assert config.mqtt.tls.key == etc / "client.key"
    assert config.mqtt.tls.cert == etc / "client.pem" and config.mqtt.tls.ca == etc / "ca.pem"
    text = installed.read_text()
    assert "# written on the technician's laptop" in text  # comments and layout stay
    assert "password_file: " + str(etc / "mqtt.pass") + "          # next to" in text
    assert (etc / "client.key").read_bytes() == KEY
    assert (etc / "mqtt.pass").read_bytes() == PASSWORD
    secret_mode = 0o640 if service_group() is not None else 0o600
    assert mode(installed) == 0o640
    for name in ("client.key", "mqtt.pass", "client.pem", "ca.pem"):
        assert mode(etc / name) == secret_mode, name
    # the boot partition: secrets wiped, the config renamed with a note, the firmware untouched
    assert not (boot / BOOT_NAME).exists()
    assert not (boot / "mqtt.pass").exists() and not (boot / "edgeagent").exists()
    note = (boot / INSTALLED_NAME).read_text()
    assert "moved: edgeagent/client.key -> " + str(etc / "client.key") in note
    assert KEY.decode() not in note and "hunter2" not in note
    assert (boot / "config.txt").read_text() == "dtparam=uart0=on\n"
    assert "wiped" in done.stdout and "edgeagent doctor" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr and "c2VjcmV0" not in done.stdout

    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in etc.iterdir()}
    again = first_boot(boot, etc)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in etc.iterdir()} == before


def test_files_belong_to_the_service_group_when_it_exists(card):
    boot, etc = card
    gid = os.getgid()
    code, out, err = in_process(boot, etc, env=FirstBootEnv(group_id=lambda _: gid))
    assert code == 0, err
    for name in ("config.yaml", "client.key", "mqtt.pass"):
        assert mode(etc / name) == 0o640 and (etc / name).stat().st_gid == gid, name
    assert "root:edgeagent" in out or "edgeagent" in out
    assert "no group" not in out


def test_without_the_group_the_summary_says_how_to_fix_it(card):
    boot, etc = card
    code, out, _ = in_process(boot, etc)
    assert code == 0
    assert "no group 'edgeagent'" in out and "useradd --system" in out
    assert mode(etc / "client.key") == 0o600


def test_invalid_config_installs_nothing_and_keeps_the_card(card):
    boot, etc = card
    bad = CONFIG.replace("  host: broker.example.org\n", "  host: broker.example.org\n"
                         "  prot: 8883\n").replace("port: /dev/serial0", "port: /dev/serial0\n"
                                                   "    window: 5s")
    (boot / BOOT_NAME).write_text(bad)
    before = tree(boot)
    done = first_boot(boot, etc)
    assert done.returncode == EX_CONFIG == 78
    assert "mqtt.prot: unknown key; did you mean 'port'?  [line 6]" in done.stderr
    assert "sensors[0].window" in done.stderr and "[line 17]" in done.stderr
    assert "NOT installed" in done.stderr and "nothing was deleted" in done.stderr
    assert not etc.exists()
    assert tree(boot) == before  # the technician can fix it on the laptop


def test_an_inline_password_is_refused_with_a_hint(card):
    boot, etc = card
    (boot / BOOT_NAME).write_text(CONFIG.replace("  password_file: mqtt.pass          # next to "
                                                 "edgeagent.yaml\n", "  password: hunter2\n"))
    code, _, err = in_process(boot, etc)
    assert code == EX_CONFIG
    assert "mqtt.password: a password may not be written in the config" in err
    assert "password_file: mqtt.pass" in err and "hunter2" not in err
    assert not etc.exists() and (boot / BOOT_NAME).exists()


def test_a_secret_missing_from_the_card_is_an_error_with_its_line(card):
    boot, etc = card
    (boot / "edgeagent" / "client.key").unlink()
    before = tree(boot)
    code, _, err = in_process(boot, etc)
    assert code == EX_CONFIG
    assert ("mqtt.tls.key: TLS key not found on the boot partition: "
            f"{boot}/edgeagent/client.key") in err
    assert "[line 11]" in err
    assert not etc.exists() and tree(boot) == before


def test_dry_run_changes_nothing_and_says_what_it_would_do(card, tmp_path):
    boot, etc = card
    before = tree(tmp_path)
    done = first_boot(boot, etc, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert tree(tmp_path) == before
    out = done.stdout
    assert "Dry run: nothing is changed" in out
    assert f"would install    {etc}/config.yaml" in out
    assert f"would copy       mqtt.tls.key (TLS key) {boot}/edgeagent/client.key -> " \
           f"{etc}/client.key" in out
    assert f"would wipe       {boot}/edgeagent/client.key" in out


def test_dry_run_of_an_invalid_config_fails_the_same_way(card):
    boot, etc = card
    (boot / BOOT_NAME).write_text("gateway: {id: AA:BB:CC:DD:EE:FF}\n")
    code, _, err = in_process(boot, etc, dry_run=True)
    assert code == EX_CONFIG and "gateway.id" in err and "MAC address" in err


def test_a_path_may_not_climb_off_the_boot_partition(card):
    boot, etc = card
    (boot / BOOT_NAME).write_text(CONFIG.replace("password_file: mqtt.pass",
                                                 "password_file: ../outside.pass"))
    code, _, err = in_process(boot, etc)
    assert code == EX_CONFIG and "no '..'" in err


def test_a_file_elsewhere_is_left_alone_and_a_missing_one_is_a_warning(card):
    boot, etc = card
    (boot / BOOT_NAME).write_text(CONFIG.replace("/boot/firmware/edgeagent/ca.pem",
                                                 "/etc/edgeagent/not-here-ca.pem"))
    code, out, _ = in_process(boot, etc)
    assert code == 0
    assert "warning          mqtt.tls.ca: file not found: /etc/edgeagent/not-here-ca.pem" in out
    assert load_config(etc / "config.yaml").mqtt.tls.ca == Path("/etc/edgeagent/not-here-ca.pem")
    assert (boot / "edgeagent" / "ca.pem").exists()  # not named by the config: not touched


def test_two_files_with_one_name_get_two_copies(card):
    boot, etc = card
    (boot / "other").mkdir()
    (boot / "other" / "ca.pem").write_text("OTHER CA\n")
    (boot / BOOT_NAME).write_text(CONFIG.replace("cert: \"/boot/firmware/edgeagent/client.pem\"",
                                                 "cert: /boot/other/ca.pem"))
    code, _, err = in_process(boot, etc)
    assert code == 0, err
    tls = load_config(etc / "config.yaml").mqtt.tls
    assert tls.ca == etc / "ca.pem" and tls.cert == etc / "ca-2.pem"
    assert (etc / "ca-2.pem").read_text() == "OTHER CA\n"


def test_a_changed_config_replaces_the_old_one_which_is_kept(card):
    boot, etc = card
    etc.mkdir(parents=True)
    (etc / "config.yaml").write_text("# the old config\n")
    code, out, _ = in_process(boot, etc)
    assert code == 0
    assert (etc / "config.yaml.previous").read_text() == "# the old config\n"
    assert "replaced" in out


def test_an_interrupted_wipe_is_finished_by_the_next_boot(card, monkeypatch):
    boot, etc = card
    real_wipe = firstboot.wipe

    def failing(path: Path) -> None:
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(firstboot, "wipe", failing)
    code, out, err = in_process(boot, etc)
    assert code == firstboot.EX_CLEANUP
    assert "still on the boot partition" in out and "delete it by hand" in err
    assert (boot / BOOT_NAME).exists()  # so the service runs again at the next boot
    monkeypatch.setattr(firstboot, "wipe", real_wipe)
    code, out, _ = in_process(boot, etc)
    assert code == 0
    assert not (boot / BOOT_NAME).exists() and not (boot / "edgeagent").exists()
    assert "unchanged" in out  # the copies were already right


def test_a_run_cut_off_after_the_wipe_does_not_fail_on_the_missing_files(card):
    boot, etc = card
    assert in_process(boot, etc)[0] == 0
    (boot / BOOT_NAME).write_text(CONFIG)  # as if edgeagent.yaml had not been deleted yet
    code, out, err = in_process(boot, etc)
    assert code == 0, err
    assert "done by an earlier run" in out
    assert load_config(etc / "config.yaml").mqtt.tls.key == etc / "client.key"
    assert not (boot / BOOT_NAME).exists()


def test_leftover_copies_of_installed_files_are_wiped_without_a_config(card):
    boot, etc = card
    assert in_process(boot, etc)[0] == 0
    (boot / "edgeagent").mkdir()
    (boot / "edgeagent" / "client.key").write_bytes(KEY)  # the same bytes as installed
    (boot / "edgeagent" / "new.key").write_bytes(b"not ours")
    code, out, _ = in_process(boot, etc)
    assert code == 0 and "wiped" in out
    assert not (boot / "edgeagent" / "client.key").exists()
    assert (boot / "edgeagent" / "new.key").exists()  # not a copy of anything installed


def test_wipe_overwrites_with_zeros_before_deleting(tmp_path, monkeypatch):
    secret = tmp_path / "client.key"
    secret.write_bytes(KEY * 3000)  # larger than one write chunk
    other_name = tmp_path / "link"
    os.link(secret, other_name)  # sees the same blocks after the name is gone
    monkeypatch.setattr(firstboot.os, "ftruncate", lambda fd, size: None)
    firstboot.wipe(secret)
    assert not secret.exists()
    assert other_name.read_bytes() == bytes(len(KEY) * 3000)


def test_cli_registers_first_boot():
    args = build_parser().parse_args(["first-boot", "--boot", "/b", "--etc", "/e", "--dry-run"])
    assert args.func is firstboot.main
    assert args.boot == Path("/b") and args.etc == Path("/e") and args.dry_run
    defaults = build_parser().parse_args(["first-boot"])
    assert defaults.boot is None and defaults.etc == Path("/etc/edgeagent")


def test_nothing_on_the_card_is_nothing_to_do(tmp_path):
    code, out, _ = in_process(tmp_path, tmp_path / "etc")
    assert code == 0 and "nothing to do" in out and not (tmp_path / "etc").exists()


def test_boot_unit_runs_once_as_root_before_the_agent():
    unit: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            unit.setdefault(key.strip(), []).append(value.strip())
    assert unit["Type"] == ["oneshot"] and unit["User"] == ["root"]
    assert "|/boot/firmware/edgeagent.yaml" in unit["ConditionPathExists"]
    assert unit["Before"] == ["edgeagent.service"]
    assert unit["ExecStart"] == ["/usr/local/bin/edgeagent first-boot"]
    assert unit["WantedBy"] == ["multi-user.target"]
