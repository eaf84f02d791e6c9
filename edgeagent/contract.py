"""Check received messages against the JSON Schemas of the contract (deploy/schemas/)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

MESSAGE_TYPES = ("status", "manifest", "data", "health", "events")


@cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one message type, shipped as package data."""
    text = resources.files("edgeagent.schemas").joinpath(f"{kind}.schema.json").read_text()
    return json.loads(text)


def message_type(topic: str, root: str) -> str | None:
    """``data`` for ``<root>/data/pm-north``, ``status`` for ``<root>/status``, else None."""
    if not topic.startswith(root + "/"):
        return None
    head = topic[len(root) + 1:].split("/", 1)[0]
    return head if head in MESSAGE_TYPES else None


def decode(kind: str, payload: bytes) -> Any:
    """Status is plain text; every other type is JSON."""
    text = payload.decode("utf-8")
    return text if kind == "status" else json.loads(text)


def problems(kind: str, document: Any) -> list[str]:
    """Schema violations of one decoded message (empty list = valid)."""
    import jsonschema  # imported lazily: only the demo and tests validate

    validator = jsonschema.Draft202012Validator(schema(kind),
                                                format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(document)]
