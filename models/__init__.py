"""On-device models: thermal people-counting TFLite models, their generator, training and
evaluation scripts, and the model card (models/MODEL_CARD.md)."""
