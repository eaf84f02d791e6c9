"""On-device models: thermal people counting (TFLite), generator, training and evaluation.

See models/MODEL_CARD.md.
"""
