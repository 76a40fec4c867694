"""Recommendation: the evaluation split, metrics and rankers (no Dagster imports)."""
