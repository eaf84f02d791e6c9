"""Encoders: other wire formats projected from the native data message.

An encoder turns one native message (its topic suffix below the gateway root and its JSON
body, see ``docs/contract.md``) into zero or more messages of another format. The topic of
each result is again a suffix below the gateway root, and encoders keep the native suffix
(``data/pm-north`` stays ``data/pm-north``), so the topic layout is the same in every format;
the manifest's ``contract.format`` says which format a gateway publishes. An empty list means
the encoder does not encode that message type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Encoded:
    """One encoded message.

    Attributes:
        topic: Topic suffix below the gateway root, e.g. ``data/pm-north`` (the native one).
        payload: The message bytes.
    """

    topic: str
    payload: bytes


@runtime_checkable
class Encoder(Protocol):
    """Projects native messages into another format; pure, no I/O."""

    name: str

    def encode(self, suffix: str, body: dict[str, Any]) -> list[Encoded]:
        """Encode one native message.

        Args:
            suffix: Native topic suffix below the gateway root, e.g. ``data/pm-north``.
            body: The native JSON body (as published on that topic).

        Returns:
            The encoded messages; empty if this encoder does not encode the message type.
        """
        ...
