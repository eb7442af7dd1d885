"""Mapping engine: the spec, transforms, proposer, validation and schema plan (no Airflow)."""
