"""Training, evaluation and export of the spatial and temporal streams (needs the `train` extra)."""
