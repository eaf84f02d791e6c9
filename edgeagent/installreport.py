"""The signed install report a technician sends from the commissioning page.

When the technician is done, the page's form runs the doctor checks on the gateway, adds the
sensors' states, the config hash and the technician's note, signs the whole with HMAC-SHA256
and queues it as an ``install_report`` event on ``…/events`` (through the outbox: it arrives
even if the broker is down at that moment). The key is the gateway's own, made on first use in
``<state_dir>/install-report.key`` (0600); the platform gets a copy when the gateway is
provisioned and verifies ``details.signature`` over the other details (docs/web.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

KEY_FILE = "install-report.key"
NOTE_MAX = 500
SIGNATURE_PREFIX = "hmac-sha256:"


def report_key(state_dir: Path) -> bytes:
    """The gateway's report key; made (32 random bytes, hex, mode 0600) if there is none."""
    path = state_dir / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
    return key


def canonical(details: dict[str, Any]) -> bytes:
    """The bytes the signature covers: the details without ``signature``, sorted, compact."""
    body = {k: v for k, v in details.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(details: dict[str, Any], key: bytes) -> str:
    """``hmac-sha256:<hex>`` over :func:`canonical`."""
    return SIGNATURE_PREFIX + hmac.new(key, canonical(details), hashlib.sha256).hexdigest()


def verify(details: dict[str, Any], key: bytes) -> bool:
    """True if ``details.signature`` matches the other details (what a platform does)."""
    return hmac.compare_digest(str(details.get("signature", "")), sign(details, key))


def build_details(*, config_hash: str, version: str, note: str, findings: list[Any],
                  sensors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The event details (scalars only): checks, sensors, config hash and the note."""
    counts = {status: sum(f.status == status for f in findings)
              for status in ("ok", "warning", "error", "skipped")}
    problems = [f"{f.check}: {f.message}" for f in findings if f.status in ("warning", "error")]
    return {"config_hash": config_hash, "version": version,
            "checks_ok": counts["ok"], "checks_warning": counts["warning"],
            "checks_error": counts["error"], "checks_skipped": counts["skipped"],
            "problems": "; ".join(problems),
            "sensors": ", ".join(f"{sid}={s['state']}" for sid, s in sensors.items()),
            "note": note.strip()[:NOTE_MAX]}


def summary(details: dict[str, Any]) -> str:
    """The event's one-line message."""
    verdict = ("all checks passed" if not details["checks_warning"] + details["checks_error"]
               else f"{details['checks_error']} error(s), {details['checks_warning']} "
               "warning(s)")
    return f"install report: {verdict}; sensors {details['sensors']}"
