"""Datasets: the on-disk contract, the built-in demo generator, importers (MovieLens, a shop's own
folder, H&M, Amazon) with their import report, and their DVC stages (no Dagster imports)."""
