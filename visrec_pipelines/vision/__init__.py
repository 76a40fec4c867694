"""Image decoding/validation, encoders and tagging (plain library code, no Dagster imports)."""

# The encoder used when nothing else is configured (settings.Settings.encoder); here, not in
# encoders.py, so reading settings does not import torch.
DEFAULT_ENCODER = "efficientnet-lite0"
