"""Command line of the ``edgeagent`` program (``edgeagent --help`` lists the commands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgeagent import __version__
from edgeagent.config import (
    DEFAULT_CONFIG,
    EX_CONFIG,
    AgentConfig,
    ConfigError,
    load_config,
    missing_files,
    resolve_password,
)
from edgeagent.outbox import OutboxError

if TYPE_CHECKING:
    from edgeagent.supervisor import Agent

EX_CANTCREAT = 73  # sysexits.h: cannot create the (state) output file


def _setup_logging(level: str) -> None:
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if under_journal else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)


def _load(path: Path, *, action: str) -> AgentConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{action}: {exc}", file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file without starting anything."""
    config = _load(args.config, action="Invalid config")
    if config is None:
        return EX_CONFIG
    for issue in missing_files(config):
        print(f"warning: {issue} (needed when the agent runs on this machine)")
    names = ", ".join(f"{s.id} ({s.driver}, {s.window:g}s)" for s in config.sensors)
    print(f"{args.config}: OK — gateway {config.gateway.id}, {len(config.sensors)} sensor(s): "
          f"{names}; privacy preset {config.privacy.preset}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT."""
    from edgeagent.supervisor import Agent

    config = _load(args.config, action="Refusing to start")
    if config is None:
        return EX_CONFIG
    problems = missing_files(config)
    try:
        password = resolve_password(config.mqtt)
    except ConfigError as exc:
        problems += exc.issues
    if problems:
        print(f"Refusing to start: {ConfigError(str(args.config), problems)}", file=sys.stderr)
        return EX_CONFIG
    _setup_logging(args.log_level or config.log.level)
    agent = Agent(config, password=password)
    try:
        asyncio.run(_run_until_signal(agent))
    except OutboxError as exc:
        print(f"Refusing to start: {exc} (check state_dir and its permissions)",
              file=sys.stderr)
        return EX_CANTCREAT
    if agent.fatal:
        print(f"edgeagent stopped: {agent.fatal}", file=sys.stderr)
        return 1
    return 0


async def _run_until_signal(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)


def cmd_manifest(args: argparse.Namespace) -> int:
    """Print the transparency manifest this config would publish."""
    from edgeagent.supervisor import Agent

    config = _load(args.config, action="Invalid config")
    if config is None:
        return EX_CONFIG
    agent = Agent(config)
    agent._build_sensors()
    if args.text:
        from edgeagent.manifest_text import manifest_text

        print(manifest_text(agent.manifest()), end="")
    else:
        print(json.dumps(agent.manifest(), indent=2, ensure_ascii=False))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Calibrate a sensor against a reference (a microphone: a 94 dB / 1 kHz calibrator)."""
    from edgeagent.clock import SystemClock
    from edgeagent.driver import DriverContext, DriverError

    config = _load(args.config, action="Invalid config")
    if config is None:
        return EX_CONFIG
    sensor = next((s for s in config.sensors if s.id == args.sensor), None)
    if sensor is None:
        known = ", ".join(s.id for s in config.sensors) or "none"
        print(f"calibrate: no sensor {args.sensor!r} in {args.config} (sensors: {known})",
              file=sys.stderr)
        return 2
    cls = config.driver_class(sensor)
    context = DriverContext(SystemClock(), state_dir=config.state_dir)
    print(f"calibrate: measuring {sensor.id} for {args.seconds:g}s against "
          f"{args.reference:g} dB; keep the calibrator on the microphone", file=sys.stderr)
    try:
        print(asyncio.run(cls.calibrate(sensor, context, args.reference, args.seconds)))
    except DriverError as exc:
        print(f"calibrate: {sensor.id}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"calibrate: cannot store the calibration in {config.state_dir}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return EX_CANTCREAT
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulated sensors → local mosquitto → a subscriber that prints what arrives."""
    from edgeagent.demo import run_demo

    return run_demo(seconds=args.seconds, embedded=args.embedded_broker)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used for the docs)."""
    parser = argparse.ArgumentParser(prog="edgeagent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("run", cmd_run, "run the agent"),
                             ("check-config", cmd_check_config, "validate a config file"),
                             ("manifest", cmd_manifest, "print the transparency manifest")):
        cmd = sub.add_parser(name, help=text, description=func.__doc__)
        cmd.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                         help=f"config file (default {DEFAULT_CONFIG})")
        cmd.set_defaults(func=func)
        if name == "run":
            cmd.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
        if name == "manifest":
            cmd.add_argument("--text", action="store_true",
                             help="plain text for people instead of JSON")
    from edgeagent import audit, doctor, exports, firstboot, listen, scan

    doctor.add_parser(sub)
    scan.add_parser(sub)
    listen.add_parser(sub)
    audit.add_parser(sub)
    exports.add_parser(sub)
    firstboot.add_parser(sub)
    calibrate = sub.add_parser("calibrate", help="calibrate a sensor against a reference",
                               description=cmd_calibrate.__doc__)
    calibrate.add_argument("sensor", help="sensor id from the config")
    calibrate.add_argument("--reference", type=float, default=94.0,
                           help="level of the calibrator in dB (default 94.0)")
    calibrate.add_argument("--seconds", type=float, default=10.0,
                           help="how long to measure (default 10)")
    calibrate.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                           help=f"config file (default {DEFAULT_CONFIG})")
    calibrate.set_defaults(func=cmd_calibrate)
    demo = sub.add_parser("demo", help="run on simulated sensors with a local broker",
                          description=cmd_demo.__doc__)
    demo.add_argument("--seconds", type=float, default=None,
                      help="stop after this many seconds (default: until Ctrl-C)")
    demo.add_argument("--embedded-broker", action="store_true",
                      help="use the built-in demo broker even if mosquitto is installed")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgeagent`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
