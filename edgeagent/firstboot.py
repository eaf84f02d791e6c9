"""``edgeagent first-boot``: install the config a technician left on the SD card's boot partition.

The technician writes ``edgeagent.yaml`` (and the files it names: MQTT password file, TLS key,
client certificate, CA, web token) to the boot partition from a laptop — on Raspberry Pi OS
Bookworm that is the FAT partition mounted at ``/boot/firmware`` (older images: ``/boot``). At
boot, ``systemd/edgeagent-firstboot.service`` runs this command as root before the agent:

1. ``edgeagent.yaml`` is validated by the agent's own validator. On any error nothing is
   installed and nothing is deleted; every problem is printed with its path and line and the
   exit code is 78 (EX_CONFIG), so the technician can fix the file on a laptop.
2. Every file the config names on the boot partition is copied to ``/etc/edgeagent/`` (mode
   0640, owner root, group ``edgeagent``; 0600 root-only while that group does not exist yet).
   Paths may be written as ``/boot/firmware/...``, ``/boot/...`` or relative to
   ``edgeagent.yaml`` (for ``mqtt.password_file``, ``mqtt.tls.ca/cert/key`` and
   ``web.token_file``). A named file that is missing there is an error like any other.
3. The config is installed atomically as ``/etc/edgeagent/config.yaml`` (0640 root:edgeagent)
   with those paths rewritten to the copies; only the path values change, comments and layout
   stay. A different config already there is kept as ``config.yaml.previous``.
4. The boot partition is cleaned: ``edgeagent.yaml`` is replaced by ``edgeagent.yaml.installed``
   — the config exactly as installed (it can hold no secret: the config model refuses an inline
   password) under a header that says when and which files were moved — and every copied file
   is overwritten with zeros, fsync'ed, truncated and deleted. On FAT and on flash this is best
   effort: the card's controller may keep old blocks, so a card that left your hands with keys
   on it means those keys should be rotated.

The order (copies and config first, then ``.installed``, then the wipe, ``edgeagent.yaml`` last)
makes an interrupted run safe to repeat: the next boot runs it again, and files the
``.installed`` header lists as moved whose copy exists are taken as done. A run with nothing new
changes nothing and says so. ``--dry-run`` validates and prints the same plan with "would".
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import yaml

from edgeagent.config import (
    EX_CONFIG,
    AgentConfig,
    ConfigError,
    ConfigIssue,
    _read_yaml,
    validate_config,
)

BOOT_DIRS = (Path("/boot/firmware"), Path("/boot"))
DEFAULT_ETC = Path("/etc/edgeagent")
BOOT_NAME = "edgeagent.yaml"
INSTALLED_NAME = "edgeagent.yaml.installed"
CONFIG_NAME = "config.yaml"
PREVIOUS_NAME = "config.yaml.previous"
SERVICE_GROUP = "edgeagent"
EX_CANTCREAT = 73  # sysexits.h: an output file could not be written
EX_CLEANUP = 1  # installed, but secrets could not be removed from the boot partition

#: Config keys that name a file; a relative value is read next to edgeagent.yaml.
FILE_KEYS: dict[tuple[str, ...], str] = {
    ("mqtt", "password_file"): "password file",
    ("mqtt", "tls", "key"): "TLS key",
    ("mqtt", "tls", "cert"): "client certificate",
    ("mqtt", "tls", "ca"): "CA certificate",
    ("web", "token_file"): "web token file",
}
HEADER_START = "# --- edgeagent first-boot ---"
HEADER_END = "# --- end of first-boot note ---"
_MOVED = re.compile(r"^# moved: (?P<source>.+) -> (?P<target>/.+)$")
_PLAIN = re.compile(r"/[A-Za-z0-9/_.+@-]*")
_CHUNK = 64 * 1024


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FirstBootEnv:
    """The OS boundary: the service group, the effective uid and the clock (tests fake them)."""

    group_id: Callable[[str], int | None] = _group_id
    euid: Callable[[], int] = os.geteuid
    now: Callable[[], datetime] = _now


@dataclass
class BootFile:
    """A file the config names on the boot partition, and where its copy goes."""

    key: str  # dotted config path of the first reference, e.g. mqtt.tls.key
    what: str  # "TLS key", "password file", "file" …
    source: Path  # on the boot partition
    rel: str  # source relative to the boot partition
    target: Path  # the copy under /etc/edgeagent
    nodes: list[yaml.ScalarNode] = field(default_factory=list)
    done_before: bool = False  # an interrupted earlier run already copied and wiped it


@dataclass
class Plan:
    """Everything one run would do, worked out before anything is written."""

    boot: Path
    etc: Path
    config: AgentConfig
    text: str  # the config as it will be installed
    files: list[BootFile]
    warnings: list[str]
    group: int | None

    @property
    def boot_file(self) -> Path:
        """``edgeagent.yaml`` on the boot partition."""
        return self.boot / BOOT_NAME

    @property
    def target(self) -> Path:
        """The installed config."""
        return self.etc / CONFIG_NAME


# -- finding the boot partition and the previous run ------------------------------------------
def find_boot(boot: Path | None) -> Path:
    """The boot partition: as given, else the first of /boot/firmware, /boot that has our file."""
    if boot is not None:
        return boot.absolute()
    for candidate in BOOT_DIRS:
        if (candidate / BOOT_NAME).exists() or (candidate / INSTALLED_NAME).exists():
            return candidate
    return next((d for d in BOOT_DIRS if d.is_dir()), BOOT_DIRS[0])


def _previous_moves(boot: Path) -> dict[str, Path]:
    """``rel → target`` of the files an earlier run moved (from the ``.installed`` header)."""
    try:
        text = (boot / INSTALLED_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    header, _ = _split_header(text)
    moves = {}
    for line in header.splitlines():
        found = _MOVED.match(line)
        if found:
            moves[found["source"]] = Path(found["target"])
    return moves


def _split_header(text: str) -> tuple[str, str]:
    """Split off a first-boot header block at the top (kept when a technician renames back)."""
    if not text.startswith(HEADER_START):
        return "", text
    end = text.find(HEADER_END)
    if end < 0:
        return "", text
    cut = text.find("\n", end)
    cut = len(text) if cut < 0 else cut + 1
    return text[:cut], text[cut:]


# -- planning -----------------------------------------------------------------------------
def _scalars(node: yaml.Node | None, loc: tuple[Any, ...] = ()
             ) -> Iterator[tuple[tuple[Any, ...], yaml.ScalarNode]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _scalars(value, (*loc, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            yield from _scalars(value, (*loc, index))
    elif isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
        yield loc, node


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _on_boot(boot: Path, written: str, file_key: bool) -> str | None:
    """The path of ``written`` relative to the boot partition, or None when it is elsewhere.

    Raises:
        ValueError: a relative path that climbs out of the boot partition (``../``).
    """
    if not written.strip():
        return None
    path = PurePosixPath(os.path.normpath(written))
    if not path.is_absolute():
        if not file_key:
            return None
        if path.parts[0] == "..":
            raise ValueError("a relative path is read next to edgeagent.yaml and must stay on "
                             "the boot partition (no '..')")
        return str(path)
    for alias in (PurePosixPath(boot), *(PurePosixPath(d) for d in BOOT_DIRS)):
        if alias in path.parents:
            return str(path.relative_to(alias))
    return None


def _target_name(source: Path, taken: set[str]) -> str:
    name, n = source.name, 1
    while name in taken:
        n += 1
        name = f"{source.stem}-{n}{source.suffix}"
    taken.add(name)
    return name


def _format(value: str, original: yaml.ScalarNode, old: str) -> str:
    text = value if _PLAIN.fullmatch(value) else json.dumps(value)
    if original.style in ("|", ">") and old.endswith("\n"):
        text += "\n"
    return text


def plan(boot: Path, etc: Path, env: FirstBootEnv | None = None) -> Plan:
    """Validate ``<boot>/edgeagent.yaml`` and work out the install; raises :class:`ConfigError`.

    Nothing is written. The error lists every problem: the validator's and named files that are
    missing from the boot partition.
    """
    env = env or FirstBootEnv()
    boot, etc = boot.absolute(), etc.absolute()
    source = boot / BOOT_NAME
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(source), [ConfigIssue("", "the file is not UTF-8 text: save it "
                                                     "as UTF-8 in the editor")]) from exc
    except OSError as exc:
        raise ConfigError(str(source), [ConfigIssue("", f"cannot read: {exc.strerror}")]
                          ) from exc
    data, lines = _read_yaml(source)
    issues: list[ConfigIssue] = []
    config = None
    try:
        config = validate_config(data, source=str(source), lines=lines)
    except ConfigError as exc:
        issues += exc.issues
    previous = _previous_moves(boot)
    files: dict[str, BootFile] = {}
    warnings: list[str] = []
    taken = {CONFIG_NAME, PREVIOUS_NAME}
    for loc, node in _scalars(lines.node):
        file_key = loc in FILE_KEYS
        key, line = _dotted(loc), node.start_mark.line + 1
        try:
            rel = _on_boot(boot, node.value, file_key)
        except ValueError as exc:
            issues.append(ConfigIssue(key, f"{exc} (got {node.value!r})", line))
            continue
        if rel is None:
            if file_key and not Path(node.value).exists():
                warnings.append(f"{key}: file not found: {node.value} — the agent needs it "
                                f"there (line {line})")
            continue
        if rel in files:
            if all(n is not node for n in files[rel].nodes):
                files[rel].nodes.append(node)
            continue
        path = boot / rel
        what = FILE_KEYS.get(loc, "file")
        moved = previous.get(rel)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            issues.append(ConfigIssue(key, f"{path} on the boot partition is not a regular file",
                                      line))
            continue
        if not path.exists():
            if moved is not None and moved.is_file():
                files[rel] = BootFile(key, what, path, rel, moved, [node], done_before=True)
                taken.add(moved.name)
                continue
            issues.append(ConfigIssue(key, f"{what} not found on the boot partition: {path} "
                                      f"(copy it there next to {BOOT_NAME}, or correct the path)",
                                      line))
            continue
        files[rel] = BootFile(key, what, path, rel, etc / _target_name(path, taken), [node])
    if isinstance(data, dict) and isinstance(data.get("mqtt"), dict) \
            and "password" in data["mqtt"]:
        issues = [i for i in issues if i.path != "mqtt.password"]
        issues.append(ConfigIssue("mqtt.password", "a password may not be written in the "
                                  "config: put it alone in a file next to edgeagent.yaml (e.g. "
                                  "mqtt.pass) and write 'password_file: mqtt.pass'; first-boot "
                                  "moves it to the gateway and wipes it here",
                                  lines.at(("mqtt", "password"))))
    if issues:
        issues.sort(key=lambda issue: (issue.line is None, issue.line or 0))
        raise ConfigError(str(source), _unique(issues))
    assert config is not None
    replacements = sorted(((n, f.target) for f in files.values() for n in f.nodes),
                          key=lambda item: item[0].start_mark.index, reverse=True)
    for node, target in replacements:
        start, end = node.start_mark.index, node.end_mark.index
        text = text[:start] + _format(str(target), node, text[start:end]) + text[end:]
    _, text = _split_header(text)
    check = yaml.safe_load(text)  # the rewritten file must still be the same valid config
    config = validate_config(check, source=str(etc / CONFIG_NAME))
    return Plan(boot, etc, config, text, list(files.values()), warnings,
                env.group_id(SERVICE_GROUP))


def _unique(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen, out = set(), []
    for issue in issues:
        if (issue.path, issue.message) not in seen:
            seen.add((issue.path, issue.message))
            out.append(issue)
    return out


# -- writing ------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and FAT on some kernels) refuse fsync on a directory
    finally:
        os.close(fd)


def _write_atomic(target: Path, data: bytes, mode: int | None, group: int | None = None,
                  euid: int = 0) -> None:
    """Write via a temporary file, fsync, rename, fsync the directory.

    ``mode=None`` leaves owner and mode alone: on the FAT boot partition chmod fails (EPERM).
    """
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                 0o600 if mode is not None else 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if mode is not None:
            _own(fd, mode, group, euid)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def _own(fd: int, mode: int, group: int | None, euid: int) -> None:
    if group is not None:
        os.fchown(fd, 0 if euid == 0 else -1, group)
    elif euid == 0:
        os.fchown(fd, 0, 0)
    os.fchmod(fd, mode)


def _install(target: Path, data: bytes, mode: int, group: int | None, euid: int) -> str:
    """Install ``data`` at ``target``; ``installed``, ``replaced`` or ``unchanged``."""
    try:
        old = target.read_bytes() if target.is_file() and not target.is_symlink() else None
    except OSError:
        old = None
    if old == data:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            _own(fd, mode, group, euid)
        finally:
            os.close(fd)
        return "unchanged"
    existed = target.exists() or target.is_symlink()
    _write_atomic(target, data, mode, group, euid)
    return "replaced" if existed else "installed"


def wipe(path: Path) -> None:
    """Overwrite a file with zeros, fsync, truncate, fsync and delete it (best effort on FAT)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        zeros = bytes(_CHUNK)
        done = 0
        while done < size:
            done += os.write(fd, zeros[: min(_CHUNK, size - done)])
        os.fsync(fd)
        os.ftruncate(fd, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    _fsync_dir(path.parent)


def _remove_empty_dirs(start: Path, boot: Path) -> None:
    path = start
    while path != boot and boot in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def _header(plan_: Plan, when: datetime) -> str:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [HEADER_START,
             f"# Installed by `edgeagent first-boot` on {stamp} as {plan_.target}.",
             "# This copy holds no secrets. Files moved to the gateway (their copies here were",
             "# overwritten with zeros and deleted):"]
    lines += [f"# moved: {f.rel} -> {f.target}" for f in plan_.files] or ["#   none"]
    lines += ["# To install a changed config: edit this file, rename it to edgeagent.yaml, put",
              "# any new key or password files next to it, and boot the gateway again.",
              HEADER_END]
    return "\n".join(lines) + "\n"


# -- the run ------------------------------------------------------------------------------
@dataclass
class Report:
    """What the technician reads: one line per action, warnings, and the outcome."""

    out: TextIO
    dry_run: bool

    def line(self, action: str, text: str) -> None:
        """Print one action line (prefixed with "would" in a dry run)."""
        if self.dry_run and action not in ("warning", "error"):
            action = f"would {action}"
        print(f"  {action:<16} {text}", file=self.out)


def _owner_text(plan_: Plan, mode: int, euid: int) -> str:
    user = "root" if euid == 0 else _name(pwd.getpwuid, euid)
    group = SERVICE_GROUP if plan_.group is not None else ("root" if euid == 0 else "own group")
    return f"mode {mode:04o}, {user}:{group}"


def _name(lookup: Callable[[int], Any], number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return str(number)


def _file_mode(group: int | None) -> int:
    return 0o640 if group is not None else 0o600


def run(boot: Path | None, etc: Path, *, dry_run: bool = False,
        env: FirstBootEnv | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Do (or, with ``dry_run``, describe) the first-boot install; return the exit code."""
    env = env or FirstBootEnv()
    out = out or sys.stdout
    err = err or sys.stderr
    boot = find_boot(boot)
    etc = etc.absolute()
    source = boot / BOOT_NAME
    if not source.exists():
        return _nothing_to_do(boot, etc, dry_run, out)
    try:
        plan_ = plan(boot, etc, env)
    except ConfigError as exc:
        print(f"edgeagent first-boot: {source} was NOT installed.\n{exc}", file=err)
        print("Nothing was installed and nothing was deleted. Fix edgeagent.yaml on the boot "
              "partition (on a laptop it is the drive called 'bootfs') and boot again, or run "
              "'sudo edgeagent first-boot' after fixing it here.", file=err)
        return EX_CONFIG
    config = plan_.config
    sensors = ", ".join(f"{s.id} ({s.driver}, {s.window:g}s)" for s in config.sensors)
    print(f"edgeagent first-boot: {source} is valid — gateway {config.gateway.id}, "
          f"{len(config.sensors)} sensor(s): {sensors}", file=out)
    if dry_run:
        print("Dry run: nothing is changed. This is what first-boot would do:", file=out)
    report = Report(out, dry_run)
    euid = env.euid()
    mode = _file_mode(plan_.group)
    owner = _owner_text(plan_, mode, euid)
    if dry_run:
        _describe(plan_, report, owner, euid)
        return 0
    try:
        if not plan_.etc.is_dir():
            plan_.etc.mkdir(parents=True)
            os.chmod(plan_.etc, 0o755)  # the agent must reach its files (umask may be 077)
        statuses = [("unchanged (done by an earlier run)" if f.done_before else
                     _install(f.target, f.source.read_bytes(), mode, plan_.group, euid))
                    for f in plan_.files]
        current = plan_.target
        new = plan_.text.encode("utf-8")
        if current.is_file() and current.read_bytes() != new:
            _install(etc / PREVIOUS_NAME, current.read_bytes(), 0o640, plan_.group, euid)
            report.line("kept", f"the config that was there as {etc / PREVIOUS_NAME}")
        status = _install(current, new, 0o640, plan_.group, euid)
    except OSError as exc:
        where = exc.filename or etc
        print(f"edgeagent first-boot: cannot write {where}: {exc.strerror or exc}. Run it as "
              "root (sudo edgeagent first-boot). The boot partition was left as it was.",
              file=err)
        return EX_CANTCREAT
    config_owner = _owner_text(plan_, 0o640, euid)
    report.line(status, f"{current} ({config_owner})")
    for item, state in zip(plan_.files, statuses, strict=True):
        report.line("copied", f"{item.key} ({item.what}) {item.source} -> {item.target} "
                    f"({owner}): {state}")
    failures = _clean_boot(plan_, env, report)
    _warnings(plan_, report, euid)
    if failures:
        print("edgeagent first-boot: the config is installed, but the boot partition still "
              "holds what is listed above as 'error': delete it by hand (and rotate a key that "
              "stays on the card).", file=err)
        return EX_CLEANUP
    print("Done. Next: sudo systemctl restart edgeagent (at boot it starts by itself), then "
          "check the gateway with: edgeagent doctor", file=out)
    return 0


def _describe(plan_: Plan, report: Report, owner: str, euid: int) -> None:
    target = plan_.target
    if target.is_file():
        same = target.read_bytes() == plan_.text.encode("utf-8")
        report.line("keep" if same else "replace", f"{target} ({_owner_text(plan_, 0o640, euid)})"
                    + ("; it is already this config" if same else
                       f"; the old one kept as {plan_.etc / PREVIOUS_NAME}"))
    else:
        report.line("install", f"{target} ({_owner_text(plan_, 0o640, euid)})")
    for item in plan_.files:
        if item.done_before:
            report.line("keep", f"{item.target}: {item.key} was moved there by an earlier run")
            continue
        report.line("copy", f"{item.key} ({item.what}) {item.source} -> {item.target} ({owner})")
        report.line("wipe", f"{item.source}: overwrite with zeros, then delete")
    report.line("replace", f"{plan_.boot_file} by {INSTALLED_NAME} (the config as installed, "
                "no secrets in it)")
    _warnings(plan_, report, euid)


def _clean_boot(plan_: Plan, env: FirstBootEnv, report: Report) -> list[str]:
    failures = []
    installed = plan_.boot / INSTALLED_NAME
    try:
        _write_atomic(installed, (_header(plan_, env.now()) + plan_.text).encode("utf-8"),
                      None)
    except OSError as exc:
        failures.append(str(installed))
        report.line("error", f"cannot write {installed}: {exc.strerror or exc}")
    for item in plan_.files:
        if item.done_before or not item.source.exists():
            continue
        try:
            wipe(item.source)
        except OSError as exc:
            failures.append(str(item.source))
            report.line("error", f"{item.source} is still on the boot partition: "
                        f"{exc.strerror or exc}")
            continue
        report.line("wiped", f"{item.source} (overwritten with zeros, deleted)")
        _remove_empty_dirs(item.source.parent, plan_.boot)
    if not failures:
        try:
            plan_.boot_file.unlink()
            _fsync_dir(plan_.boot)
        except OSError as exc:
            failures.append(str(plan_.boot_file))
            report.line("error", f"cannot delete {plan_.boot_file}: {exc.strerror or exc}")
        else:
            report.line("replaced", f"{plan_.boot_file} by {INSTALLED_NAME} (the config as "
                        "installed, no secrets in it)")
    return failures


def _warnings(plan_: Plan, report: Report, euid: int) -> None:
    for warning in plan_.warnings:
        report.line("warning", warning)
    if plan_.group is None:
        names = " ".join(str(p) for p in (plan_.target, *(f.target for f in plan_.files)))
        report.line("warning", f"there is no group {SERVICE_GROUP!r} yet, so only root can "
                    "read the installed files and the agent cannot: create the service user "
                    "(sudo useradd --system --no-create-home --groups dialout,i2c,gpio,audio "
                    f"{SERVICE_GROUP}), then: sudo chgrp {SERVICE_GROUP} {names} && "
                    f"sudo chmod 0640 {names}")
    if euid != 0:
        report.line("warning", "not run as root: the files belong to you, not to root")
    if plan_.config.mqtt.password_env:
        report.line("warning", f"mqtt.password_env: set {plan_.config.mqtt.password_env} for "
                    "the service (sudo systemctl edit edgeagent: [Service] Environment=...)")


def _nothing_to_do(boot: Path, etc: Path, dry_run: bool, out: TextIO) -> int:
    installed = boot / INSTALLED_NAME
    leftovers = []
    for rel, target in _previous_moves(boot).items():
        source = boot / rel
        try:
            if source.is_file() and not source.is_symlink() and target.is_file() \
                    and source.read_bytes() == target.read_bytes():
                leftovers.append(source)
        except OSError:
            continue
    if leftovers:  # an earlier run was interrupted after the config was installed
        report = Report(out, dry_run)
        print(f"edgeagent first-boot: no {BOOT_NAME} in {boot}, but an earlier install left "
              "copies of moved files on the boot partition:", file=out)
        failed = False
        for source in leftovers:
            if dry_run:
                report.line("wipe", f"{source} (its copy is installed)")
                continue
            try:
                wipe(source)
            except OSError as exc:
                failed = True
                report.line("error", f"{source}: {exc.strerror or exc}")
            else:
                report.line("wiped", f"{source} (overwritten with zeros, deleted)")
                _remove_empty_dirs(source.parent, boot)
        return EX_CLEANUP if failed else 0
    since = ""
    if installed.exists():
        stamp = datetime.fromtimestamp(installed.stat().st_mtime, UTC)
        since = (f"; it was installed on {stamp:%Y-%m-%d %H:%M} UTC (see {installed}), "
                 f"the config in use is {etc / CONFIG_NAME}")
    print(f"edgeagent first-boot: nothing to do — no {BOOT_NAME} in {boot}{since}", file=out)
    return 0


# -- CLI ----------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``first-boot`` on the CLI's subparsers (sets ``func=main``)."""
    parser = subparsers.add_parser(
        "first-boot", help="install edgeagent.yaml from the SD card's boot partition",
        description="Validate edgeagent.yaml on the boot partition, install it as "
                    "/etc/edgeagent/config.yaml with the key and password files it names, and "
                    "wipe those from the boot partition. Exit 0 done or nothing to do, 78 "
                    "invalid config (nothing installed), 73 cannot write, 1 boot partition not "
                    "cleaned.")
    parser.add_argument("--boot", type=Path, default=None,
                        help="the boot partition (default /boot/firmware, else /boot)")
    parser.add_argument("--etc", type=Path, default=DEFAULT_ETC,
                        help=f"where to install (default {DEFAULT_ETC})")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and print what would happen; change nothing")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace, env: FirstBootEnv | None = None) -> int:
    """Run ``first-boot`` for parsed ``args``; return the exit code."""
    return run(args.boot, args.etc, dry_run=args.dry_run, env=env)


__all__ = ["BOOT_NAME", "DEFAULT_ETC", "INSTALLED_NAME", "FirstBootEnv", "Plan", "add_parser",
           "find_boot", "main", "plan", "run", "wipe"]
