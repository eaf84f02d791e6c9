"""On-device models (.tflite) and their model cards; none ship yet."""
