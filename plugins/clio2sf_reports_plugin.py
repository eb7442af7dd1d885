"""Airflow plugin: the staging reports in the Airflow UI (see ``clio2sf_airflow.reports_app``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from clio2sf_airflow.reports_app import PREFIX, create_app


class Clio2sfReportsPlugin(AirflowPlugin):
    name = "clio2sf_reports"
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "clio2sf migration reports"}]
    external_views = [{
        "name": "Migration reports",
        "href": f"{PREFIX}/",
        "destination": "nav",
        "category": "browse",
        "url_route": "clio2sf_reports",
    }]
