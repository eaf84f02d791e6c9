"""Local web endpoints: ``/healthz``, ``/metrics``, commissioning page, citizen pages.

The server runs inside the agent's event loop (aiohttp) and only reads the agent's state: it
shows the same figures as the ``health`` message and, when the agent keeps them, the last
*released* (privacy-gated) window of each sensor — never raw samples, frames, images or audio.
``/info`` (Dutch) and ``/info/en`` are the citizen information pages that ``register-export``
writes as static files, built by the same function from the agent's live manifest, and
``/info/qr.png`` (with segno installed) the sign's QR code.

It binds to 127.0.0.1 by default. Any other address requires a token; with a token every route
except the public citizen pages (``/info``, ``/info/en``, ``/info/qr.png``) needs
``Authorization: Bearer <token>`` or ``?token=<token>`` (compared in constant time).

HTTP status of ``/healthz``: 200 when every sensor is ``ok``, ``sleeping`` or ``starting`` and
storage is not low (and, with ``require_broker=True``, the broker is connected); 503 otherwise,
also while the agent is not running. See docs/web.md.
"""

from __future__ import annotations

import hmac
import html
import importlib.util
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from edgeagent import exports
from edgeagent.clock import ClockQuality
from edgeagent.config import is_loopback
from edgeagent.installreport import NOTE_MAX
from edgeagent.supervisor import RecoveryStep, SensorState
from edgeagent.telemetry import ALERTS

if TYPE_CHECKING:
    from edgeagent.supervisor import Agent

log = logging.getLogger("edgeagent.web")

#: Sensor states that count as healthy for ``/healthz``.
HEALTHY_STATES = frozenset({SensorState.OK.value, SensorState.SLEEPING.value,
                            SensorState.STARTING.value})
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PAGE_REFRESH_S = 5
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token may be in the URL
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'",
}
#: Route names that are public information (no token even when one is set): the citizen pages.
PUBLIC_ROUTES = frozenset({"info-nl", "info-en", "info-qr"})


def healthy(report: dict[str, Any], *, require_broker: bool = False) -> bool:
    """The ``/healthz`` rule applied to one health report (see the module docstring)."""
    sensors_ok = all(s["state"] in HEALTHY_STATES for s in report["sensors"].values())
    broker_ok = report["mqtt"]["connected"] or not require_broker
    return sensors_ok and not report["storage"]["low"] and broker_ok


# -- Prometheus text format 0.0.4 -----------------------------------------------------------
def escape_label(value: str) -> str:
    r"""Escape a label value: backslash, double quote and line feed (``\\``, ``\"``, ``\n``)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Exposition:
    """Collects metric families and renders them, each family's samples together."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float | bool]]) -> None:
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
            self._lines.append(f"{name}{{{text}}} {_number(value)}" if text
                               else f"{name} {_number(value)}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def render_metrics(report: dict[str, Any], *, loop_lag_s: float | None = None) -> str:
    """The Prometheus text exposition (format 0.0.4) of one health report."""
    out = _Exposition()
    sensors: dict[str, dict[str, Any]] = report["sensors"]
    out.family("edgeagent_info", "gauge", "Constant 1, labelled with the gateway id and version.",
               [({"gateway": report["gateway"], "version": report["version"]}, 1)])
    out.family("edgeagent_uptime_seconds", "gauge", "Seconds since the agent started.",
               [({}, float(report["uptime_s"]))])
    out.family("edgeagent_clock_state", "gauge",
               "Wall-clock quality: 1 for the current state, 0 for the others.",
               [({"state": q.value}, report["clock"] == q.value) for q in ClockQuality])
    counters = (("readings", "Valid readings produced by the sensor's driver."),
                ("frame_errors", "Frames rejected by the driver (checksum, garbage, partial)."),
                ("restarts", "Driver restarts after an error."),
                ("warmup_discarded", "Readings discarded during warm-up after a start or wake."),
                ("duty_cycles", "Completed measuring periods of the sensor's duty cycle."))
    for key, help_text in counters:
        out.family(f"edgeagent_sensor_{key}_total", "counter", help_text,
                   [({"sensor": sid}, s[key]) for sid, s in sensors.items()])
    out.family("edgeagent_sensor_recovery_steps_total", "counter",
               "Recovery-ladder steps taken, by step (resync, reinit, bus_reset, power_cycle).",
               [({"sensor": sid, "step": step.value}, s["recovery"].get(step.value, 0))
                for sid, s in sensors.items() for step in RecoveryStep])
    figures = (("frames", "counter", "Frames (thermal images, radar reports) processed."),
               ("dropped_frames", "counter", "Frames lost: gaps in the frame rate, failed reads."),
               ("fps", "gauge", "Frames per second over the recent frames."),
               ("inference_ms", "gauge", "Mean people-detector time per frame, milliseconds."))
    for key, kind, help_text in figures:
        rows = [({"sensor": sid}, s["driver"][key]) for sid, s in sensors.items()
                if isinstance(s.get("driver", {}).get(key), int | float)]
        if rows:
            suffix = "_total" if kind == "counter" else ""
            out.family(f"edgeagent_sensor_{key}{suffix}", kind, help_text, rows)
    out.family("edgeagent_sensor_state", "gauge",
               "Supervisor state of the sensor: 1 for the current state, 0 for the others.",
               [({"sensor": sid, "state": state.value}, s["state"] == state.value)
                for sid, s in sensors.items() for state in SensorState])
    box = report["outbox"]
    out.family("edgeagent_outbox_messages", "gauge",
               "Messages in the outbox waiting to be sent or acknowledged.",
               [({}, box["depth"])])
    out.family("edgeagent_outbox_bytes", "gauge", "Bytes used by the waiting messages.",
               [({}, box["bytes"])])
    out.family("edgeagent_outbox_max_bytes", "gauge", "Configured bound of the outbox in bytes.",
               [({}, box["max_bytes"])])
    out.family("edgeagent_outbox_dropped_total", "counter",
               "Messages dropped because the outbox was full (data lost).",
               [({}, box["dropped"])])
    oldest = box["oldest_age_s"]
    out.family("edgeagent_outbox_oldest_age_seconds", "gauge",
               "Age of the oldest waiting message; 0 when the outbox is empty.",
               [({}, 0.0 if oldest is None else float(oldest))])
    out.family("edgeagent_mqtt_connected", "gauge", "1 while connected to the MQTT broker.",
               [({}, report["mqtt"]["connected"])])
    out.family("edgeagent_mqtt_reconnects_total", "counter",
               "Times the broker connection was re-established.",
               [({}, report["mqtt"]["reconnects"])])
    latency = report["mqtt"].get("ack_latency_ms")
    if latency is not None:
        out.family("edgeagent_publish_ack_latency_seconds", "gauge",
                   "Mean time from publish to the broker's PUBACK, last 100 messages.",
                   [({}, latency / 1000.0)])
    out.family("edgeagent_storage_free_bytes", "gauge",
               "Free bytes on the file system holding the outbox.",
               [({}, report["storage"]["free_bytes"])])
    out.family("edgeagent_storage_low", "gauge",
               "1 when free space is below the safety margin or the outbox has a storage error.",
               [({}, report["storage"]["low"])])
    process, board = report.get("process") or {}, report.get("board") or {}
    if process.get("rss_bytes") is not None:
        out.family("edgeagent_process_resident_memory_bytes", "gauge",
                   "Resident memory of the agent process.", [({}, process["rss_bytes"])])
    if "cpu_percent" in process:
        out.family("edgeagent_process_cpu_percent", "gauge",
                   "CPU share of one core since the previous health report.",
                   [({}, process["cpu_percent"])])
    if board.get("temperature_c") is not None:
        out.family("edgeagent_board_temperature_celsius", "gauge", "SoC temperature.",
                   [({}, board["temperature_c"])])
    if "alerts" in report:
        out.family("edgeagent_alert", "gauge", "1 while the alert is raised (health alerts).",
                   [({"alert": name}, name in report["alerts"]) for name in ALERTS])
    if loop_lag_s is not None:
        out.family("edgeagent_event_loop_lag_seconds", "gauge",
                   "How late the agent's event loop ran its last timer.",
                   [({}, float(loop_lag_s))])
    return out.render()


# -- commissioning page ---------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:0;padding:12px;max-width:40em;background:#fafafa}
h1{font-size:1.3em;margin:0 0 8px}h2{font-size:1.1em;margin:16px 0 4px}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}
.ok{color:#075e00;font-weight:bold}.bad{color:#a00000;font-weight:bold}
.small{color:#555;font-size:.85em}
"""


def _verdict(good: bool, yes: str, no: str) -> str:
    return f'<span class="ok">{yes}</span>' if good else f'<span class="bad">{no}</span>'


def _window_rows(window: dict[str, Any]) -> str:
    """Rows for one released window body (``values`` as published: gated, rounded)."""
    rows = []
    for stream, entry in window.get("values", {}).items():
        if entry.get("suppressed"):
            shown = f"suppressed ({html.escape(str(entry.get('suppressed_reason', '')))})"
        else:
            stats = [f"{k} {entry[k]}" for k in ("mean", "min", "max", "sum", "laeq", "p50")
                     if k in entry and entry[k] is not None]
            shown = html.escape(", ".join(stats) or "no readings")
        unit = html.escape(str(entry.get("unit", "")))
        rows.append(f"<tr><td>{html.escape(stream)}</td><td>{shown}</td><td>{unit}</td></tr>")
    end = html.escape(str(window.get("window", {}).get("end", "?")))
    return (f'<p class="small">last window, ended {end}</p><table>'
            f"<tr><th>stream</th><th>value</th><th>unit</th></tr>{''.join(rows)}</table>")


def render_page(report: dict[str, Any], manifest_sensors: dict[str, dict[str, Any]], *,
                ok: bool, last_windows: dict[str, dict[str, Any]] | None = None,
                report_action: str = "install-report") -> str:
    """The commissioning page: one self-contained HTML document, no scripts or images."""
    e = html.escape
    box, mqtt, storage = report["outbox"], report["mqtt"], report["storage"]
    oldest = box["oldest_age_s"]
    clock = report["clock"]
    backlog_ok = box["depth"] < 100 and not box["dropped"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{PAGE_REFRESH_S}">',
        f"<title>edgeagent {e(report['gateway'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Gateway <code>{e(report['gateway'])}</code></h1>",
        f"<p>Overall: {_verdict(ok, 'HEALTHY', 'NEEDS ATTENTION')} "
        f'<span class="small">edgeagent {e(report["version"])}, up {report["uptime_s"]:.0f} s, '
        f"{e(report['time'])}</span></p>",
        "<h2>Checklist</h2><table>",
        f"<tr><td>Clock</td><td>{_verdict(clock == 'synced', e(clock), e(clock))}</td></tr>",
        f"<tr><td>Broker</td><td>{_verdict(mqtt['connected'], 'connected', 'not connected')}"
        f" ({mqtt['reconnects']} reconnects)</td></tr>",
        f"<tr><td>Outbox</td><td>{_verdict(backlog_ok, str(box['depth']), str(box['depth']))}"
        " queued"
        f"{'' if oldest is None else f', oldest {oldest:.0f} s'}, {box['dropped']} dropped"
        "</td></tr>",
        f"<tr><td>Storage</td><td>{_verdict(not storage['low'], 'ok', 'LOW')} "
        f"({storage['free_bytes'] // (1024 * 1024)} MiB free)</td></tr>",
        "</table>",
    ]
    for sid, s in report["sensors"].items():
        info = manifest_sensors.get(sid, {})
        state = s["state"]
        warm = "done" if state not in ("starting",) else "in progress"
        parts += [
            f'<h2 id="sensor-{e(sid)}">Sensor <code>{e(sid)}</code> '
            f"{_verdict(state in HEALTHY_STATES, e(state), e(state))}</h2>",
            f'<p class="small">{e(str(info.get("driver", "?")))} · '
            f"{e(str(info.get('model', '?')))}"
            f"{' · simulated' if info.get('simulated') else ''}</p>",
            "<table>",
            f"<tr><td>Readings</td><td>{s['readings']}</td></tr>",
            f"<tr><td>Warm-up</td><td>{warm} ({s['warmup_discarded']} discarded)</td></tr>",
            f"<tr><td>Frame errors</td><td>{s['frame_errors']}</td></tr>",
            f"<tr><td>Restarts</td><td>{s['restarts']}</td></tr>",
        ]
        if s["last_error"]:
            parts.append(f"<tr><td>Last error</td><td>{e(s['last_error'])}</td></tr>")
        parts.append("</table>")
        window = (last_windows or {}).get(sid)
        if window:
            parts.append(_window_rows(window))
    parts.append(
        "<h2>Install report</h2>"
        f'<form method="post" action="{e(report_action)}">'
        '<p><label for="note">Note: what you installed or changed (no names)</label><br>'
        f'<textarea id="note" name="note" maxlength="{NOTE_MAX}" rows="3" cols="36">'
        "</textarea></p><p><button type=\"submit\">Run the checks and send the signed "
        "report</button></p></form>")
    parts.append('<p class="small">Citizen information page (public, no token): '
                 '<a href="info" hreflang="nl">Nederlands</a> · '
                 '<a href="info/en" hreflang="en">English</a></p>')
    parts.append(f'<p class="small">Refreshes every {PAGE_REFRESH_S} s. Only aggregated '
                 "figures are shown here; raw samples never leave the agent.</p></body></html>")
    return "\n".join(parts)


# -- the server -----------------------------------------------------------------------------
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    """The agent's local HTTP endpoints; start after the agent's outbox and publisher exist."""

    def __init__(self, agent: Agent, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = None, *, require_broker: bool = False,
                 page_url: str | None = None, register_url: str | None = None) -> None:
        """Check the bind rule; nothing listens until :meth:`start`.

        Args:
            agent: The running agent whose state is served.
            host: Address to bind; anything but loopback requires ``token``.
            port: TCP port; 0 picks a free one (see :attr:`port` after start).
            token: Shared secret required on every route but the citizen pages; None disables
                auth (loopback only).
            require_broker: Also report 503 on ``/healthz`` while the broker is disconnected.
            page_url: Public address of the citizen page, encoded in ``/info/qr.png``
                (``register-export --url``); default the same ``.example`` placeholder.
            register_url: The sensor's register entry, linked from ``/info``
                (``register-export --register-url``); default a marked placeholder.

        Raises:
            ValueError: A non-loopback host without a token, or an empty token.
        """
        if token is not None and not token.strip():
            raise ValueError("web: the token is empty; set a token or remove it")
        if token is None and not is_loopback(host):
            raise ValueError(f"web: refusing to listen on {host} without a token; bind to "
                             "127.0.0.1 or set web.token_file")
        self.agent = agent
        self.host = host
        self.port = port
        self.require_broker = require_broker
        self.page_url = page_url
        self.register_url = register_url
        self._token = None if token is None else token.strip().encode()
        self._runner: web.AppRunner | None = None
        self._qr: tuple[str, bytes] | None = None  # (url, PNG) of the last QR code made

    def app(self) -> web.Application:
        """The aiohttp application (routes and the token middleware)."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/", self._page)
        app.router.add_post("/install-report", self._install_report)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/info", self._info_nl, name="info-nl")
        app.router.add_get("/info/en", self._info_en, name="info-en")
        app.router.add_get("/info/qr.png", self._info_qr, name="info-qr")
        return app

    async def start(self) -> None:
        """Listen on ``host:port``; with port 0 :attr:`port` becomes the chosen port."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("web endpoints on http://%s:%d/ (token %s)", self.host, self.port,
                 "required" if self._token else "off")

    async def stop(self) -> None:
        """Stop listening and close open connections; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- request handling -----------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        if self._token is None or request.match_info.route.name in PUBLIC_ROUTES:
            return True
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else (
            request.query.get("token", ""))
        return hmac.compare_digest(given.encode(), self._token)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._authorised(request):
            response: web.StreamResponse = web.Response(
                status=401, text="401: a token is required (Authorization: Bearer <token> or "
                "?token=<token>)\n", headers={"WWW-Authenticate": 'Bearer realm="edgeagent"'})
        else:
            response = await handler(request)
        response.headers.update(_SECURITY_HEADERS)
        return response

    async def _report(self) -> dict[str, Any] | None:
        """The agent's health report, or None while it is not running."""
        agent = self.agent
        if agent.outbox is None or agent.publisher is None:
            return None
        try:
            return await agent.health(sample=False)  # a page view must not reset CPU share
        except Exception:  # e.g. the outbox closed during shutdown
            log.debug("health report unavailable", exc_info=True)
            return None

    def _loop_lag(self) -> float | None:
        lag = getattr(self.agent, "loop_lag_s", None)
        return float(lag) if isinstance(lag, int | float) else None

    async def _healthz(self, request: web.Request) -> web.Response:
        report = await self._report()
        if report is None:
            return web.json_response({"ok": False, "error": "agent not running"}, status=503)
        ok = healthy(report, require_broker=self.require_broker)
        return web.json_response({**report, "ok": ok}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        report = await self._report()
        if report is None:
            return web.Response(status=503, text="agent not running\n")
        body = render_metrics(report, loop_lag_s=self._loop_lag())
        return web.Response(body=body.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _page(self, request: web.Request) -> web.Response:
        report = await self._report()
        if report is None:
            return web.Response(status=503, text="edgeagent is not running yet\n")
        sensors = {s["id"]: s for s in self.agent.manifest()["sensors"]}
        last = getattr(self.agent, "last_windows", None)
        token = request.query.get("token")
        action = "install-report" + (f"?token={quote(token)}" if token else "")
        page = render_page(report, sensors, ok=healthy(report, require_broker=self.require_broker),
                           last_windows=last if isinstance(last, dict) else None,
                           report_action=action)
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def _install_report(self, request: web.Request) -> web.Response:
        """The technician's form: checks, note, signature → an install_report event."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (f"http://{request.host}",
                                                 f"https://{request.host}"):
            return web.Response(status=403, text="403: a form from another site\n")
        if self.agent.outbox is None:
            return web.Response(status=503, text="edgeagent is not running yet\n")
        form = await request.post()
        note = str(form.get("note", ""))
        if len(note) > NOTE_MAX:
            return web.Response(status=400, text=f"400: the note is longer than {NOTE_MAX} "
                                "characters\n")
        details = await self.agent.install_report(note)
        e = html.escape
        rows = "".join(f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>"
                       for k, v in details.items())
        page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>Install report</title><style>{_CSS}</style></head><body>"
                "<h1>Install report queued</h1><p>It is sent on the events topic (now, or "
                "as soon as the broker is reachable).</p>"
                f"<table>{rows}</table></body></html>")
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    # -- citizen information pages (public) -----------------------------------------------
    def _manifest(self) -> dict[str, Any] | None:
        """The agent's live manifest, or None before its sensors exist."""
        return self.agent.manifest() if self.agent.sensors else None

    async def _info(self, lang: str) -> web.Response:
        manifest = self._manifest()
        if manifest is None:
            return web.Response(status=503, text="edgeagent is not running yet\n")
        # Relative links: /info <-> /info/en, also behind a reverse proxy with a path prefix.
        page = exports.citizen_page(manifest, lang, register_url=self.register_url,
                                    other_page="info/en" if lang == "nl" else "../info")
        return web.Response(text=page, content_type="text/html", charset="utf-8",
                            headers={"Content-Language": lang})

    async def _info_nl(self, request: web.Request) -> web.Response:
        return await self._info("nl")

    async def _info_en(self, request: web.Request) -> web.Response:
        return await self._info("en")

    def qr_url(self) -> str:
        """What ``/info/qr.png`` encodes: ``page_url``, else register-export's placeholder."""
        if self.page_url is not None:
            return self.page_url
        return exports.PAGE_URL_PLACEHOLDER.format(gateway=self.agent.config.gateway.id)

    async def _info_qr(self, request: web.Request) -> web.Response:
        if importlib.util.find_spec("segno") is None:  # the exports extra
            return web.Response(status=404, text="no QR code: segno is not installed (pip "
                                "install 'edgeagent[exports]')\n")
        url = self.qr_url()
        if self._qr is None or self._qr[0] != url:
            self._qr = (url, exports.qr_png(url))
        return web.Response(body=self._qr[1], content_type="image/png")
