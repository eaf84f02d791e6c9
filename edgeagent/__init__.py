"""edgeagent: privacy-safe sensor gateway agent."""

__version__ = "0.1.0"
