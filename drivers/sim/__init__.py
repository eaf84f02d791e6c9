"""Wire-protocol simulators, byte for byte, used by tests and by the demo."""
