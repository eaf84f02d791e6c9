"""The transparency manifest as plain text, for people (``edgeagent manifest --text``).

Same content as the JSON manifest, in the order a privacy officer reads it: who, why, on what
legal ground, what leaves the device at which window and precision, and what stays.
"""

from __future__ import annotations

from typing import Any

_STAT_WORDS = {"mean": "mean", "min": "minimum", "max": "maximum", "stddev": "standard deviation",
               "sum": "total", "l10": "L10", "l50": "L50", "l90": "L90"}


def _seconds(value: float) -> str:
    if value >= 3600 and value % 3600 == 0:
        return f"{value / 3600:g} h"
    if value >= 60 and value % 60 == 0:
        return f"{value / 60:g} min"
    return f"{value:g} s"


def _or_unset(value: Any) -> str:
    return "(not configured)" if value in (None, "") else str(value)


def manifest_text(manifest: dict[str, Any]) -> str:
    """Render a manifest (``Agent.manifest()``) as readable text."""
    privacy, retention = manifest["privacy"], manifest["retention"]
    site, owner = manifest.get("site"), manifest.get("owner")
    lines = [f"Gateway {manifest['gateway']} — edgeagent {manifest['version']}",
             f"Config {manifest['config_hash']}", ""]
    lines.append("Site:          " + (_or_unset(None) if site is None else
                                      f"{site['name']} ({site['lat']}, {site['lon']})"))
    lines.append("Owner:         " + (_or_unset(None) if owner is None else
                                      f"{owner['name']} <{owner['contact']}>"))
    lines.append(f"Purpose:       {_or_unset(manifest.get('purpose'))}")
    lines.append(f"Legal ground:  {_or_unset(manifest.get('legal_ground'))}")
    lines.append(f"Publishes as:  {manifest['contract']['format']} on "
                 f"{manifest['contract']['topic_root']}/")
    lines += ["", f"Privacy preset {privacy['preset']}: raw data never leaves the device; "
              f"personal data: {'yes' if privacy['personal_data'] else 'no'}."]
    for name, policy in privacy["classes"].items():
        stats = ", ".join(_STAT_WORDS.get(s, s) for s in policy["statistics"]) or "nothing"
        k = f"; counts below {policy['k']} suppressed" if policy.get("k") is not None else ""
        places = policy["decimals"]
        precision = ("whole numbers" if places == 0 else
                     f"{places} decimal{'s' if places > 1 else ''}")
        lines.append(f"  {name}: windows of at least {_seconds(policy['min_window_s'])}; "
                     f"{stats}; {precision}{k}")
    dp = privacy.get("dp")
    if dp:
        lines.append(f"  differential privacy: {dp['mechanism']} noise, epsilon "
                     f"{dp['epsilon_per_window']:g} per window, at most "
                     f"{dp['daily_budget']:g} per stream per UTC day")
    lines += ["", "Sensors:"]
    for sensor in manifest["sensors"]:
        tag = " (SIMULATED)" if sensor["simulated"] else ""
        lines.append(f"  {sensor['id']}: {sensor['model']}{tag}, windows of "
                     f"{_seconds(sensor['window_s'])}")
        for stream in sensor["streams"]:
            stats = ", ".join(_STAT_WORDS.get(s, s) for s in stream["statistics"]) or \
                "not published"
            k = f", k = {stream['k']}" if stream.get("k") is not None else ""
            what = f" — {stream['description']}" if stream["description"] else ""
            lines.append(f"    {stream['name']} [{stream['unit']}]: {stats}{k}{what}")
        if sensor.get("duty_cycle"):
            duty = sensor["duty_cycle"]
            lines.append(f"    duty cycle: measures {_seconds(duty['measure_s'])} of every "
                         f"{_seconds(duty['period_s'])}")
    lines += ["", "Kept on the device:",
              "  raw data (frames, samples, audio, radar targets, tracks): in memory only, "
              "never on disk",
              f"  running window statistics: in memory, at most "
              f"{_seconds(retention['window_max_s'])}",
              f"  released aggregates: in the outbox until the broker acknowledges them "
              f"(at most {retention['outbox_max_bytes'] / 2**20:g} MiB during an outage)"]
    return "\n".join(lines) + "\n"
