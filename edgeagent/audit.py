"""``edgeagent audit``: listen to a broker and report every message that breaks the manifest.

The :class:`Auditor` is pure: it is fed ``(topic, payload, retained)`` and keeps, per gateway,
the latest retained transparency manifest. Each message is checked against the contract's JSON
Schemas (``deploy/schemas/``) and against what that manifest declares: sensors, streams,
statistics, windows, k-thresholds and suppression. Strings in data and events are scanned for
identifiers that look personal or hardware-derived (MAC, IMEI, e-mail, IP addresses).
:func:`audit` is the thin network part: a read-only paho-mqtt subscriber on
``<prefix>/<gateway or +>/#`` for a given time. See docs/audit.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import re
import ssl
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from edgeagent import contract
from edgeagent.config import _MAC_LIKE, ConfigError, load_config, resolve_password

#: rule -> (severity, meaning). ``error`` and ``warning`` count as violations, ``info`` not.
RULES: dict[str, tuple[str, str]] = {
    "schema": ("error", "the payload does not match the contract's JSON Schema (unexpected or "
               "missing fields, wrong types)"),
    "not_json": ("error", "a payload on a JSON topic is not UTF-8 JSON"),
    "unknown_topic": ("warning", "a topic below the gateway's root that the contract does not "
                      "define"),
    "topic_mismatch": ("error", "the gateway or sensor named in the payload (or the manifest's "
                       "topic_root) differs from the topic"),
    "no_manifest": ("warning", "a message arrived before any manifest of its gateway"),
    "raw_data_declared": ("error", "the manifest's privacy.raw_data_leaves_device is not false"),
    "manifest_policy": ("error", "the manifest contradicts itself: a stream's statistics beyond "
                        "its class, a window below the class minimum, a people count without k or "
                        "DP, a class without policy"),
    "unknown_sensor": ("error", "a data message for a sensor the manifest does not list"),
    "undeclared_stream": ("error", "a stream the manifest does not declare for that sensor, or "
                          "declared with another privacy class"),
    "undeclared_statistic": ("error", "a statistic not in the stream's declared statistics"),
    "window_below_minimum": ("error", "window.seconds is shorter than the class min_window_s"),
    "window_mismatch": ("error", "window.seconds differs from the sensor's declared window_s"),
    "short_window": ("error", "a window not marked partial whose end - start is shorter than "
                     "window.seconds"),
    "partial_unsuppressed": ("error", "a partial window shorter than the class minimum whose "
                             "values are not suppressed"),
    "count_below_k": ("error", "a count (counter sum or occupancy max) below k that is not "
                      "suppressed"),
    "suppressed_value": ("error", "a stream marked suppressed that still carries a number"),
    "dp_mismatch": ("error", "a count published without the declared differential-privacy "
                    "noise, or with another epsilon than the manifest's"),
    "precision_exceeded": ("error", "a statistic with more decimal places than its class's "
                           "declared decimals"),
    "identifier": ("error", "a string in data or events looks like a MAC address, an IMEI, an "
                   "e-mail address or an IP address"),
    "not_audited": ("info", "data messages in a non-native format (senml, fiware, …): only "
                    "JSON well-formedness and identifiers are checked"),
}
STATISTICS = ("mean", "min", "max", "stddev", "sum", "l10", "l50", "l90")
JSON_KINDS = ("manifest", "data", "health", "events")
_EPS = 1e-3  # seconds of slack for timestamps with milliseconds
_IMEI = re.compile(r"(?<!\d)\d{15}(?!\d)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])[0-9A-Fa-f:]*::?[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*")
#: Top-level fields whose format the schema fixes and that are random by contract.
_NOT_SCANNED = frozenset({"store"})


@dataclass(frozen=True)
class Violation:
    """One finding: which gateway, which topic, which message (``seq``), which rule."""

    gateway: str
    topic: str
    seq: int | None
    rule: str
    message: str

    @property
    def severity(self) -> str:
        """``error``, ``warning`` or ``info`` (see :data:`RULES`)."""
        return RULES[self.rule][0]

    def __str__(self) -> str:
        where = self.topic + (f" seq {self.seq}" if self.seq is not None else "")
        return f"{self.severity.upper():7} {self.rule:22} {where}: {self.message}"


@dataclass
class AuditReport:
    """The verdict: every finding, counts per rule, and what was seen."""

    violations: list[Violation] = field(default_factory=list)
    messages: int = 0
    gateways: list[str] = field(default_factory=list)
    seconds: float | None = None
    target: str | None = None
    topics: dict[str, int] = field(default_factory=dict)  # messages per <gateway>/<suffix>

    @property
    def counts(self) -> dict[str, int]:
        """Number of findings per rule (info included)."""
        return dict(sorted(Counter(v.rule for v in self.violations).items()))

    @property
    def failures(self) -> list[Violation]:
        """Findings that make the audit fail: errors and warnings, not info."""
        return [v for v in self.violations if v.severity != "info"]

    @property
    def ok(self) -> bool:
        """True when nothing but informational notes was found."""
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {"target": self.target, "seconds": self.seconds, "messages": self.messages,
                "gateways": self.gateways, "topics": self.topics, "ok": self.ok,
                "counts": self.counts,
                "violations": [{**asdict(v), "severity": v.severity}
                               for v in self.violations]}

    def text(self) -> str:
        """Human-readable report, one line per finding and a table of counts."""
        head = (f"audit of {self.target or 'messages'}"
                + (f" for {self.seconds:g}s" if self.seconds is not None else "")
                + f": {self.messages} message(s) from {len(self.gateways)} gateway(s)"
                + (f" ({', '.join(self.gateways)})" if self.gateways else ""))
        lines = [head, *(f"  {v.gateway}: {v}" for v in self.violations)]
        if self.counts:
            lines.append("rule                    count")
            lines += [f"  {rule:22} {count}" for rule, count in self.counts.items()]
        lines.append("OK: no violations" if self.ok else
                     f"FAILED: {len(self.failures)} violation(s)")
        return "\n".join(lines)


@cache
def _validator(kind: str) -> Any:
    import jsonschema  # lazily, as edgeagent.contract does

    return jsonschema.Draft202012Validator(contract.schema(kind),
                                           format_checker=jsonschema.FormatChecker())


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def identifiers(text: str) -> list[str]:
    """What kinds of personal or hardware identifiers ``text`` seems to contain."""
    found = []
    imei = _IMEI.search(text)
    # the pattern check-config refuses MAC-like gateway ids with (a bare run of decimal
    # digits that is an IMEI is reported as that only)
    if any(not (imei and match.group(0).isdigit()) for match in _MAC_LIKE.finditer(text)):
        found.append("a MAC address")
    if imei:
        found.append("an IMEI (15 digits)")
    if _EMAIL.search(text):
        found.append("an e-mail address")
    if any(_valid_ip(m.group(0)) for m in _IPV4.finditer(text)):
        found.append("an IPv4 address")
    if any(_valid_ip(m.group(0).rstrip(".")) and re.search(r"[0-9A-Fa-f]", m.group(0))
           for m in _IPV6.finditer(text)):
        found.append("an IPv6 address")
    return found


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _strings(doc: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(doc, str):
        yield path or "(root)", doc
    elif isinstance(doc, dict):
        for key, value in doc.items():
            if not path and key in _NOT_SCANNED:
                continue
            yield from _strings(value, f"{path}/{key}" if path else str(key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _strings(value, f"{path}/{index}" if path else str(index))


class Auditor:
    """Checks messages of one topic root (or all gateways under a prefix) against manifests.

    Args:
        prefix: topic prefix, e.g. ``edgeagent/v1``.
        gateway: one gateway id, or None / ``+`` for every gateway under the prefix.
    """

    def __init__(self, prefix: str = "edgeagent/v1", gateway: str | None = None) -> None:
        self.prefix = prefix.rstrip("/")
        self.gateway = None if gateway in (None, "+") else gateway
        self.manifests: dict[str, dict[str, Any]] = {}
        self.violations: list[Violation] = []
        self.messages = 0
        self._seen: set[str] = set()
        self._keys: set[tuple[Any, ...]] = set()
        self._noted: set[tuple[str, str, str]] = set()
        self._topics: Counter[str] = Counter()

    # -- input ----------------------------------------------------------------------------
    def feed(self, topic: str, payload: bytes, retained: bool = False) -> list[Violation]:
        """Check one message; returns (and keeps) the violations it caused."""
        if not topic.startswith(self.prefix + "/"):
            return []
        gateway = topic[len(self.prefix) + 1:].split("/", 1)[0]
        if self.gateway is not None and gateway != self.gateway:
            return []
        root = f"{self.prefix}/{gateway}"
        suffix = topic[len(root) + 1:]
        self.messages += 1
        self._seen.add(gateway)
        self._topics[f"{gateway}/{suffix}"] += 1
        found: list[Violation] = []

        def flag(rule: str, message: str, seq: int | None = None) -> None:
            found.append(Violation(gateway, suffix or topic, seq, rule, message))

        kind = contract.message_type(topic, root)
        if kind is None:
            flag("unknown_topic", f"{topic} is not a topic of the v1 contract")
        elif kind in ("status", "manifest") and payload == b"" and retained:
            if kind == "manifest":  # decommissioning: the retained manifest is cleared
                self.manifests.pop(gateway, None)
        else:
            self._check(kind, gateway, root, suffix, payload, flag)
        return self._keep(found)

    def _keep(self, found: list[Violation]) -> list[Violation]:
        out = []
        for violation in found:  # a QoS 1 duplicate of a message is not a second finding
            key = (violation.gateway, violation.topic, violation.seq, violation.rule,
                   violation.message)
            if violation.seq is not None and key in self._keys:
                continue
            self._keys.add(key)
            out.append(violation)
        self.violations += out
        return out

    def report(self) -> AuditReport:
        """Counts per rule and the list of findings so far."""
        return AuditReport(list(self.violations), self.messages, sorted(self._seen),
                           topics=dict(sorted(self._topics.items())))

    # -- checks ---------------------------------------------------------------------------
    def _check(self, kind: str, gateway: str, root: str, suffix: str, payload: bytes,
               flag: Callable[..., None]) -> None:
        try:
            doc = contract.decode(kind, payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            what = "UTF-8 text" if kind == "status" else "JSON"
            flag("not_json", f"payload is not {what}: {exc}")
            return
        seq = doc.get("seq") if isinstance(doc, dict) else None
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        manifest = self.manifests.get(gateway)
        if kind == "manifest":
            self._manifest(doc, gateway, root, flag)
            return
        if manifest is None and kind != "status":
            flag("no_manifest", f"{kind} message before any manifest of {gateway}", seq)
        fmt = _format(manifest)
        native = kind != "data" or (manifest is not None and fmt == "native")
        if kind == "data" and manifest is not None and fmt != "native" \
                and (gateway, suffix, fmt) not in self._noted:
            self._noted.add((gateway, suffix, fmt))  # once per data topic, not per message
            flag("not_audited", f"not audited: format {fmt} (only JSON and identifiers "
                     "are checked)")
        if native:  # data before a manifest: format unknown, identifiers only
            for path, message in self._schema(kind, doc):
                flag("schema", f"{path}: {message}", seq)
        if kind in ("data", "events"):
            for path, text in _strings(doc):
                kinds = identifiers(text)
                if kinds:
                    flag("identifier", f"{path} contains what looks like {', '.join(kinds)}: "
                         f"{text!r}", seq)
        if not isinstance(doc, dict) or kind not in ("data", "events", "health"):
            return
        if doc.get("gateway") not in (None, gateway):
            flag("topic_mismatch", f"payload names gateway {doc.get('gateway')!r}, topic "
                 f"{gateway!r}", seq)
        if kind == "data" and native and manifest is not None:
            self._data(doc, suffix, manifest, seq, flag)

    def _schema(self, kind: str, doc: Any) -> list[tuple[str, str]]:
        out = []
        for error in _validator(kind).iter_errors(doc):
            path = [str(p) for p in error.absolute_path]
            schema_path = [str(p) for p in error.absolute_schema_path]
            if kind == "data" and "then" in schema_path and error.validator == "type" \
                    and _number(error.instance):
                continue  # a number on a suppressed stream: rule suppressed_value says it
            if kind == "manifest" and path == ["privacy", "raw_data_leaves_device"]:
                continue  # rule raw_data_declared says it
            out.append(("/".join(path) or "(root)", error.message))
        return out

    def _manifest(self, doc: Any, gateway: str, root: str, flag: Callable[..., None]) -> None:
        for path, message in self._schema("manifest", doc):
            flag("schema", f"{path}: {message}")
        if not isinstance(doc, dict):
            return
        privacy = doc.get("privacy") if isinstance(doc.get("privacy"), dict) else {}
        if privacy.get("raw_data_leaves_device") is not False:
            flag("raw_data_declared", "privacy.raw_data_leaves_device is "
                 f"{json.dumps(privacy.get('raw_data_leaves_device'))}, must be false")
        topic_root = (doc.get("contract") or {}).get("topic_root") \
            if isinstance(doc.get("contract"), dict) else None
        if doc.get("gateway") != gateway or topic_root not in (None, root):
            flag("topic_mismatch", f"manifest of gateway {doc.get('gateway')!r} with "
                 f"topic_root {topic_root!r} published below {root}")
        classes = privacy.get("classes") if isinstance(privacy.get("classes"), dict) else {}
        for sensor in _list(doc.get("sensors")):
            for stream in _list(sensor.get("streams")):
                name = f"sensor {sensor.get('id')} stream {stream.get('name')}"
                policy = classes.get(stream.get("quantity"))
                if not isinstance(policy, dict):
                    flag("manifest_policy", f"{name}: class {stream.get('quantity')!r} has "
                         "no policy in privacy.classes")
                    continue
                extra = sorted(set(_list(stream.get("statistics"), str))
                               - set(_list(policy.get("statistics"), str)))
                if extra:
                    flag("manifest_policy", f"{name}: statistics {extra} are not allowed for "
                         f"class {stream.get('quantity')}")
                window, minimum = sensor.get("window_s"), policy.get("min_window_s")
                if _number(window) and _number(minimum) and window + _EPS < minimum:
                    flag("manifest_policy", f"{name}: window_s {window:g} is below the class "
                         f"minimum {minimum:g}")
                counted = stream.get("quantity") == "people_count" \
                    and stream.get("kind") in ("counter", "occupancy")
                if counted and not _number(stream.get("k")) \
                        and not isinstance(privacy.get("dp"), dict):
                    flag("manifest_policy", f"{name}: a people count without k (and no "
                         "differential privacy)")
        self.manifests[gateway] = doc

    def _data(self, doc: dict[str, Any], suffix: str, manifest: dict[str, Any],
              seq: int | None, flag: Callable[..., None]) -> None:
        sensor_id = suffix.split("/", 1)[1] if "/" in suffix else ""
        if doc.get("sensor") not in (None, sensor_id):
            flag("topic_mismatch", f"payload names sensor {doc.get('sensor')!r}, topic "
                 f"{sensor_id!r}", seq)
        sensor = next((s for s in _list(manifest.get("sensors")) if s.get("id") == sensor_id),
                      None)
        if sensor is None:
            flag("unknown_sensor", f"sensor {sensor_id!r} is not in the manifest", seq)
            return
        privacy = manifest.get("privacy") if isinstance(manifest.get("privacy"), dict) else {}
        classes = privacy.get("classes") if isinstance(privacy.get("classes"), dict) else {}
        streams = {s.get("name"): s for s in _list(sensor.get("streams"))}
        window = doc.get("window") if isinstance(doc.get("window"), dict) else {}
        seconds, partial = window.get("seconds"), window.get("partial") is True
        start, end = _time(window.get("start")), _time(window.get("end"))
        length = None if start is None or end is None else end - start
        declared = sensor.get("window_s")
        if _number(seconds) and _number(declared) and abs(seconds - declared) > _EPS:
            flag("window_mismatch", f"window.seconds {seconds:g} but the manifest declares "
                 f"window_s {declared:g} for {sensor_id}", seq)
        if not partial and length is not None and _number(seconds) \
                and length + _EPS < seconds:
            flag("short_window", f"window {window.get('start')}..{window.get('end')} lasts "
                 f"{length:g}s, not {seconds:g}s, and is not marked partial", seq)
        below_min: set[str] = set()
        values = doc.get("values") if isinstance(doc.get("values"), dict) else {}
        for name, entry in values.items():
            if not isinstance(entry, dict):
                continue
            spec = streams.get(name)
            if spec is None:
                flag("undeclared_stream", f"stream {name!r} is not declared for {sensor_id}",
                     seq)
                continue
            if entry.get("quantity") != spec.get("quantity"):
                flag("undeclared_stream", f"stream {name!r} sent as class "
                     f"{entry.get('quantity')!r}, declared {spec.get('quantity')!r}", seq)
            policy = classes.get(spec.get("quantity"))
            minimum = policy.get("min_window_s") if isinstance(policy, dict) else None
            quantity = spec.get("quantity")
            if _number(seconds) and _number(minimum) and seconds + _EPS < minimum \
                    and quantity not in below_min:
                below_min.add(quantity)
                flag("window_below_minimum", f"window.seconds {seconds:g} is below the "
                     f"{minimum:g}s minimum of class {quantity}", seq)
            self._stream(name, entry, spec, minimum, partial, length, seq, flag)
            self._declared_noise_and_precision(name, entry, spec, privacy.get("dp"), policy,
                                               seq, flag)
        for item in _list(doc.get("corrections")):
            spec = streams.get(item.get("stream"))
            extra = [s for s in STATISTICS if s in item
                     and s not in _list((spec or {}).get("statistics"), str)]
            if spec is not None and extra:
                flag("undeclared_statistic", f"correction of {item.get('stream')}: "
                     f"{', '.join(extra)} not declared for the stream", seq)

    @staticmethod
    def _declared_noise_and_precision(name: str, entry: dict[str, Any], spec: dict[str, Any],
                                      dp: Any, policy: Any, seq: int | None,
                                      flag: Callable[..., None]) -> None:
        noise = entry.get("dp")
        published = _number(entry.get("sum")) and entry.get("suppressed") is not True
        if isinstance(dp, dict) and spec.get("kind") == "counter" \
                and spec.get("quantity") == "people_count" and published:
            if not isinstance(noise, dict):
                flag("dp_mismatch", f"{name}: sum published without the declared "
                     f"differential-privacy noise (epsilon {dp.get('epsilon_per_window')})", seq)
            elif noise.get("epsilon") != dp.get("epsilon_per_window"):
                flag("dp_mismatch", f"{name}: noised with epsilon {noise.get('epsilon')}, the "
                     f"manifest declares {dp.get('epsilon_per_window')} per window", seq)
        elif noise is not None and not isinstance(dp, dict):
            flag("dp_mismatch", f"{name}: carries dp although the manifest declares no "
                 "differential privacy", seq)
        places = policy.get("decimals") if isinstance(policy, dict) else None
        if isinstance(places, int) and not isinstance(places, bool):
            finer = [s for s in STATISTICS if _number(entry.get(s))
                     and round(entry[s], places) != entry[s]]
            if finer:
                flag("precision_exceeded", f"{name}: {', '.join(finer)} finer than the declared "
                     f"{places} decimals", seq)

    @staticmethod
    def _stream(name: str, entry: dict[str, Any], spec: dict[str, Any], minimum: Any,
                partial: bool, length: float | None, seq: int | None,
                flag: Callable[..., None]) -> None:
        declared = _list(spec.get("statistics"), str)
        extra = [s for s in STATISTICS if s in entry and s not in declared]
        if extra:
            flag("undeclared_statistic", f"{name}: {', '.join(extra)} not in the declared "
                 f"statistics {declared}", seq)
        suppressed = entry.get("suppressed") is True
        numbers = [s for s in STATISTICS if _number(entry.get(s))]
        if suppressed and numbers:
            flag("suppressed_value", f"{name} is suppressed but {', '.join(numbers)} still "
                 "carry numbers", seq)
        if suppressed:
            return
        if partial and numbers and length is not None and _number(minimum) \
                and length + _EPS < minimum:
            flag("partial_unsuppressed", f"{name}: partial window of {length:g}s is shorter "
                 f"than the {minimum:g}s minimum and not suppressed", seq)
            return
        k = spec.get("k")
        statistic = {"counter": "sum", "occupancy": "max"}.get(spec.get("kind"))
        value = entry.get(statistic) if statistic else None
        if _number(k) and _number(value) and value < k:
            flag("count_below_k", f"{name}: {statistic} {value:g} is below k={k} and not "
                 "suppressed", seq)


def _format(manifest: dict[str, Any] | None) -> str:
    declared = (manifest or {}).get("contract")
    fmt = declared.get("format") if isinstance(declared, dict) else None
    return fmt if isinstance(fmt, str) else "native"


def _list(value: Any, of: type = dict) -> list[Any]:
    return [item for item in value if isinstance(item, of)] if isinstance(value, list) else []


# -- network --------------------------------------------------------------------------------
class AuditConnectionError(RuntimeError):
    """The broker could not be reached, refused us, or refused the subscription."""


async def audit(host: str, port: int, prefix: str = "edgeagent/v1",
                gateway: str | None = None, seconds: float = 30.0, *,
                username: str | None = None, password: str | None = None,
                tls: bool = False, ca: Path | str | None = None,
                cert: Path | str | None = None, key: Path | str | None = None,
                insecure: bool = False, protocol: str = "5", connect_timeout: float = 5.0,
                on_subscribed: Callable[[], None] | None = None) -> AuditReport:
    """Subscribe to ``<prefix>/<gateway or +>/#`` for ``seconds`` and audit what arrives.

    Args:
        host: broker host.
        port: broker port.
        prefix: topic prefix of the gateways.
        gateway: one gateway id, or None for all under the prefix.
        seconds: how long to listen (real time) after the subscription was granted.
        username: MQTT user (read-only credentials suffice).
        password: its password.
        tls: connect with TLS (certificate verified against ``ca`` or the system store).
        ca: CA bundle for TLS.
        cert: client certificate for TLS.
        key: key of the client certificate.
        insecure: skip TLS certificate verification.
        protocol: ``5`` or ``3.1.1``.
        connect_timeout: how long to wait for CONNACK and SUBACK.
        on_subscribed: called (in the event loop) once the subscription is granted.

    Returns:
        The auditor's report.

    Raises:
        AuditConnectionError: the broker could not be reached or refused the connection.
    """
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    auditor = Auditor(prefix, gateway)
    lock, subscribed = threading.Lock(), threading.Event()
    refused: list[str] = []
    topic = f"{auditor.prefix}/{gateway or '+'}/#"
    v5 = protocol == "5"
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"edgeagent-audit-{uuid.uuid4().hex[:12]}",
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                         clean_session=None if v5 else True)
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert) if cert else None,
                       keyfile=str(key) if key else None, cert_reqs=ssl.CERT_REQUIRED,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if insecure:
            client.tls_insecure_set(True)

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(f"broker refused the connection: {reason}")
            subscribed.set()
        else:
            client.subscribe(topic, qos=1)

    def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        if any(r.is_failure for r in reasons):
            refused.append(f"broker refused the subscription to {topic}: {reasons[0]}")
        subscribed.set()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with lock:
            auditor.feed(msg.topic, msg.payload, bool(msg.retain))

    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_message = on_message
    try:
        await asyncio.to_thread(client.connect, host, port, 30)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise AuditConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        granted = await asyncio.to_thread(subscribed.wait, connect_timeout)
        if refused or not granted:
            raise AuditConnectionError(refused[0] if refused else
                                       f"no answer from {host}:{port} within "
                                       f"{connect_timeout:g}s")
        if on_subscribed is not None:
            on_subscribed()
        await asyncio.sleep(seconds)
    finally:
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
    with lock:
        report = auditor.report()
    report.seconds, report.target = seconds, f"{topic} on {host}:{port}"
    return report


# -- command line ---------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``audit`` command to the ``edgeagent`` sub-command parsers."""
    cmd = subparsers.add_parser(
        "audit", help="check what gateways publish against their manifests",
        description="Subscribe to a broker for some seconds and report every message that "
        "breaks its gateway's transparency manifest. Exit 0: no violations, 1: violations, "
        "2: cannot audit (connection or config).")
    cmd.add_argument("-c", "--config", type=Path, default=None,
                     help="take broker, prefix, gateway and credentials from an agent config")
    cmd.add_argument("--host", default=None, help="broker host (default 127.0.0.1)")
    cmd.add_argument("--port", type=int, default=None, help="broker port (default 1883)")
    cmd.add_argument("--prefix", default=None, help="topic prefix (default edgeagent/v1)")
    cmd.add_argument("--gateway", default=None, help="one gateway id (default: all, '+')")
    cmd.add_argument("--seconds", type=float, default=30.0,
                     help="how long to listen (default 30)")
    cmd.add_argument("--username", default=None, help="MQTT user (read-only is enough)")
    cmd.add_argument("--password-file", type=Path, default=None, help="file with the password")
    cmd.add_argument("--password-env", default=None,
                     help="environment variable holding the password")
    cmd.add_argument("--tls", action="store_true", default=None, help="connect with TLS")
    cmd.add_argument("--ca", type=Path, default=None, help="CA bundle for TLS")
    cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    cmd.set_defaults(func=main)
    return cmd


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Connection settings from the config (if any), overridden by explicit options."""
    import os

    out: dict[str, Any] = {"host": "127.0.0.1", "port": 1883, "prefix": "edgeagent/v1",
                           "gateway": None, "username": None, "password": None, "tls": False,
                           "ca": None, "cert": None, "key": None, "insecure": False,
                           "protocol": "5"}
    if args.config is not None:
        config = load_config(args.config)
        mqtt = config.mqtt
        out.update(host=mqtt.host, port=mqtt.port, prefix=mqtt.topic_prefix,
                   gateway=config.gateway.id, username=mqtt.username,
                   password=resolve_password(mqtt), tls=mqtt.tls.enabled, ca=mqtt.tls.ca,
                   cert=mqtt.tls.cert, key=mqtt.tls.key,
                   insecure=mqtt.tls.insecure_skip_verify, protocol=mqtt.protocol)
    for name in ("host", "port", "prefix", "gateway", "username", "tls", "ca"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.password_file is not None:
        out["password"] = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    if args.password_env is not None:
        out["password"] = os.environ.get(args.password_env)
    if out["gateway"] == "+":
        out["gateway"] = None
    return out


def main(args: argparse.Namespace) -> int:
    """Run ``edgeagent audit``: 0 no violations, 1 violations, 2 cannot audit."""
    try:
        settings = _settings(args)
    except (ConfigError, OSError) as exc:
        print(f"audit: cannot read the settings: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(audit(seconds=args.seconds, **settings))
    except AuditConnectionError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(report.text())
    return 0 if report.ok else 1


__all__ = ["RULES", "AuditConnectionError", "AuditReport", "Auditor", "Violation",
           "add_parser", "audit", "identifiers", "main"]
