"""Dagster glue: thin assets and checks over the libraries in data/, vision/, quality/."""
