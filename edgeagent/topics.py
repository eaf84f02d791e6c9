"""The topic layout of the MQTT contract (design §4): one place, used by code and tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topics of one gateway: ``<prefix>/<gateway_id>/…``."""

    prefix: str
    gateway_id: str

    @property
    def root(self) -> str:
        """``edgeagent/v1/<gateway_id>``."""
        return f"{self.prefix.rstrip('/')}/{self.gateway_id}"

    def topic(self, suffix: str) -> str:
        """Full topic for a suffix such as ``data/pm-north``."""
        return f"{self.root}/{suffix}"

    @property
    def status(self) -> str:
        """Retained ``online`` / ``offline`` (birth and Last Will)."""
        return self.topic("status")

    @property
    def manifest(self) -> str:
        """Retained transparency manifest."""
        return self.topic("manifest")

    @property
    def health(self) -> str:
        """Periodic health report."""
        return self.topic("health")

    @property
    def events(self) -> str:
        """Operational events (faults, recoveries, drops)."""
        return self.topic("events")

    def data(self, sensor_id: str) -> str:
        """One message per sensor per window."""
        return self.topic(f"data/{sensor_id}")
