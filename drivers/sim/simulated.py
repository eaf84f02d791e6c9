"""Conformance hook for the simulated driver (it needs no wire simulator)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.simulated import Simulated, SimulatedConfig


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Simulated]:
    """A simulated driver with all quantities, not yet opened."""
    config = SimulatedConfig(id="sim-conf", driver="simulated", seed=1)
    yield Simulated(config, DriverContext(clock=clock))
