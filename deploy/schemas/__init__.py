"""JSON Schemas of the MQTT contract, shipped as package data."""
