"""Sensor drivers: one module per sensor family, registered as entry points."""
