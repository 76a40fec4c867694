"""Image decoding/validation, encoders and tagging (plain library code, no Dagster imports)."""
