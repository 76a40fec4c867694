"""Data validation with Great Expectations suites kept as files (no Dagster imports)."""
