"""The commissioning page and the citizen pages rendered in a real headless browser.

Debian's ``chromium`` (``/usr/bin/chromium``; ``scripts/setup.sh test`` installs it) runs as a
subprocess: ``--dump-dom`` gives the DOM after parsing and rendering, ``--screenshot`` with a
390×844 window a phone-sized PNG. The agent runs on simulated sensors against a real mosquitto
(the helpers of ``test_web.py``). Chromium may reach 127.0.0.1 only: every host name resolves
to nothing, every other connection goes to a proxy that does not exist, and the background
services (updates, sync, component downloads) are off. Every run has a fresh profile under
``tmp_path``, a 60 s bound, and is killed (its process group, by id) if it hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conftest import EDGEAGENT, REPO, async_wait_for
from edgeagent import exports
from test_exports import EXPECTED
from test_web import TOKEN, config_for, serving

CHROMIUM = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else \
    shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (/usr/bin/chromium; apt-get install "
                "chromium, or bash scripts/setup.sh test)", allow_module_level=True)

#: A technician's phone (CSS pixels) at device scale factor 1: the PNG is 390 px wide.
PHONE = (390, 844)
TIMEOUT_S = 60.0
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
    "--hide-scrollbars", "--force-device-scale-factor=1",
    # Nothing but 127.0.0.1: no name resolves, any other address goes to a dead proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
)
REGISTER_URL = "https://sensorenregister.example/test-gw"
OWNER = {"name": "Gemeente Teststad", "contact": "sensoren@teststad.example"}


# -- running chromium ----------------------------------------------------------------------------
def _kill_group(pgid: int) -> None:
    """SIGKILL the process group chromium was started in (its own session): helpers too."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def chromium(tmp_path: Path, *args: str) -> tuple[bytes, str]:
    """Run headless chromium with a fresh profile: (stdout, stderr). Bounded by TIMEOUT_S."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    home = profile / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile / 'data'}", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        pytest.fail(f"chromium {' '.join(args)} did not finish within {TIMEOUT_S:.0f} s")
    finally:
        _kill_group(proc.pid)  # leftover helper processes, if any
    errors = err.decode(errors="replace")
    assert proc.returncode == 0, (args, errors[-2000:])
    return out, errors


def _loaded(url: str, errors: str) -> None:
    failed = [line for line in errors.splitlines() if "Page load failed" in line]
    assert not failed, (url, failed)


def dump_dom(tmp_path: Path, url: str) -> str:
    """The DOM after chromium loaded and rendered ``url``, serialised."""
    out, errors = chromium(tmp_path, "--dump-dom", url)
    _loaded(url, errors)
    return out.decode("utf-8")


def screenshot(tmp_path: Path, url: str, name: str) -> bytes:
    """A phone-sized screenshot (:data:`PHONE`) of ``url``; the PNG file's bytes."""
    png = tmp_path / f"{name}.png"
    _, errors = chromium(tmp_path, f"--screenshot={png}", f"--window-size={PHONE[0]},{PHONE[1]}",
                         url)
    _loaded(url, errors)
    assert png.is_file(), f"chromium wrote no screenshot of {url}"
    return png.read_bytes()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (signature and CRC checked)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(data[12:29]) == crc, "IHDR CRC mismatch"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def blank_png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The phone screenshot of an empty page, to tell a rendered page from a blank one."""
    tmp = tmp_path_factory.mktemp("blank")
    png = screenshot(tmp, "about:blank", "blank")
    assert png_size(png) == PHONE
    return png


def assert_phone_screenshot(png: bytes, blank: bytes, what: str) -> None:
    """A 390 px wide (scale factor 1) phone screenshot with far more in it than a blank page."""
    assert png_size(png) == PHONE, what
    # A white 390×844 PNG compresses to ~3 kB; rendered text makes it several times larger.
    assert png != blank and len(png) > 3 * len(blank), (what, len(png), len(blank))


def test_chromium_reaches_nothing_but_127_0_0_1(tmp_path):
    """The flags hold: a host name or another address fails at the dead proxy, nothing loads."""
    for url in ("http://edgeagent-test.example/", "http://192.0.2.1/"):  # never routed
        out, errors = chromium(tmp_path, "--dump-dom", url)
        assert out.strip() == b"", url
        assert re.search(r"Page load failed: net::ERR_(PROXY_CONNECTION_FAILED|NAME_NOT_RESOLVED"
                         r"|CONNECTION_REFUSED)", errors), (url, errors[-2000:])


# -- reading the rendered DOM ----------------------------------------------------------------------
class Dom(HTMLParser):
    """Text, headings, table rows, links and tags of a serialised DOM."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "wbr"})
    HIDDEN = frozenset({"style", "title", "script", "head"})

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.lang: str | None = None
        self.title = ""
        self.headings: list[tuple[str, str | None, str]] = []  # (tag, id, text)
        self.rows: list[list[str]] = []
        self.links: list[tuple[str | None, str]] = []  # (href, text)
        self.items: list[str] = []  # <li> texts
        self.paragraphs: list[str] = []
        self._stack: list[str] = []
        self._chunks: list[str] = []
        self._open: list[tuple[str, dict[str, str | None], int]] = []  # element, text start
        self._row: list[str] | None = None
        self.feed(markup)
        self.close()

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._chunks).split())

    def _since(self, start: int) -> str:
        return " ".join(" ".join(self._chunks[start:]).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "html":
            self.lang = attributes.get("lang")
        if tag == "tr":
            self._row = []
        if tag not in self.VOID:
            self._stack.append(tag)
            self._open.append((tag, attributes, len(self._chunks)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID or tag not in self._stack:
            return
        while self._stack:
            name, attributes, start = self._open.pop()
            self._stack.pop()
            text = self._since(start)
            if name in ("h1", "h2", "h3"):
                self.headings.append((name, attributes.get("id"), text))
            elif name in ("td", "th") and self._row is not None:
                self._row.append(text)
            elif name == "tr" and self._row is not None:
                self.rows.append(self._row)
                self._row = None
            elif name == "a":
                self.links.append((attributes.get("href"), text))
            elif name == "li":
                self.items.append(text)
            elif name == "p":
                self.paragraphs.append(text)
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        if "title" in self._stack:
            self.title += data
        elif not self.HIDDEN & set(self._stack):
            self._chunks.append(data)


def assert_self_contained(dom: Dom, what: str) -> None:
    """No scripts, no external resources: nothing in the DOM loads anything."""
    names = {tag for tag, _ in dom.tags}
    for banned in ("script", "img", "link", "iframe", "object", "embed", "audio", "video",
                   "source", "picture"):
        assert banned not in names, (what, banned)
    for tag, attributes in dom.tags:
        assert "src" not in attributes and "srcset" not in attributes, (what, tag, attributes)
        assert not any(k.startswith("on") for k in attributes), (what, tag, attributes)


# -- the agent's pages -----------------------------------------------------------------------------
_RANGE = re.compile(r"mean (-?[\d.]+), min (-?[\d.]+), max (-?[\d.]+)")


def _check_commissioning(dom: Dom) -> None:
    assert dom.lang == "en" and dom.title == "edgeagent test-gw"
    assert ("h1", None, "Gateway test-gw") in dom.headings
    assert "Overall: HEALTHY" in dom.text
    checklist = {row[0]: row[1] for row in dom.rows if len(row) == 2}
    assert checklist["Clock"] in ("synced", "rtc", "unsynced")
    assert checklist["Broker"] == "connected (0 reconnects)"
    assert re.fullmatch(r"\d+ queued(, oldest \d+ s)?, 0 dropped", checklist["Outbox"]), \
        checklist["Outbox"]
    assert re.fullmatch(r"ok \(\d+ MiB free\)", checklist["Storage"]), checklist["Storage"]
    # Sensors detected: one section per configured sensor, each running, warmed up, reading.
    sensors = {h_id: text for tag, h_id, text in dom.headings if tag == "h2" and h_id}
    assert sensors == {"sensor-air": "Sensor air ok", "sensor-crowd": "Sensor crowd ok"}
    assert dom.text.count("· simulated") == 2
    readings = [row[1] for row in dom.rows if row[0] == "Readings"]
    assert len(readings) == 2 and all(int(n) > 0 for n in readings)
    assert [row[1] for row in dom.rows if row[0] == "Warm-up"] == ["done (0 discarded)"] * 2
    assert [row[1] for row in dom.rows if row[0] in ("Frame errors", "Restarts")] == ["0"] * 4
    # Live values: the last released window of each sensor, with its range.
    assert dom.text.count("last window, ended ") == 2
    values = {row[0]: (row[1], row[2]) for row in dom.rows if len(row) == 3
              and row[0] != "stream"}
    pm25, unit = values["pm25"]
    low, high = float(_RANGE.search(pm25)[2]), float(_RANGE.search(pm25)[3])
    assert low <= float(_RANGE.search(pm25)[1]) <= high, pm25
    assert unit in ("ug/m3", "µg/m³")
    people = values["people"][0]
    assert re.fullmatch(r"sum [\d.]+|suppressed \(.*\)", people), people
    assert ("info", "Nederlands") in dom.links and ("info/en", "English") in dom.links
    assert "raw samples never leave the agent" in dom.text


SERVED = {  # language: sentences the served citizen page must show (simulated config + owner)
    "nl": ["Hier meet een sensor", "fijnstof in de lucht", "PM2,5",
           "hoeveel mensen er langs lopen", "per seconde",
           "Let op: dit is een test.",
           "Deze sensor is van: Gemeente Teststad.",
           "Er worden geen beelden bewaard of verstuurd.",
           "Er is geen microfoon. Er wordt geen geluid opgenomen.",
           "Een klein aantal (minder dan 5) wordt niet doorgegeven.",
           "Er worden geen persoonsgegevens verwerkt.",
           "De losse metingen blijven in het kastje.",
           "Neem contact op met: sensoren@teststad.example."],
    "en": ["A sensor measures here", "fine dust (particulate matter) in the air", "PM2.5",
           "how many people walk past", "per second",
           "Note: this is a test.",
           "This sensor belongs to: Gemeente Teststad.",
           "No images are stored or sent.",
           "There is no microphone. No sound is recorded.",
           "Small numbers (fewer than 5) are not passed on.",
           "No personal data are processed.",
           "Individual readings stay in the box.",
           "Please contact: sensoren@teststad.example."],
}


def _check_citizen(dom: Dom, lang: str, sentences: list[str], *, register_url: str,
                   other: str) -> None:
    assert dom.lang == lang
    assert [tag for tag, _, _ in dom.headings].count("h1") == 1
    assert len([h for h in dom.headings if h[0] == "h2"]) >= 6
    for sentence in sentences:
        assert sentence in dom.text, (lang, sentence)
    links = dict(dom.links)
    assert register_url in links, dom.links
    assert other in links, dom.links
    assert_self_contained(dom, f"citizen page {lang}")


@pytest.mark.broker
def test_the_agents_pages_render_on_a_phone_in_headless_chromium(broker, tmp_path, blank_png):
    """Issue 8 (commissioning page) and issue 7 (served citizen pages) in a real browser."""
    config = config_for(broker, tmp_path)
    config["gateway"].update(owner=OWNER, purpose="Luchtkwaliteit en drukte in het park")
    shots = tmp_path / "shots"
    shots.mkdir()

    async def scenario() -> dict[str, str | bytes]:
        async with serving(config, token=TOKEN, register_url=REGISTER_URL) as (agent, server):
            await async_wait_for(lambda: {"air", "crowd"} <= set(agent.last_windows), 10,
                                 "a released window of each sensor")
            base = f"http://127.0.0.1:{server.port}"
            jobs = {
                "page": (dump_dom, f"{base}/?token={TOKEN}"),
                "anonymous": (dump_dom, f"{base}/"),
                "nl": (dump_dom, f"{base}/info"),
                "en": (dump_dom, f"{base}/info/en"),
                "page.png": (screenshot, f"{base}/?token={TOKEN}", "page"),
                "nl.png": (screenshot, f"{base}/info", "info-nl"),
                "en.png": (screenshot, f"{base}/info/en", "info-en"),
            }
            slots = asyncio.Semaphore(3)  # a few browsers at a time: small CI machines

            async def run(job: tuple[Any, ...]) -> str | bytes:
                async with slots:
                    return await asyncio.to_thread(job[0], shots, *job[1:])

            results = await asyncio.gather(*(run(job) for job in jobs.values()))
            return dict(zip(jobs, results, strict=True))

    out = asyncio.run(scenario())
    page = Dom(out["page"])
    _check_commissioning(page)
    assert_self_contained(page, "commissioning page")
    assert "401: a token is required" in Dom(out["anonymous"]).text  # the token still applies
    _check_citizen(Dom(out["nl"]), "nl", SERVED["nl"], register_url=REGISTER_URL,
                   other="info/en")
    _check_citizen(Dom(out["en"]), "en", SERVED["en"], register_url=REGISTER_URL,
                   other="../info")
    for name in ("page.png", "nl.png", "en.png"):
        assert_phone_screenshot(out[name], blank_png, name)


# -- the static export -----------------------------------------------------------------------------
FULL = REPO / "deploy" / "examples" / "full.yaml"
FULL_SENTENCES = {
    "nl": ["Hier meet een sensor", "fijnstof in de lucht", "hoeveel mensen er langs lopen",
           "totaal per 15 minuten", "Deze sensor is van: Gemeente Amsterdam.",
           "air quality and crowd levels for the park",
           "Er worden geen beelden bewaard of verstuurd.",
           "Er is geen microfoon. Er wordt geen geluid opgenomen.",
           "Het kastje telt mensen, maar herkent niemand.",
           "Een klein aantal (minder dan 10) wordt niet doorgegeven.",
           "Er worden geen persoonsgegevens verwerkt.",
           "Neem contact op met: sensoren@example.org."],
    "en": ["A sensor measures here", "fine dust (particulate matter) in the air",
           "how many people walk past", "total per 15 minutes",
           "This sensor belongs to: Gemeente Amsterdam.",
           "air quality and crowd levels for the park",
           "No images are stored or sent.", "There is no microphone. No sound is recorded.",
           "The box counts people but recognises no one.",
           "Small numbers (fewer than 10) are not passed on.",
           "No personal data are processed.", "Please contact: sensoren@example.org."],
}
needs_segno = pytest.mark.skipif(importlib.util.find_spec("segno") is None,
                                 reason="segno (edgeagent[exports]) not installed")


@needs_segno
def test_the_exported_citizen_pages_of_full_yaml_render_on_a_phone(tmp_path, blank_png):
    """``edgeagent register-export`` of deploy/examples/full.yaml, opened via file://."""
    out = tmp_path / "export"
    page_url = "https://www.example.nl/sensoren/ams-oost-lp0412"
    register_url = "https://sensorenregister.example.nl/ams-oost-lp0412"
    run = subprocess.run([*EDGEAGENT, "register-export", "-c", str(FULL), "--out", str(out),
                          "--url", page_url, "--register-url", register_url],
                         capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert run.returncode == 0, run.stderr
    assert (out / "sign-qr.png").read_bytes() == exports.qr_png(page_url)
    for lang, other in (("nl", "citizen-en.html"), ("en", "citizen-nl.html")):
        url = (out / f"citizen-{lang}.html").as_uri()
        dom = Dom(dump_dom(tmp_path, url))
        _check_citizen(dom, lang, FULL_SENTENCES[lang], register_url=register_url, other=other)
        assert ("Let op: dit is een test." if lang == "nl" else "Note: this is a test.") \
            in dom.text  # full.yaml's footfall counter is simulated until one is fitted
        assert_phone_screenshot(screenshot(tmp_path, url, f"export-{lang}"), blank_png, url)


@needs_segno
@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_every_examples_export_renders_its_statements(example, tmp_path):
    """The words test_exports expects in the HTML are there in the DOM chromium renders."""
    out = tmp_path / "export"
    args = argparse.Namespace(config=REPO / "deploy" / "examples" / f"{example}.yaml", out=out,
                              url=None, register_url=None)
    assert exports.main(args) == 0
    for lang, words in zip(("nl", "en"), EXPECTED[example], strict=True):
        dom = Dom(dump_dom(tmp_path, (out / f"citizen-{lang}.html").as_uri()))
        assert dom.lang == lang
        assert_self_contained(dom, f"{example} {lang}")
        for word in words:
            assert word in dom.text, (example, lang, word)
