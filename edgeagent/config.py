"""Configuration: one YAML file, validated by typed models that reject unknown keys.

Every error is collected and reported with its dotted path and file line, e.g.
``sensors[1].baudrate: must be one of 9600, 115200 (got 9601)  [line 14]``.
Sensor entries are validated by their driver's own ``Config`` model (found through the
driver entry points), then cross-checks run: unique ids, shared serial ports, windows against
the privacy policy.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from edgeagent.driver import Driver, QuantityClass, SensorConfig, load_driver
from edgeagent.privacy import PRESETS, PrivacyConfig
from edgeagent.statusled import StatusLedConfig
from edgeagent.units import ByteSize, Duration

EX_CONFIG = 78  # sysexits.h: configuration error; systemd is told not to restart-loop
DEFAULT_CONFIG = Path("/etc/edgeagent/config.yaml")
_MAC_LIKE = re.compile(r"([0-9a-f]{2}[:-]?){5}[0-9a-f]{2}", re.I)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Site(_Strict):
    """Where the gateway hangs (registered public location)."""

    name: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    height_m: float | None = None


class Owner(_Strict):
    """Who is responsible, as on the sign and in the sensor register."""

    name: str
    contact: str


def _gateway_id(value: object) -> object:
    if isinstance(value, str) and _MAC_LIKE.search(value):
        raise ValueError("looks like a MAC address; use a configured name such as "
                         "'ams-oost-lp0412', never a hardware identifier")
    return value


class Gateway(_Strict):
    """Identity and context of this gateway."""

    id: Annotated[str, BeforeValidator(_gateway_id),
                  Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    site: Site | None = None
    owner: Owner | None = None
    purpose: str | None = None
    legal_ground: str | None = Field(None, description="GDPR legal ground of the measurement, "
                                     "in the words of the privacy officer (e.g. 'AVG art. 6 "
                                     "lid 1 sub e: publieke taak')")


class Tls(_Strict):
    """TLS to the broker; on by default with certificate verification."""

    enabled: bool = True
    ca: Path | None = Field(None, description="CA bundle; default: the system's")
    cert: Path | None = None
    key: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> Tls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together (client certificate)")
        return self


class Reconnect(_Strict):
    """Full-jitter exponential backoff bounds for reconnecting."""

    min: Duration = 1.0
    max: Duration = 60.0


class SensorThingsSettings(_Strict):
    """Which SensorThings Datastream receives which statistic (docs/encoding-sensorthings.md)."""

    datastreams: dict[str, int | str] = Field(
        default_factory=dict, description='"<sensor>/<stream>[:<statistic>]" → Datastream id')

    @model_validator(mode="after")
    def _valid_mapping(self) -> SensorThingsSettings:
        from edgeagent.encoders.sensorthings import SensorThingsEncoder

        SensorThingsEncoder(self.datastreams)  # ValueError names the bad key or id
        return self


class HomeAssistantSettings(_Strict):
    """Home Assistant MQTT discovery of every released statistic (docs/home-assistant.md)."""

    enabled: bool = False
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_/-]*$",
                                  description="Home Assistant's discovery prefix")


class Mqtt(_Strict):
    """Broker connection."""

    host: str
    port: int = Field(8883, ge=1, le=65535)
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(lambda v: str(v))] = "5"
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    tls: Tls = Tls()
    topic_prefix: str = Field("edgeagent/v1", pattern=r"^[^#+\s]+$")
    keepalive: Duration = 60.0
    reconnect: Reconnect = Reconnect()
    format: Literal["native", "senml", "fiware", "sensorthings"] = Field(
        "native", description="Data message format: native (docs/contract.md), senml (RFC 8428), "
        "fiware (NGSI-LD Smart Data Models) or sensorthings (OGC SensorThings Observations); "
        "status, events and health stay native")
    sensorthings: SensorThingsSettings = SensorThingsSettings()
    home_assistant: HomeAssistantSettings = HomeAssistantSettings()

    @model_validator(mode="after")
    def _discovery_reads_native(self) -> Mqtt:
        if self.home_assistant.enabled and self.format != "native":
            raise ValueError(f"home_assistant discovery reads the native data messages, but "
                             f"format is {self.format}: use format native, or switch "
                             "home_assistant off")
        return self

    @model_validator(mode="after")
    def _sensorthings_mapping(self) -> Mqtt:
        if self.format == "sensorthings" and not self.sensorthings.datastreams:
            raise ValueError("format sensorthings needs sensorthings.datastreams: map each "
                             "'<sensor>/<stream>[:<statistic>]' to its Datastream id (edgeagent "
                             "docs/encoding-sensorthings.md)")
        return self

    @model_validator(mode="after")
    def _one_secret_source(self) -> Mqtt:
        if self.password_file and self.password_env:
            raise ValueError("give password_file or password_env, not both")
        return self


class OutboxSettings(_Strict):
    """Durable store-and-forward queue."""

    max_bytes: ByteSize = 64 * 1024 * 1024


class HealthSettings(_Strict):
    """Periodic health message."""

    interval: Duration = 60.0


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback address (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: may resolve to anything


class WebSettings(_Strict):
    """Local web endpoints: commissioning page, /healthz, /metrics (docs/web.md)."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="Bind address; anything but loopback needs a "
                      "token_file")
    port: int = Field(8080, ge=0, le=65535)
    token_file: Path | None = Field(None, description="File holding the bearer token")
    require_broker: bool = Field(False, description="/healthz answers 503 while the broker is "
                                 "unreachable")
    page_url: str | None = Field(None, pattern=r"^https?://\S+$", description="Public address "
                                 "of the citizen information page: the QR code on the sign "
                                 "points here")
    register_url: str | None = Field(None, pattern=r"^https?://\S+$", description="This "
                                     "sensor's entry in the sensor register, linked from the "
                                     "citizen page")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebSettings:
        if self.enabled and not is_loopback(self.host) and self.token_file is None:
            raise ValueError(f"host {self.host} is reachable from the network: set token_file "
                             "(a bearer token), or bind to 127.0.0.1")
        return self


class LogSettings(_Strict):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = "info"


class AgentConfig(_Strict):
    """The whole config file. ``sensors`` hold each driver's own validated model."""

    gateway: Gateway
    mqtt: Mqtt
    state_dir: Path = Path("/var/lib/edgeagent")
    outbox: OutboxSettings = OutboxSettings()
    privacy: PrivacyConfig = PrivacyConfig()
    health: HealthSettings = HealthSettings()
    web: WebSettings = WebSettings()
    log: LogSettings = LogSettings()
    status_led: StatusLedConfig | None = Field(None, description="A GPIO LED showing blink "
                                               "codes for the technician (docs/status-led.md)")
    sensors: list[Any] = Field(min_length=1)

    def driver_class(self, sensor: SensorConfig) -> type[Driver]:
        """The driver class of a validated sensor entry."""
        return load_driver(sensor.driver)

    def fingerprint(self) -> str:
        """``sha256:…`` of the effective config (secrets are never part of it)."""
        data = self.model_dump(mode="json")
        data["sensors"] = [s.model_dump(mode="json") for s in self.sensors]
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        return f"sha256:{digest}"


# -- errors ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigIssue:
    """One problem: dotted path, plain message, file line when known."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"  [line {self.line}]" if self.line else ""
        return f"{self.path or '(file)'}: {self.message}{where}"


@dataclass
class ConfigError(Exception):
    """All problems found in one config file."""

    source: str
    issues: list[ConfigIssue] = field(default_factory=list)

    def __str__(self) -> str:
        count = len(self.issues)
        head = f"{count} error{'s' if count != 1 else ''} in {self.source}"
        return "\n".join([head, *(f"  {issue}" for issue in self.issues)])


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic model class found at ``loc`` below ``model`` (for key suggestions)."""
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        model = _unwrap(fields[part].annotation)
    return model


def _unwrap(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, dict, Annotated):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
    return None


def _message(error: dict[str, Any], model: Any) -> str:
    kind, got = error["type"], error.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(model, tuple(error["loc"][:-1]))
        known = list(getattr(parent, "model_fields", {}))
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (
            f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = str(error["ctx"]["expected"]).replace("'", "").replace(" or ", ", ")
        word = "must be one of" if "," in expected else "must be"
        return f"{word} {expected} (got {got!r})"
    if kind == "string_pattern_mismatch" and error["loc"][-1:] == ("id",):
        return f"must be lower-case letters, digits, '-' or '_' (got {got!r})"
    text = error["msg"]
    text = text.removeprefix("Value error, ")
    text = text[:1].lower() + text[1:]
    if got is not None and not isinstance(got, dict | list) and "got" not in text:
        text += f" (got {got!r})"
    return text


def _issues(exc: ValidationError, prefix: tuple[Any, ...], model: Any,
            lines: _Lines) -> list[ConfigIssue]:
    out = []
    for error in exc.errors():
        loc = prefix + tuple(p for p in error["loc"] if not str(p).startswith("function-"))
        out.append(ConfigIssue(_dotted(loc), _message(error, model), lines.at(loc)))
    return out


# -- YAML with line numbers -----------------------------------------------------------------
class _Lines:
    """Maps a config path to the line it sits on in the YAML file."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.node = node

    def at(self, loc: tuple[Any, ...]) -> int | None:
        node, line = self.node, None
        for part in loc:
            if node is None:
                break
            line = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                match = [(k, v) for k, v in node.value if k.value == str(part)]
                if not match:
                    return line
                line, node = match[0][0].start_mark.line + 1, match[0][1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if part < len(node.value) else None
            else:
                break
        if node is not None and not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            line = node.start_mark.line + 1
        return line


def _read_yaml(path: Path) -> tuple[Any, _Lines]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue("", f"cannot read config: {exc.strerror}")]
                          ) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(str(path), [ConfigIssue(
            "", f"not valid YAML: {getattr(exc, 'problem', exc)}",
            mark.line + 1 if mark else None)]) from exc
    return data, _Lines(node)


# -- loading --------------------------------------------------------------------------------
def load_config(path: Path | str) -> AgentConfig:
    """Read and validate a config file; raises :class:`ConfigError` with every problem."""
    path = Path(path)
    data, lines = _read_yaml(path)
    return validate_config(data, source=str(path), lines=lines)


def validate_config(data: Any, *, source: str = "<config>",
                    lines: _Lines | None = None) -> AgentConfig:
    """Validate already-parsed config data (see :func:`load_config`)."""
    lines = lines or _Lines(None)
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the file must be a YAML mapping with "
                                                   "gateway, mqtt and sensors")])
    issues: list[ConfigIssue] = []
    raw_sensors = data.get("sensors")
    sensors: list[tuple[int, SensorConfig, type[Driver]]] = []
    if isinstance(raw_sensors, list):
        for index, entry in enumerate(raw_sensors):
            checked = _validate_sensor(index, entry, lines, issues)
            if checked is not None:
                sensors.append((index, *checked))
    config = None
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        issues += _issues(exc, (), AgentConfig, lines)
    try:  # validated on its own too, so sensor windows are checked even if mqtt is wrong
        privacy = PrivacyConfig.model_validate(data.get("privacy") or {})
    except ValidationError:
        privacy = None  # already reported with its path by AgentConfig
    if privacy is not None:
        issues += _cross_checks(privacy, sensors, lines)
    if config is not None:
        config = config.model_copy(update={"sensors": [s for _, s, _ in sensors]})
    if issues:
        issues.sort(key=lambda issue: (issue.line is None, issue.line or 0))
        raise ConfigError(source, issues)
    assert config is not None
    return config


def _validate_sensor(index: int, entry: Any, lines: _Lines,
                     issues: list[ConfigIssue]) -> tuple[SensorConfig, type[Driver]] | None:
    loc: tuple[Any, ...] = ("sensors", index)
    if not isinstance(entry, dict):
        issues.append(ConfigIssue(_dotted(loc), "must be a mapping with id and driver",
                                  lines.at(loc)))
        return None
    name = entry.get("driver")
    if name is None:
        issues.append(ConfigIssue(_dotted((*loc, "driver")), "required key is missing",
                                  lines.at(loc)))
        return None
    try:
        cls = load_driver(str(name))
    except (LookupError, ImportError) as exc:
        issues.append(ConfigIssue(_dotted((*loc, "driver")), str(exc),
                                  lines.at((*loc, "driver"))))
        return None
    try:
        return cls.Config.model_validate(entry), cls
    except ValidationError as exc:
        issues += _issues(exc, loc, cls.Config, lines)
        return None


def _cross_checks(privacy: PrivacyConfig,
                  sensors: list[tuple[int, SensorConfig, type[Driver]]],
                  lines: _Lines) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []

    def add(loc: tuple[Any, ...], message: str) -> None:
        out.append(ConfigIssue(_dotted(loc), message, lines.at(loc)))

    for loc_text, message in privacy.problems():
        out.append(ConfigIssue(loc_text, message, lines.at(tuple(loc_text.split(".")))))
    seen_ids: dict[str, int] = {}
    seen_ports: dict[str, int] = {}
    seen_i2c: dict[tuple[int, int], int] = {}
    seen_gpio: dict[int, int] = {}
    by_id = {sensor.id: (sensor, cls) for _, sensor, cls in sensors}
    for index, sensor, cls in sensors:
        if sensor.id in seen_ids:
            add(("sensors", index, "id"), f"duplicate id {sensor.id!r} (also sensors"
                f"[{seen_ids[sensor.id]}])")
        seen_ids.setdefault(sensor.id, index)
        bus, address = getattr(sensor, "bus", None), getattr(sensor, "address", None)
        if bus is not None and address is not None:
            if (bus, address) in seen_i2c:
                add(("sensors", index, "address"), f"I2C bus {bus} address 0x{address:02X} "
                    f"is already used by sensors[{seen_i2c[bus, address]}]")
            seen_i2c.setdefault((bus, address), index)
        port = getattr(sensor, "port", None)
        if port and not str(port).startswith("loop://"):
            if port in seen_ports:
                add(("sensors", index, "port"), f"serial port {port} is already used by "
                    f"sensors[{seen_ports[port]}]; one sensor per UART")
            seen_ports.setdefault(port, index)
        if sensor.interval > sensor.window:
            add(("sensors", index, "interval"), f"must not be longer than the window "
                f"({sensor.interval:g}s > {sensor.window:g}s)")
        if privacy.preset == "demo" and not cls.simulated:
            add(("privacy", "preset"), f"'demo' is only for simulated sensors, but sensors"
                f"[{index}] uses the {sensor.driver} driver; use 'strict' or 'crowd-safety'")
        power = sensor.power
        if power is not None:
            if power.gpio in seen_gpio:
                add(("sensors", index, "power", "gpio"), f"GPIO{power.gpio} already switches "
                    f"sensors[{seen_gpio[power.gpio]}]; one switch per sensor, or a power cycle "
                    "of one would cut the other")
            seen_gpio.setdefault(power.gpio, index)
        _particulate_checks(index, sensor, cls, by_id, add)
        for path, message in cls.config_problems(sensor):
            add(("sensors", index, *path), message)
        for quantity in sorted({s.quantity for s in cls.streams(sensor)}):
            minimum = privacy.policy_for(QuantityClass(quantity)).min_window
            if sensor.window + 1e-9 < minimum:
                add(("sensors", index, "window"), f"{sensor.window:g}s is below the privacy "
                    f"minimum of {minimum:g}s for {quantity} (preset "
                    f"{privacy.preset!r})")
    return out


def _particulate_checks(index: int, sensor: SensorConfig, cls: type[Driver],
                        by_id: dict[str, tuple[SensorConfig, type[Driver]]],
                        add: Callable[[tuple[Any, ...], str], None]) -> None:
    """Duty cycle and humidity link of a PM sensor against its driver and the other sensors."""
    loc = ("sensors", index)
    duty = getattr(sensor, "duty_cycle", None)
    if duty is not None:
        if not cls.sleeps_when_closed(sensor):
            add((*loc, "duty_cycle"), f"the {cls.model} cannot be put to sleep by command, so "
                "it cannot be duty-cycled")
        if duty.measure <= sensor.warmup:
            add((*loc, "duty_cycle", "measure"), f"must be longer than the warm-up "
                f"({duty.measure:g}s <= {sensor.warmup:g}s): nothing would be measured")
        if duty.period <= duty.measure:
            add((*loc, "duty_cycle", "period"), f"must be longer than measure "
                f"({duty.period:g}s <= {duty.measure:g}s); to measure all the time, remove "
                "duty_cycle")
        elif duty.period > sensor.window:
            add((*loc, "duty_cycle", "period"), f"must not be longer than the window "
                f"({duty.period:g}s > {sensor.window:g}s), or some windows get no measurement")
    link = getattr(sensor, "humidity", None)
    if link is None:
        return
    if link.source is None:
        if "relativeHumidity" not in {s.name for s in cls.streams(sensor)}:
            add((*loc, "humidity", "source"), f"the {cls.model} measures no humidity: name a "
                "T/RH sensor of this gateway (e.g. an sht4x entry's id)")
    elif link.source == sensor.id or link.source not in by_id:
        known = ", ".join(sorted(i for i in by_id if i != sensor.id)) or "none"
        add((*loc, "humidity", "source"), f"no other sensor with id {link.source!r} "
            f"(sensors: {known})")
    else:
        source, source_cls = by_id[link.source]
        if "relativeHumidity" not in {s.name for s in source_cls.streams(source)}:
            add((*loc, "humidity", "source"), f"sensor {link.source!r} ({source_cls.model}) "
                "has no relativeHumidity stream")
    if link.correction != "none":
        problem = cls.correction_problem(sensor, link.correction)
        if problem:
            add((*loc, "humidity", "correction"), problem)
        if link.kappa is not None and link.correction != "kappa-koehler":
            add((*loc, "humidity", "kappa"), f"kappa applies only to kappa-koehler, not "
                f"{link.correction}")


# -- secrets --------------------------------------------------------------------------------
def resolve_password(mqtt: Mqtt) -> str | None:
    """Read the MQTT password from its file or environment variable (never logged)."""
    if mqtt.password_file:
        try:
            return mqtt.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError("mqtt", [ConfigIssue("mqtt.password_file",
                                                   f"cannot read {mqtt.password_file}: "
                                                   f"{exc.strerror}")]) from exc
    if mqtt.password_env:
        value = os.environ.get(mqtt.password_env)
        if value is None:
            raise ConfigError("mqtt", [ConfigIssue("mqtt.password_env", f"environment "
                                                   f"variable {mqtt.password_env} is not set")])
        return value
    return None


def missing_files(config: AgentConfig) -> list[ConfigIssue]:
    """Referenced files that do not exist here (warnings for check-config, errors for run)."""
    out = []
    tls = config.mqtt.tls
    for name, value in (("mqtt.password_file", config.mqtt.password_file),
                        ("mqtt.tls.ca", tls.ca), ("mqtt.tls.cert", tls.cert),
                        ("mqtt.tls.key", tls.key)):
        if value is not None and not value.exists():
            out.append(ConfigIssue(name, f"file not found: {value}"))
    return out


__all__ = ["DEFAULT_CONFIG", "EX_CONFIG", "PRESETS", "AgentConfig", "ConfigError",
           "ConfigIssue", "load_config", "resolve_password", "validate_config"]
