"""Airflow plugin: serves the Clio webhook receiver at ``<api-server>/clio2sf/webhooks``.

See :mod:`clio2sf_airflow.webhooks.receiver` and docs/operations.md ("Clio webhooks").
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from clio2sf_airflow.lazy_app import LazyApp

URL_PREFIX = "/clio2sf/webhooks"


class Clio2sfWebhooksPlugin(AirflowPlugin):
    name = "clio2sf_webhooks"
    # imported on the first request (every task process loads the plugins: see clio2sf_airflow.lazy_app)
    fastapi_apps = [{"app": LazyApp("clio2sf_airflow.webhooks.receiver:app"), "url_prefix": URL_PREFIX,
                     "name": "Clio webhook receiver"}]
