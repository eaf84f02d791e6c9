"""People counting without images: positions → tracks → crossings and occupancy.

Frames, target lists and tracks exist only in memory inside a driver; what leaves is
:class:`~edgeagent.counting.tracks.StepCounts` per frame, aggregated into windows.
"""

from edgeagent.counting.streams import counting_readings, counting_streams
from edgeagent.counting.tracks import (
    CountingConfig,
    CountingLine,
    PositionCounter,
    StepCounts,
    TrackerConfig,
    Zone,
)

__all__ = ["CountingConfig", "CountingLine", "PositionCounter", "StepCounts", "TrackerConfig",
           "Zone", "counting_readings", "counting_streams"]
