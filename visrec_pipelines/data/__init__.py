"""Datasets: the on-disk contract, the built-in demo generator and importers (no Dagster imports)."""
