"""Airflow plugin: the staging reports in the Airflow UI (see ``clio2sf_airflow.reports_app``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from clio2sf_airflow.lazy_app import LazyApp

#: ``clio2sf_airflow.reports_app.PREFIX`` (not imported here: that module imports FastAPI).
PREFIX = "/clio2sf"


class Clio2sfReportsPlugin(AirflowPlugin):
    name = "clio2sf_reports"
    # built on the first request (every task process loads the plugins: see clio2sf_airflow.lazy_app)
    fastapi_apps = [{"app": LazyApp("clio2sf_airflow.reports_app:create_app", factory=True), "url_prefix": PREFIX,
                     "name": "clio2sf migration reports"}]
    external_views = [{
        "name": "Migration reports",
        "href": f"{PREFIX}/",
        "destination": "nav",
        "category": "browse",
        "url_route": "clio2sf_reports",
    }]
