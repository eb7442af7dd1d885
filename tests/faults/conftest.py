"""Fault suite fixtures: the integration suite's Airflow metadata DB."""

from __future__ import annotations

from tests.integration.conftest import airflow_db  # noqa: F401  (re-exported fixture)
