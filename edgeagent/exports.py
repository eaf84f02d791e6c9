"""Exports for the municipality, built from the transparency manifest (nothing fetched).

``edgeagent register-export -c CONFIG --out DIR [--url URL] [--register-url URL]`` writes:

- ``register.json``: one sensor-register record per sensor, with the field names of the
  Amsterdam sensor register API (APV art. 2.25a) and a second mapping for the national register
  (SensRNet data model); see :func:`register_record`;
- ``citizen-nl.html`` / ``citizen-en.html``: a static, self-contained information page for the
  QR code on the sign (Communicatierichtlijn Sensoren); see :func:`citizen_page`;
- ``sign-qr.png``: the QR code for the sign or sticker; see :func:`qr_png`;
- ``afwegingskader.md``: an Afwegingskader Sensordata en Privacy worksheet pre-filled from the
  config, with blanks for the privacy officer; see :func:`afwegingskader_worksheet`.

Field names and values follow ``shared/reference/privacy-and-standards.md`` (sections 2, 4.1,
4.2 and 9.2); the choices made where the reference leaves room are listed in the record's
``_notes``. Documentation: ``docs/register-and-signage.md``.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent.config import DEFAULT_CONFIG, EX_CONFIG, ConfigError, load_config

if TYPE_CHECKING:
    from edgeagent.config import AgentConfig

RECORD_FORMAT = "edgeagent-register-export/1"
#: What a worksheet blank looks like; the privacy officer replaces every one of them.
BLANK = "☐ _to be completed by the privacy officer:_ ……"
#: Placeholder addresses (``.example`` is reserved, RFC 2606: they never resolve).
PAGE_URL_PLACEHOLDER = "https://sensoren.example/{gateway}"
REGISTER_URL_PLACEHOLDER = "https://sensorenregister.example/{gateway}"

# -- register vocabularies (reference 2.1, 2.2, 9.2) -------------------------------------------
#: Amsterdam ``type`` per privacy class, strongest first (a PMS5003T with PM and climate streams
#: is a Chemiesensor).
AMS_TYPE = (("people_count", "Optische / camera sensor"), ("noise", "Geluidsensor"),
            ("presence", "Aanwezigheid of nabijheidsensor"), ("particulate", "Chemiesensor"),
            ("climate", "Klimaatsensor"))
#: Amsterdam ``themes`` per privacy class (values seen in the register; not a closed list).
AMS_THEME = {"particulate": "Milieu", "climate": "Milieu", "noise": "Milieu",
             "people_count": "Mobiliteit: voetganger", "presence": "Mobiliteit: voetganger"}
#: SensRNet Sensor ``description`` enum per privacy class, strongest first.
NL_SENSOR = (("people_count", "Camera Fixed"), ("noise", "Microphone or SoundMeter"),
             ("presence", "Motion Sensor"), ("particulate", "Fine Dust Sensor"),
             ("climate", "Weather Station"))
#: SensRNet Datastream ``theme`` enum per privacy class.
NL_THEME = {"particulate": "Air", "climate": "Air", "noise": "Sound", "people_count": "Safety",
            "presence": "Safety"}
#: Manifest units that are not UCUM codes, and their UCUM spelling.
UCUM = {"%RH": "%", "count": "{count}", "/cm3": "/cm3", "1": "1", "%": "%"}

# -- plain-language labels for the citizen page --------------------------------------------------
CLASS_LABEL = {
    "particulate": {"nl": "fijnstof in de lucht",
                    "en": "fine dust (particulate matter) in the air"},
    "climate": {"nl": "het weer bij de sensor", "en": "the weather at the sensor"},
    "noise": {"nl": "hoe hard het geluid is (in decibel)",
              "en": "how loud it is (sound level in decibels)"},
    "people_count": {"nl": "hoeveel mensen er langs lopen",
                     "en": "how many people walk past"},
    "presence": {"nl": "of er iemand is of beweegt (niet wie, niet hoeveel)",
                 "en": "whether someone is there or moving (not who, not how many)"},
}
STREAM_LABEL = {
    "pm1": ("PM1", "PM1"), "pm25": ("PM2,5", "PM2.5"), "pm4": ("PM4", "PM4"),
    "pm10": ("PM10", "PM10"), "typical_size": ("grootte van de deeltjes", "particle size"),
    "temperature": ("temperatuur", "temperature"),
    "relativeHumidity": ("luchtvochtigheid", "humidity"),
    "pressure": ("luchtdruk", "air pressure"),
    "vocIndex": ("vluchtige stoffen (VOC-index)", "volatile organic compounds (VOC index)"),
    "noxIndex": ("stikstofoxiden (NOx-index)", "nitrogen oxides (NOx index)"),
    "people": ("aantal mensen", "number of people"),
    "peopleIn": ("mensen naar binnen", "people going in"),
    "peopleOut": ("mensen naar buiten", "people going out"),
    "occupancy": ("mensen tegelijk aanwezig", "people present at once"),
    "presence": ("tijd dat er iemand is", "time someone is there"),
    "motion": ("tijd met beweging", "time with movement"),
    "motionEvents": ("bewegingsmeldingen (geen personen)", "motion alerts (not people)"),
}


def _stream_label(name: str, lang: str) -> str:
    i = 0 if lang == "nl" else 1
    if name in STREAM_LABEL:
        return STREAM_LABEL[name][i]
    if name.startswith("n") and name[1:2].isdigit():
        return "aantal deeltjes" if lang == "nl" else "number of particles"
    if name.startswith("l") and name.endswith(("eq", "max", "min", "af")):
        return "geluidsniveau" if lang == "nl" else "sound level"
    return name


def _classes(sensor: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for stream in sensor["streams"]:
        if stream["quantity"] not in seen:
            seen.append(stream["quantity"])
    return seen


def _first(table: tuple[tuple[str, str], ...], classes: list[str], default: str) -> str:
    return next((value for cls, value in table if cls in classes), default)


def _owner_fields(owner: dict[str, Any] | None) -> dict[str, Any]:
    """The Amsterdam ``owner{name, email, organisation, telephone, website}`` from the config."""
    contact = (owner or {}).get("contact") or ""
    is_mail = "@" in contact and not contact.startswith(("http://", "https://"))
    is_web = contact.startswith(("http://", "https://"))
    is_phone = bool(contact) and not (is_mail or is_web) and \
        all(c.isdigit() or c in "+-() " for c in contact)
    return {"name": None, "email": contact if is_mail else None,
            "organisation": (owner or {}).get("name"),
            "telephone": contact if is_phone else None, "website": contact if is_web else None}


def _what_is_measured(sensor: dict[str, Any]) -> str:
    parts = [f"{s['description'] or s['name']} ({s['name']}, {s['unit']}; "
             f"{', '.join(s['statistics'])} per {_duration(sensor['window_s'], 'en')})"
             for s in sensor["streams"]]
    return "; ".join(parts)


def register_record(manifest: dict[str, Any], config: AgentConfig) -> dict[str, Any]:
    """The sensor-register record of a gateway: one entry per sensor, two register mappings.

    The registers register *sensors*: Amsterdam's form and ``/devices`` serializer describe one
    sensor each, so every sensor of the gateway is one ``amsterdam.devices[]`` entry. The national
    register (SensRNet, aligned with OGC SensorThings) has one Device (the gateway) holding
    Sensors, each with Datastreams (one per stream) and ObservationGoals.

    Args:
        manifest: ``Agent(config).manifest()`` after ``_build_sensors()``.
        config: the validated agent config the manifest was built from.

    Returns:
        A JSON-serialisable dict with ``amsterdam``, ``national``, ``source`` and ``_notes``.
        Fields the config cannot supply (privacy statement, end date, …) are
        ``null`` and listed in ``_notes``: fill them in before submitting.
    """
    gw = manifest["gateway"]
    site = manifest.get("site")
    owner = manifest.get("owner")
    purpose = manifest.get("purpose")
    personal = bool(manifest["privacy"]["personal_data"])
    notes: list[str] = [
        "Unit: the registers register sensors, not gateways. Amsterdam: one amsterdam.devices[] "
        "record per sensor (reference = '<gateway>/<sensor>'); national (SensRNet): the gateway "
        "is the Device, each sensor a Sensor, each stream a Datastream.",
        "Not in the config, left null, fill in before submitting: "
        + ("" if manifest.get("legal_ground") else
           "observation_goals[].legal_ground (Amsterdam) and legalGround (national) — or set "
           "gateway.legal_ground in the config —, ")
        + "observation_goals[].privacy_declaration (Amsterdam), "
        "legalGroundLink (national), active_until (Amsterdam requires an end "
        "date; staying longer means a new report), owner.name (contact person), "
        "project_paths, national device.category and connectivity.",
        "Placement date: the reference names no register API field for it; Amsterdam requires "
        "the report at least five days before placing, and a report of changes in the data "
        "collected and of removal.",
        "Sensor type mapping follows the reference (PM -> Chemiesensor, sound -> Geluidsensor, "
        "people counting -> Optische / camera sensor); climate-only sensors -> Klimaatsensor "
        "is this export's choice from the register's type list. National: climate-only -> "
        "'Weather Station', and Datastream theme 'Air' for climate streams, are also choices.",
        "Amsterdam themes: 'Milieu' and 'Mobiliteit: voetganger' are values seen in the "
        "register, which the reference does not give as a closed list.",
        "National organisation field names (organisationCode, website, name, email, phone) "
        "come from the SensRNet definitions document, not from the API request bodies: "
        "unverified as JSON names.",
        "National links and data frequency: the reference gives no JSON names for a "
        "Datastream's sensor link or ResultTime; this export writes sensorId and resultTime_s "
        "(the window in seconds) and adds model / simulated to each Sensor: unverified names.",
        "National isPublic / isOpenData / isReusable are left null (decision of the data "
        "owner); the API defaults them to true when omitted.",
        "Units: manifest units mapped to UCUM where they differ (%RH -> %, count -> {count}); "
        "location z is the mounting height above ground from gateway.site.height_m (the "
        "datum of Z is not stated in the reference).",
    ]
    if site is None:
        notes.append("gateway.site is not configured: location is null (required by both "
                     "registers).")
    if owner is None:
        notes.append("gateway.owner is not configured: owner and contact are null.")
    if purpose is None:
        notes.append("gateway.purpose is not configured: the purpose (Waarvoor meet u dat?) is "
                     "null.")
    for sensor in manifest["sensors"]:
        if sensor["simulated"]:
            notes.append(f"sensor {sensor['id']!r} is simulated: do not register it until a "
                         "real sensor is fitted.")

    location = None if site is None else {"latitude": site["lat"], "longitude": site["lon"]}
    owner_fields = _owner_fields(owner)
    devices = []
    for sensor in manifest["sensors"]:
        classes = _classes(sensor)
        devices.append({
            "reference": f"{gw}/{sensor['id']}",
            "type": _first(AMS_TYPE, classes, "Overig"),
            "location": location,
            "location_description": None if site is None else site["name"],
            "regions": [],
            "datastream": _what_is_measured(sensor),
            "observation_goals": [{"observation_goal": purpose, "privacy_declaration": None,
                                   "legal_ground": manifest.get("legal_ground")}],
            "themes": sorted({AMS_THEME.get(c, "Overig") for c in classes}),
            "contains_pi_data": personal,
            "active_until": None,
            "owner": owner_fields,
            "project_paths": [],
        })

    coordinates = None
    if site is not None:
        coordinates = [site["lon"], site["lat"]]
        if site.get("height_m") is not None:
            coordinates.append(site["height_m"])
    sensors, datastreams = [], []
    for sensor in manifest["sensors"]:
        classes = _classes(sensor)
        model = sensor["model"]
        sensors.append({
            "name": sensor["id"], "deviceId": gw,
            "description": _first(NL_SENSOR, classes, "Weather Station"),
            "manufacturer": None if sensor["simulated"] else model.split()[0],
            "supplier": None, "documentation": None,
            "model": model, "simulated": sensor["simulated"],
        })
        for stream in sensor["streams"]:
            datastreams.append({
                "sensorId": sensor["id"], "name": f"{sensor['id']}/{stream['name']}",
                "description": f"{stream['description'] or stream['name']}: "
                               f"{', '.join(stream['statistics'])} per "
                               f"{_duration(sensor['window_s'], 'en')}",
                "unitOfMeasurement": UCUM.get(stream["unit"], stream["unit"]),
                "observedArea": None,
                "theme": [NL_THEME.get(stream["quantity"], "Air")],
                "dataQuality": None, "isActive": True,
                "isPublic": None, "isOpenData": None, "isReusable": None,
                "containsPersonalInfoData": personal,
                "documentation": None, "dataLink": None,
                "resultTime_s": sensor["window_s"],
            })
    national = {
        "device": {"name": gw, "category": None, "connectivity": None,
                   "description": purpose,
                   "location": None if coordinates is None else
                   {"location": coordinates, "name": site["name"]}},
        "sensors": sensors,
        "datastreams": datastreams,
        "observationGoals": [{"description": purpose,
                              "legalGround": manifest.get("legal_ground"),
                              "legalGroundLink": None,
                              "datastreams": [d["name"] for d in datastreams]}],
        "organisation": None if owner is None else {
            "name": owner["name"], "organisationCode": None,
            "email": owner_fields["email"], "phone": owner_fields["telephone"],
            "website": owner_fields["website"]},
    }
    return {
        "format": RECORD_FORMAT,
        "gateway": gw,
        "source": {"config_hash": manifest["config_hash"], "edgeagent": manifest["version"],
                   "manifest_published": manifest["published"],
                   "topic_root": manifest["contract"]["topic_root"],
                   "state_dir": str(config.state_dir)},
        "amsterdam": {"devices": devices},
        "national": national,
        "_notes": notes,
    }


# -- citizen page ---------------------------------------------------------------------------------
def _per(seconds: float, lang: str) -> str:
    """``per minuut`` / ``per 5 minutes``: a window in plain words."""
    text = _duration(seconds, lang)
    return f"per {text.split(' ', 1)[1] if text.startswith('1 ') else text}"


def _duration(seconds: float, lang: str) -> str:
    seconds = float(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        n, unit = int(seconds // 3600), ("uur", "uur") if lang == "nl" else ("hour", "hours")
    elif seconds >= 60 and seconds % 60 == 0:
        n, unit = int(seconds // 60), ("minuut", "minuten") if lang == "nl" else \
            ("minute", "minutes")
    else:
        n, unit = int(seconds) if seconds == int(seconds) else seconds, \
            ("seconde", "seconden") if lang == "nl" else ("second", "seconds")
    return f"{n} {unit[0] if n == 1 else unit[1]}"


TEXT = {
    "nl": {
        "title": "Sensor op deze plek",
        "h1": "Hier meet een sensor",
        "intro": "Op deze plek hangt een kastje met sensoren. Op deze pagina leest u wat het "
                 "meet, wie dat doet en waarom.",
        "what": "Wat wordt hier gemeten?",
        "avg": "Het kastje stuurt alleen een gemiddelde {window}.",
        "sum": "Het kastje stuurt alleen het totaal {window}.",
        "sum_occupancy": "Het kastje stuurt alleen het totaal {window}, en hoeveel mensen er "
                         "gemiddeld en hoogstens tegelijk waren.",
        "sim": "Let op: dit is een test. De waarden zijn nagemaakt, er wordt niets echt gemeten.",
        "who": "Wie meet er?",
        "owner": "Deze sensor is van: {owner}.",
        "no_owner": "De eigenaar is nog niet ingevuld.",
        "why": "Waarom?",
        "no_purpose": "Het doel is nog niet ingevuld.",
        "not": "Wat wordt hier niet gemeten?",
        "no_images": "Er worden geen foto's of filmpjes gemaakt. Er worden geen camerabeelden "
                     "bewaard of verstuurd.",
        "no_audio": "Er wordt geen geluid opgenomen. Het kastje meet alleen hoe hard het is. "
                    "Gesprekken zijn niet te horen en worden niet bewaard of verstuurd.",
        "no_mic": "Er is geen microfoon. Er wordt geen geluid opgenomen.",
        "no_images_counter": "Er worden geen beelden bewaard of verstuurd.",
        "no_people": "Er worden geen mensen geteld of herkend.",
        "people": "Het kastje telt mensen, maar herkent niemand. Een klein aantal (minder dan "
                  "{k}) wordt niet doorgegeven.",
        "no_pd": "Er worden geen persoonsgegevens verwerkt. Het kastje kijkt niet naar "
                 "telefoons (geen wifi of bluetooth).",
        "pd": "Bij deze sensor worden persoonsgegevens verwerkt. Lees de privacyverklaring "
              "in het sensorregister.",
        "raw": "De losse metingen blijven in het kastje. Alleen de gemiddelden gaan naar de "
               "gemeente.",
        "keep": "Hoe lang blijft data in het kastje?",
        "keep_raw": "Losse metingen staan alleen in het werkgeheugen, zolang het meten van "
                    "één gemiddelde duurt (hoogstens {window}). Ze worden nooit opgeslagen.",
        "keep_agg": "Een gemiddelde blijft in het kastje tot het verstuurd is. Meestal is dat "
                    "na een paar seconden. Valt het netwerk uit, dan wacht het kastje. Is de "
                    "opslag vol, dan worden de oudste gemiddelden gewist.",
        "contact": "Vragen of bezwaar?",
        "contact_text": "Neem contact op met: {contact}.",
        "no_contact": "Het contactadres is nog niet ingevuld.",
        "register": "Meer informatie",
        "register_text": "Alle gegevens van deze sensor staan in het sensorregister:",
        "register_link": "Bekijk deze sensor in het sensorregister",
        "placeholder": "(link nog invullen)",
        "footer": "Sensor {gateway}. Deze pagina is gemaakt uit de instellingen van het "
                  "kastje (versie {hash}).",
        "switch": "English",
    },
    "en": {
        "title": "Sensor at this location",
        "h1": "A sensor measures here",
        "intro": "A small box with sensors hangs at this location. This page tells you what it "
                 "measures, who runs it and why.",
        "what": "What is measured here?",
        "avg": "The box only sends an average {window}.",
        "sum": "The box only sends the total {window}.",
        "sum_occupancy": "The box only sends the total {window}, and how many people were "
                         "there at once on average and at most.",
        "sim": "Note: this is a test. The values are simulated; nothing is really measured.",
        "who": "Who measures?",
        "owner": "This sensor belongs to: {owner}.",
        "no_owner": "The owner has not been filled in yet.",
        "why": "Why?",
        "no_purpose": "The purpose has not been filled in yet.",
        "not": "What is not measured here?",
        "no_images": "No photos or videos are taken. No camera images are stored or sent.",
        "no_audio": "No audio is recorded. The box only measures how loud it is. Conversations "
                    "cannot be heard and are not stored or sent.",
        "no_mic": "There is no microphone. No sound is recorded.",
        "no_images_counter": "No images are stored or sent.",
        "no_people": "No people are counted or recognised.",
        "people": "The box counts people but recognises no one. Small numbers (fewer than {k}) "
                  "are not passed on.",
        "no_pd": "No personal data are processed. The box does not look at phones (no Wi-Fi "
                 "or Bluetooth).",
        "pd": "This sensor processes personal data. Read the privacy statement in the sensor "
              "register.",
        "raw": "Individual readings stay in the box. Only the averages go to the municipality.",
        "keep": "How long are data kept in the box?",
        "keep_raw": "Individual readings are only in working memory, for as long as it takes "
                    "to measure one average (at most {window}). They are never saved.",
        "keep_agg": "An average stays in the box until it has been sent, usually after a few "
                    "seconds. If the network is down, the box waits. When its storage is full, "
                    "the oldest averages are deleted.",
        "contact": "Questions or objections?",
        "contact_text": "Please contact: {contact}.",
        "no_contact": "The contact address has not been filled in yet.",
        "register": "More information",
        "register_text": "All details of this sensor are in the sensor register:",
        "register_link": "View this sensor in the sensor register",
        "placeholder": "(link still to be set)",
        "footer": "Sensor {gateway}. This page was made from the box's settings "
                  "(version {hash}).",
        "switch": "Nederlands",
    },
}

CSS = ("body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;"
       "max-width:40rem;margin:0 auto;padding:1rem;line-height:1.5;color:#111;"
       "background:#fff;font-size:1.125rem}"
       "h1{font-size:1.75rem;margin-top:.5rem}h2{font-size:1.25rem;margin-top:1.5rem}"
       "a{color:#0645ad}a:focus{outline:3px solid #111;outline-offset:2px}"
       "ul{padding-left:1.25rem}.note{border-left:4px solid #111;padding-left:.75rem}"
       "footer{margin-top:2rem;font-size:.9rem;color:#333}")


def _facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the page may claim, derived from the manifest only."""
    sensors = manifest["sensors"]
    classes = {c for s in sensors for c in _classes(s)}
    ks = [st["k"] for s in sensors for st in s["streams"]
          if st["quantity"] == "people_count" and st["k"] is not None]
    return {"classes": classes,
            "raw_stays": manifest["privacy"]["raw_data_leaves_device"] is False,
            "personal": bool(manifest["privacy"]["personal_data"]),
            "max_window": max((s["window_s"] for s in sensors), default=0),
            "k": min(ks) if ks else None,
            "simulated": any(s["simulated"] for s in sensors)}


def citizen_page(manifest: dict[str, Any], lang: str, *, register_url: str | None = None,
                 other_page: str | None = None) -> str:
    """A static, self-contained information page for the QR code on the sign.

    It follows the Communicatierichtlijn Sensoren and the first layer of EDPB 3/2019: what is
    measured, by whom, why, what is not measured, how long data stay on the device, whom to
    contact, and a link to the register entry. Every "not measured" statement is derived from
    the manifest (``raw_data_leaves_device``, ``personal_data``, the streams' privacy classes
    and the windows). No external CSS, scripts or fonts.

    Args:
        manifest: ``Agent(config).manifest()`` after ``_build_sensors()``.
        lang: ``"nl"`` (plain Dutch, B1) or ``"en"``.
        register_url: the sensor's entry in the register; default a ``.example`` placeholder
            that is marked as such on the page.
        other_page: relative link to the page in the other language (e.g. ``citizen-en.html``).

    Returns:
        The HTML document.

    Raises:
        ValueError: for a language other than ``nl`` or ``en``.
    """
    if lang not in TEXT:
        raise ValueError(f"lang must be 'nl' or 'en', not {lang!r}")
    t, e = TEXT[lang], html.escape
    gw = manifest["gateway"]
    facts = _facts(manifest)
    owner, purpose = manifest.get("owner"), manifest.get("purpose")
    placeholder = register_url is None
    url = REGISTER_URL_PLACEHOLDER.format(gateway=gw) if placeholder else register_url

    items = []
    for sensor in manifest["sensors"]:
        for cls in _classes(sensor):
            names = []
            for stream in sensor["streams"]:
                label = _stream_label(stream["name"], lang)
                if stream["quantity"] == cls and label not in names:
                    names.append(label)
            detail = ", ".join(names)
            occupancy = any(st["kind"] == "occupancy" for st in sensor["streams"])
            text = ("sum_occupancy" if occupancy else "sum") if cls == "people_count" else "avg"
            avg = t[text].format(
                window=_per(sensor["window_s"], lang))
            items.append(f"<li><strong>{e(CLASS_LABEL[cls][lang])}</strong>: {e(detail)}. "
                         f"{e(avg)}</li>")
    images = "no_images_counter" if "people_count" in facts["classes"] else "no_images"
    not_measured = [t[images] if facts["raw_stays"] else None,
                    (t["no_audio"] if "noise" in facts["classes"] else t["no_mic"])
                    if facts["raw_stays"] else None,
                    t["people"].format(k=facts["k"]) if "people_count" in facts["classes"]
                    and facts["k"] is not None else
                    (None if "people_count" in facts["classes"] else t["no_people"]),
                    t["pd"] if facts["personal"] else t["no_pd"],
                    t["raw"] if facts["raw_stays"] else None]
    keep = [t["keep_raw"].format(window=_duration(facts["max_window"], lang))
            if facts["raw_stays"] else None, t["keep_agg"]]

    def para(text: str | None, cls: str = "") -> str:
        if text is None:
            return ""
        attr = f' class="{cls}"' if cls else ""
        return f"<p{attr}>{e(text)}</p>\n"

    parts = [
        "<!DOCTYPE html>\n",
        f'<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{e(t['title'])} – {e(gw)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        "<main>\n",
        f"<h1>{e(t['h1'])}</h1>\n",
        para(t["intro"]),
        para(t["sim"], "note") if facts["simulated"] else "",
        f"<h2>{e(t['what'])}</h2>\n<ul>\n", "\n".join(items), "\n</ul>\n",
        f"<h2>{e(t['who'])}</h2>\n",
        para(t["owner"].format(owner=owner["name"]) if owner else t["no_owner"]),
        f"<h2>{e(t['why'])}</h2>\n",
        para(purpose or t["no_purpose"]),
        f"<h2>{e(t['not'])}</h2>\n<ul>\n",
        "".join(f"<li>{e(x)}</li>\n" for x in not_measured if x),
        "</ul>\n",
        f"<h2>{e(t['keep'])}</h2>\n", "".join(para(x) for x in keep),
        f"<h2>{e(t['contact'])}</h2>\n",
        para(t["contact_text"].format(contact=owner["contact"]) if owner else t["no_contact"]),
        f"<h2>{e(t['register'])}</h2>\n",
        f"<p>{e(t['register_text'])} <a href=\"{e(url)}\" rel=\"register\">"
        f"{e(t['register_link'])}</a>{' ' + e(t['placeholder']) if placeholder else ''}</p>\n",
        "</main>\n<footer>\n",
        para(t["footer"].format(gateway=gw, hash=manifest["config_hash"][:19])),
        f'<p><a href="{e(other_page)}" hreflang="{"en" if lang == "nl" else "nl"}">'
        f"{e(t['switch'])}</a></p>\n" if other_page else "",
        "</footer>\n</body>\n</html>\n",
    ]
    return "".join(parts)


# -- QR code --------------------------------------------------------------------------------------
def qr_png(url: str, *, scale: int = 10, border: int = 4) -> bytes:
    """A QR code PNG of ``url`` for the sign or sticker (error correction level M).

    Args:
        url: what the code encodes (the citizen page's public address).
        scale: pixels per module (10 prints sharply at sticker size).
        border: quiet zone in modules (4 is the QR standard's minimum).

    Returns:
        The PNG file's bytes.

    Raises:
        RuntimeError: when segno, from the ``exports`` extra, is not installed.
    """
    try:
        import segno
    except ImportError as exc:
        raise RuntimeError("the QR code needs segno: pip install 'edgeagent[exports]'") from exc
    buf = io.BytesIO()
    segno.make_qr(url, error="m", boost_error=False).save(buf, kind="png", scale=scale,
                                                          border=border)
    return buf.getvalue()


# -- Afwegingskader worksheet ---------------------------------------------------------------------
def afwegingskader_worksheet(manifest: dict[str, Any], config: AgentConfig) -> str:
    """A Markdown Afwegingskader Sensordata en Privacy worksheet pre-filled from the config.

    The facts (what is measured, purpose, proportionality measures in force, retention on the
    device, personal-data assessment) come from the manifest and config. Steps 1–5 of the
    afwegingskader are the ones the reference confirms; steps 6–13 are listed as to be completed
    from the official checklist. Every judgement is left as a blank (:data:`BLANK`).

    Args:
        manifest: ``Agent(config).manifest()`` after ``_build_sensors()``.
        config: the validated agent config the manifest was built from.

    Returns:
        The worksheet as Markdown.
    """
    gw = manifest["gateway"]
    site, owner, purpose = manifest.get("site"), manifest.get("owner"), manifest.get("purpose")
    privacy = manifest["privacy"]
    out: list[str] = []
    add = out.append
    add(f"# Afwegingskader Sensordata en Privacy — worksheet for gateway `{gw}`\n")
    add(f"Pre-filled by edgeagent {manifest['version']} from the configuration with hash "
        f"`{manifest['config_hash']}` on {manifest['published']}. The facts in part A describe "
        "what the software does with this configuration; every judgement is for the privacy "
        f"officer. Replace each {BLANK!s} mark. This worksheet is not legal advice.\n")
    add("## A. Facts from the configuration\n")
    add("### A.1 Location, owner and purpose\n")
    if site:
        height = "" if site.get("height_m") is None else f", {site['height_m']} m above ground"
        add(f"- Location: {site['name']} (WGS 84 {site['lat']}, {site['lon']}{height})")
    else:
        add(f"- Location: not configured (`gateway.site`). {BLANK}")
    add(f"- Owner: {owner['name']}; public contact: {owner['contact']}" if owner else
        f"- Owner: not configured (`gateway.owner`). {BLANK}")
    add(f"- Purpose as configured: {purpose}" if purpose else
        f"- Purpose: not configured (`gateway.purpose`). {BLANK}")
    add(f"- Legal ground (wettelijke grondslag): {BLANK}")
    add(f"- Placement date and end date (Amsterdam: report at least five days before placing; "
        f"an end date is required): {BLANK}\n")
    add("### A.2 What is measured\n")
    add("| sensor | model | stream | what | unit | statistics sent | window | k |")
    add("|---|---|---|---|---|---|---|---|")
    for sensor in manifest["sensors"]:
        model = sensor["model"] + (" (simulated)" if sensor["simulated"] else "")
        for st in sensor["streams"]:
            add(f"| `{sensor['id']}` | {model} | `{st['name']}` | {st['description']} | "
                f"{st['unit']} | {', '.join(st['statistics'])} | "
                f"{_duration(sensor['window_s'], 'en')} | "
                f"{'—' if st['k'] is None else st['k']} |")
    add("")
    add("### A.3 Proportionality measures in force\n")
    add(f"- Privacy preset `{privacy['preset']}`. Per privacy class:")
    for cls, policy in privacy["classes"].items():
        k = "" if policy["k"] is None else f"; counts below k = {policy['k']} are published as " \
            "suppressed (null), never as a number"
        add(f"  - {cls}: windows of at least {_duration(policy['min_window_s'], 'en')}, only "
            f"{', '.join(policy['statistics'])}{k}")
    add(f"- Raw data leave the device: {'no' if not privacy['raw_data_leaves_device'] else 'YES'}"
        " — only the aggregates above are published.")
    if any("noise" in _classes(s) for s in manifest["sensors"]):
        add("- Sound: audio samples stay in memory (100 ms at a time); no audio, spectrum or "
            "waveform feature is stored or sent, only levels per window.")
    if any(s["duty_cycle"] for s in manifest["sensors"]):
        add("- Duty cycle: " + "; ".join(
            f"`{s['id']}` measures {_duration(s['duty_cycle']['measure_s'], 'en')} of every "
            f"{_duration(s['duty_cycle']['period_s'], 'en')}"
            for s in manifest["sensors"] if s["duty_cycle"]))
    add(f"- The gateway id `{gw}` is a configured name, never a hardware identifier.")
    add(f"- Proportionality assessment (is this resolution needed for the purpose? could "
        f"longer windows or fewer statistics do?): {BLANK}\n")
    add("### A.4 Retention on the device\n")
    windows = ", ".join(f"`{s['id']}` {_duration(s['window_s'], 'en')}"
                        for s in manifest["sensors"])
    add(f"- Raw readings: in memory only, for one window ({windows}); never written to disk.")
    add(f"- Aggregates: in the outbox `{config.state_dir}/outbox.sqlite3` until the broker "
        "acknowledges them (normally seconds), then deleted. During an outage at most "
        f"{config.outbox.max_bytes / 2**20:g} MiB are kept; beyond that the oldest are "
        "dropped and the drop is announced.")
    add(f"- Retention after publication (platform side, outside the gateway): {BLANK}\n")
    add("### A.5 Personal-data assessment\n")
    add(f"- The manifest declares personal data: "
        f"{'yes' if privacy['personal_data'] else 'no'} (register question *Worden er "
        "persoonsgegevens verwerkt?*).")
    classes = {c for s in manifest["sensors"] for c in _classes(s)}
    if "people_count" in classes:
        add("- People counting: only counts per window leave the device; small counts are "
            "suppressed. Singling out at quiet hours is the residual risk to weigh (WP216: "
            "singling out, linkability, inference).")
    if "presence" in classes:
        add("- Presence (radar, PIR): only the share of each window in which someone was there "
            "or moved leaves the device; no distances, positions or numbers of people. At a "
            "quiet spot a non-zero share can still tell that one person was there.")
    add("- No Wi-Fi/Bluetooth MAC addresses, images or audio are published.")
    add(f"- Singling out / linkability / inference (WP216) — conclusion: {BLANK}")
    add(f"- DPIA needed? {BLANK}\n")
    add("## B. Afwegingskader steps\n")
    add("Steps 1–5 as confirmed in the reference (City Deal tool after the Provincie "
        "Noord-Brabant checklist *In 13 stappen naar maatschappelijke meerwaarde van sensoren*; "
        "worked example: Smart Zwolle).\n")
    steps = [
        ("1. Policy question (beleidsvraag)",
         f"Configured purpose as a starting point: {purpose or 'none configured'}."),
        ("2. Information need (informatiebehoefte)",
         "Measured: " + "; ".join(f"{s['id']}: {', '.join(x['name'] for x in s['streams'])} "
                                  f"per {_duration(s['window_s'], 'en')}"
                                  for s in manifest["sensors"]) + "."),
        ("3. Societal added value (maatschappelijke meerwaarde)", None),
        ("4. Do the data already exist? (e.g. RIVM Samen Meten, municipal noise maps, "
         "existing counts)", None),
        ("5. Alternative ways of collecting them (survey, manual counts), with cost and effort",
         None),
    ]
    for title, fact in steps:
        add(f"### Step {title}\n")
        if fact:
            add(f"Pre-filled: {fact}\n")
        add(f"{BLANK}\n")
    add("### Steps 6–13 — to be completed\n")
    add("The content of steps 6–13 is not confirmed in edgeagent's reference (unverified: the "
        "worked example goes on with regional cooperation and informing neighbouring "
        "municipalities, then privacy, proportionality, legal basis and the remaining steps). "
        "Complete them from the official Afwegingskader; A.3–A.5 hold the facts they need.\n")
    for n in range(6, 14):
        add(f"- Step {n}: {BLANK}")
    add("")
    add("## C. Decision\n")
    add(f"- Decision (place / place with conditions / do not place): {BLANK}")
    add(f"- Name and role of the assessor, date: {BLANK}")
    add(f"- Review date: {BLANK}")
    return "\n".join(out) + "\n"


# -- command line ---------------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``register-export`` command to the ``edgeagent`` sub-command parsers."""
    cmd = subparsers.add_parser(
        "register-export", help="write the register record, citizen pages, QR code, worksheet",
        description="Write register.json, citizen-nl.html, citizen-en.html, sign-qr.png and "
        "afwegingskader.md for the municipality, built from this config's manifest.")
    cmd.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                     help=f"config file (default {DEFAULT_CONFIG})")
    cmd.add_argument("--out", type=Path, required=True, help="directory to write the files to")
    cmd.add_argument("--url", default=None,
                     help="public address of the citizen page, encoded in the QR code "
                     f"(default a placeholder, {PAGE_URL_PLACEHOLDER})")
    cmd.add_argument("--register-url", default=None,
                     help="the sensor's register entry, linked from the page "
                     f"(default a placeholder, {REGISTER_URL_PLACEHOLDER})")
    cmd.set_defaults(func=main)
    return cmd


def main(args: argparse.Namespace) -> int:
    """Run ``register-export``: 0 written, 1 QR library missing or output error, 78 bad config."""
    from edgeagent.supervisor import Agent

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"Invalid config: {exc}", file=sys.stderr)
        return EX_CONFIG
    agent = Agent(config)
    agent._build_sensors()
    manifest = agent.manifest()
    gw = manifest["gateway"]
    url = getattr(args, "url", None)
    if url is None:
        url = PAGE_URL_PLACEHOLDER.format(gateway=gw)
        print(f"register-export: no --url; the QR code encodes the placeholder {url}",
              file=sys.stderr)
    register_url = getattr(args, "register_url", None)
    try:
        png = qr_png(url)
    except RuntimeError as exc:
        print(f"register-export: {exc}", file=sys.stderr)
        return 1
    files = {
        "register.json": json.dumps(register_record(manifest, config), indent=2,
                                    ensure_ascii=False) + "\n",
        "citizen-nl.html": citizen_page(manifest, "nl", register_url=register_url,
                                        other_page="citizen-en.html"),
        "citizen-en.html": citizen_page(manifest, "en", register_url=register_url,
                                        other_page="citizen-nl.html"),
        "sign-qr.png": png,
        "afwegingskader.md": afwegingskader_worksheet(manifest, config),
    }
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            path = out / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
    except OSError as exc:
        print(f"register-export: cannot write to {out}: {exc}", file=sys.stderr)
        return 1
    print(f"register-export: wrote {', '.join(files)} to {out} for gateway {gw} "
          f"({len(manifest['sensors'])} sensor(s))")
    return 0
