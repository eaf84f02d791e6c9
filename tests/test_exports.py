"""Exports for the municipality: register record, citizen pages, QR code, worksheet, CLI."""

from __future__ import annotations

import argparse
import importlib.util
import json
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from edgeagent import exports
from edgeagent.config import load_config
from edgeagent.supervisor import Agent

needs_segno = pytest.mark.skipif(importlib.util.find_spec("segno") is None,
                                 reason="segno (edgeagent[exports]) not installed")

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "deploy" / "examples").glob("*.yaml"))
FILES = ("register.json", "citizen-nl.html", "citizen-en.html", "sign-qr.png",
         "afwegingskader.md")
AMS_FIELDS = {"reference", "type", "location", "location_description", "regions", "datastream",
              "observation_goals", "themes", "contains_pi_data", "active_until", "owner",
              "project_paths"}
AMS_TYPES = {"Aanwezigheid of nabijheidsensor", "Temperatuursensor", "Dichtheidssensor",
             "Druksensor", "Positie- of verplaatsingsensor", "Vloeistof- en gasstroomsensor",
             "Electriciteitssensor", "Chemiesensor", "Klimaatsensor", "Geluidsensor",
             "Optische / camera sensor", "Overig"}
NL_SENSOR_ENUM = {"Camera Fixed", "Camera Mobile", "Flowmeter", "Height Detection Device",
                  "Detection Loop", "Weather Station", "Speed Detection Device",
                  "Water Level Meter", "Wind Gauge", "Light Cell", "GMS Sensor",
                  "Radar Detector", "Fine Dust Sensor", "UV Sensor", "Motion Sensor",
                  "Fire Detector", "Microphone or SoundMeter", "Beacon"}
NL_THEME_ENUM = {"Energy", "Agriculture, Fishing or Food Quality", "Transport", "Waste", "Soil",
                 "Sound", "Climate Change", "Air", "Nature and Landscape Management", "Water",
                 "Safety", "Spatial Planning", "Water management", "Aviation",
                 "Public Transport", "Rail or Road Traffic", "Shipping",
                 "Building or Remodelling", "Housing Market", "Health Risks"}


def _ids(path: Path) -> str:
    return path.stem


@pytest.fixture(params=EXAMPLES, ids=_ids)
def built(request):
    config = load_config(request.param)
    agent = Agent(config)
    agent._build_sensors()
    return request.param.stem, config, agent.manifest()


def _manifest(name: str):
    config = load_config(next(p for p in EXAMPLES if p.stem == name))
    agent = Agent(config)
    agent._build_sensors()
    return config, agent.manifest()


# -- register ---------------------------------------------------------------------------------
def test_register_one_record_per_sensor_with_the_amsterdam_fields(built):
    _, config, manifest = built
    record = exports.register_record(manifest, config)
    json.dumps(record)  # serialisable
    devices = record["amsterdam"]["devices"]
    assert [d["reference"] for d in devices] == \
        [f"{manifest['gateway']}/{s['id']}" for s in manifest["sensors"]]
    for device, sensor in zip(devices, manifest["sensors"], strict=True):
        assert set(device) == AMS_FIELDS
        assert device["type"] in AMS_TYPES
        assert device["contains_pi_data"] is manifest["privacy"]["personal_data"]
        for stream in sensor["streams"]:
            assert f"({stream['name']}, {stream['unit']};" in device["datastream"]
        goal = device["observation_goals"][0]
        assert set(goal) == {"observation_goal", "privacy_declaration", "legal_ground"}
        assert goal["observation_goal"] == manifest["purpose"]
        site = manifest["site"]
        if site is None:
            assert device["location"] is None
        else:
            assert device["location"] == {"latitude": site["lat"], "longitude": site["lon"]}
            assert device["location_description"] == site["name"]
        assert set(device["owner"]) == {"name", "email", "organisation", "telephone", "website"}
        if manifest["owner"]:
            assert device["owner"]["organisation"] == manifest["owner"]["name"]
    assert record["source"]["config_hash"] == manifest["config_hash"]
    assert record["_notes"] and all(isinstance(n, str) for n in record["_notes"])
    assert any("unverified" in n for n in record["_notes"])


def test_register_national_mapping_uses_the_sensrnet_enums(built):
    _, config, manifest = built
    national = exports.register_record(manifest, config)["national"]
    assert national["device"]["name"] == manifest["gateway"]
    assert [s["name"] for s in national["sensors"]] == [s["id"] for s in manifest["sensors"]]
    assert {s["description"] for s in national["sensors"]} <= NL_SENSOR_ENUM
    streams = [(s["id"], st) for s in manifest["sensors"] for st in s["streams"]]
    assert len(national["datastreams"]) == len(streams)
    for ds, (sid, st) in zip(national["datastreams"], streams, strict=True):
        assert ds["name"] == f"{sid}/{st['name']}"
        assert set(ds["theme"]) <= NL_THEME_ENUM
        assert ds["containsPersonalInfoData"] is manifest["privacy"]["personal_data"]
        assert ds["unitOfMeasurement"] not in ("%RH", "count")  # UCUM spelling
    site = manifest["site"]
    if site:
        assert national["device"]["location"]["location"][:2] == [site["lon"], site["lat"]]
        assert national["observationGoals"][0]["legalGround"] == manifest["legal_ground"]


def test_register_types_per_example():
    config, manifest = _manifest("air-quality")
    types = {d["reference"].split("/")[1]: d["type"]
             for d in exports.register_record(manifest, config)["amsterdam"]["devices"]}
    assert types == {"pm": "Chemiesensor", "climate": "Klimaatsensor",
                     "pressure": "Klimaatsensor"}
    config, manifest = _manifest("noise")
    record = exports.register_record(manifest, config)
    assert record["amsterdam"]["devices"][0]["type"] == "Geluidsensor"
    assert record["national"]["sensors"][0]["description"] == "Microphone or SoundMeter"
    config, manifest = _manifest("full")
    record = exports.register_record(manifest, config)
    footfall = record["amsterdam"]["devices"][2]
    assert footfall["type"] == "Optische / camera sensor"
    assert footfall["themes"] == ["Mobiliteit: voetganger"]
    assert any("'footfall' is simulated" in n for n in record["_notes"])


def test_register_notes_missing_config_fields():
    config, manifest = _manifest("minimal")
    record = exports.register_record(manifest, config)
    notes = " ".join(record["_notes"])
    assert "gateway.site is not configured" in notes
    assert "gateway.owner is not configured" in notes
    assert record["national"]["organisation"] is None


# -- citizen page -----------------------------------------------------------------------------
class _Page(HTMLParser):
    VOID = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, dict]] = []
        self.html_lang = None
        self.text: list[str] = []
        self.errors: list[str] = []
        self.headings: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        if tag == "html":
            self.html_lang = dict(attrs).get("lang")
        if tag in ("h1", "h2", "h3"):
            self.headings.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack})")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] not in ("style", "title"):
            self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_citizen_page_is_self_contained_accessible_html(built, lang):
    _, _, manifest = built
    page = exports.citizen_page(manifest, lang, other_page="other.html")
    assert page.startswith("<!DOCTYPE html>")
    p = _parse(page)
    assert not p.errors and not p.stack
    assert p.html_lang == lang
    assert p.tags.count("h1") == 1 and p.headings[0] == "h1"
    assert p.headings.count("h2") >= 6
    assert "main" in p.tags and "title" in p.tags
    for banned in ("script", "link", "img", "iframe", "object", "embed"):
        assert banned not in p.tags
    external = [(tag, a) for tag, a in p.attrs for key in ("src", "href")
                if "http" in (a.get(key) or "")]
    assert external == [("a", {"href": exports.REGISTER_URL_PLACEHOLDER.format(
        gateway=manifest["gateway"]), "rel": "register"})]
    assert "@import" not in page and "url(" not in page


def test_citizen_page_register_link_and_escaping(built):
    _, _, manifest = built
    page = exports.citizen_page(manifest, "en", register_url="https://r.example/x?a=1&b=<2>")
    assert 'href="https://r.example/x?a=1&amp;b=&lt;2&gt;"' in page
    assert "still to be set" not in page
    with pytest.raises(ValueError):
        exports.citizen_page(manifest, "de")


def test_citizen_page_names_every_quantity_in_both_languages(built):
    _, _, manifest = built
    for lang in ("nl", "en"):
        text = " ".join(_parse(exports.citizen_page(manifest, lang)).text)
        for sensor in manifest["sensors"]:
            for stream in sensor["streams"]:
                assert exports._stream_label(stream["name"], lang) in text
                assert exports.CLASS_LABEL[stream["quantity"]][lang] in text
        if manifest["owner"]:
            assert manifest["owner"]["contact"] in text


EXPECTED = {  # example: (Dutch words, English words) the page must contain
    "air-quality": (["fijnstof", "PM2,5", "temperatuur", "luchtvochtigheid", "luchtdruk",
                     "per 5 minuten", "Er wordt geen geluid opgenomen",
                     "geen persoonsgegevens"],
                    ["fine dust", "PM2.5", "temperature", "humidity", "air pressure",
                     "per 5 minutes", "No sound is recorded", "No personal data"]),
    "noise": (["hoe hard het geluid is", "Er wordt geen geluid opgenomen", "Gesprekken",
               "geen camerabeelden", "per minuut"],
              ["sound level", "No audio is recorded", "Conversations", "No camera images",
               "per minute"]),
    "full": (["hoeveel mensen", "minder dan 10", "herkent niemand", "totaal per 15 minuten",
              "geen beelden"],
             ["how many people", "fewer than 10", "recognises no one", "total per 15 minutes",
              "No images are stored or sent"]),
    "demo": (["dit is een test"], ["this is a test"]),
    "minimal": (["De eigenaar is nog niet ingevuld", "Het doel is nog niet ingevuld"],
                ["The owner has not been filled in yet", "not been filled in yet"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_citizen_page_statements_per_example(name):
    _, manifest = _manifest(name)
    for lang, words in zip(("nl", "en"), EXPECTED[name], strict=True):
        text = " ".join(" ".join(_parse(exports.citizen_page(manifest, lang)).text).split())
        for word in words:
            assert word in text, (lang, word)
    if name == "noise":
        en = exports.citizen_page(manifest, "en")
        assert "There is no microphone" not in en and "No people are counted" in en
    if name in ("air-quality", "minimal"):
        assert "No audio is recorded" not in exports.citizen_page(manifest, "en")


def test_citizen_page_personal_data_changes_the_statement():
    _, manifest = _manifest("noise")
    manifest["privacy"]["personal_data"] = True
    en = exports.citizen_page(manifest, "en")
    assert "processes personal data" in en and "No personal data" not in en


# -- QR code ----------------------------------------------------------------------------------
def _png_pixels(data: bytes) -> list[list[int]]:
    """Decode a 1-bit greyscale PNG (what segno writes) into rows of 0/1 pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + length:
                                                                   pos + 12 + length])[0]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert (depth, colour, interlace) == (1, 0, 0)
    raw = zlib.decompress(idat)
    stride = (width + 7) // 8
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) *
                                                         (stride + 1)])
        for i in range(stride):
            left = line[i - 1] if i else 0
            up, corner = prev[i], prev[i - 1] if i else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 255
        rows.append([(line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
        prev = line
    return rows


@needs_segno
@pytest.mark.parametrize("url", ["https://sensoren.example/ams-centrum-lp2210",
                                 "https://www.amsterdam.nl/sensorenregister/?id=ams-west-lp0107"])
def test_qr_png_renders_segnos_matrix_for_the_url(url):
    import segno

    png = exports.qr_png(url)
    assert png == exports.qr_png(url)  # deterministic
    qr = segno.make_qr(url, error="m", boost_error=False)
    scale, border = 10, 4
    size = qr.symbol_size(scale=scale, border=border)
    pixels = _png_pixels(png)
    assert (len(pixels[0]), len(pixels)) == size
    matrix = [list(row) for row in qr.matrix]
    n = len(matrix)
    assert size[0] == (n + 2 * border) * scale
    for y in range(size[1]):
        for x in range(size[0]):
            my, mx = y // scale - border, x // scale - border
            dark = 0 <= my < n and 0 <= mx < n and bool(matrix[my][mx])
            assert pixels[y][x] == (0 if dark else 1), (x, y)
    assert qr.error == "M"


def test_qr_png_missing_segno_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "segno":
            raise ImportError("no segno")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(RuntimeError, match=r"edgeagent\[exports\]"):
        exports.qr_png("https://x.example/")


# -- worksheet --------------------------------------------------------------------------------
def test_worksheet_lists_every_sensor_and_the_blanks(built):
    _, config, manifest = built
    sheet = exports.afwegingskader_worksheet(manifest, config)
    assert sheet.startswith("# Afwegingskader Sensordata en Privacy")
    for sensor in manifest["sensors"]:
        for stream in sensor["streams"]:
            assert f"| `{sensor['id']}` | " in sheet and f"`{stream['name']}`" in sheet
    for step in range(1, 6):
        assert f"### Step {step}. " in sheet
    assert "Steps 6–13 — to be completed" in sheet and "unverified" in sheet
    for step in range(6, 14):
        assert f"- Step {step}: {exports.BLANK}" in sheet
    assert sheet.count(exports.BLANK) >= 20
    assert manifest["config_hash"] in sheet
    assert f"{config.state_dir}/outbox.sqlite3" in sheet
    assert "Legal ground" in sheet and "DPIA" in sheet
    if manifest["purpose"]:
        assert manifest["purpose"] in sheet


def test_worksheet_mentions_audio_only_for_noise():
    config, manifest = _manifest("noise")
    assert "no audio, spectrum or waveform" in exports.afwegingskader_worksheet(manifest, config)
    config, manifest = _manifest("air-quality")
    sheet = exports.afwegingskader_worksheet(manifest, config)
    assert "no audio, spectrum" not in sheet
    assert "`pm` measures 1 minute of every 5 minutes" in sheet


# -- command line -----------------------------------------------------------------------------
@needs_segno
@pytest.mark.parametrize("example", EXAMPLES, ids=_ids)
def test_cli_writes_the_five_files(example, tmp_path, capsys):
    out = tmp_path / "out"
    args = argparse.Namespace(config=example, out=out, url=None, register_url=None)
    assert exports.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    config = load_config(example)
    placeholder = exports.PAGE_URL_PLACEHOLDER.format(gateway=config.gateway.id)
    assert (out / "sign-qr.png").read_bytes() == exports.qr_png(placeholder)
    assert placeholder in capsys.readouterr().err
    record = json.loads((out / "register.json").read_text(encoding="utf-8"))
    assert len(record["amsterdam"]["devices"]) == len(config.sensors)
    for lang in ("nl", "en"):
        page = (out / f"citizen-{lang}.html").read_text(encoding="utf-8")
        other = "en" if lang == "nl" else "nl"
        assert f'href="citizen-{other}.html"' in page
    assert (out / "afwegingskader.md").read_text(encoding="utf-8").count(exports.BLANK) >= 20


@needs_segno
def test_cli_parser_url_and_bad_config(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    exports.add_parser(sub)
    noise = next(p for p in EXAMPLES if p.stem == "noise")
    args = parser.parse_args(["register-export", "-c", str(noise), "--out", str(tmp_path),
                              "--url", "https://www.example.org/s/1",
                              "--register-url", "https://reg.example.org/1"])
    assert args.func is exports.main
    assert args.func(args) == 0
    assert (tmp_path / "sign-qr.png").read_bytes() == exports.qr_png("https://www.example.org/s/1")
    assert 'href="https://reg.example.org/1"' in (tmp_path / "citizen-en.html").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {id: x}\nmqtt: {host: h, protocl: 5}\nsensors: []\n")
    args = parser.parse_args(["register-export", "-c", str(bad), "--out", str(tmp_path / "b")])
    assert args.func(args) == 78
    assert not (tmp_path / "b").exists()
    assert "protocl" in capsys.readouterr().err
