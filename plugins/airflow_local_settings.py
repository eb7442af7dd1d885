"""Airflow local settings of the clio2sf bundle: the pools-per-firm cluster policy.

Airflow imports ``airflow_local_settings`` from ``$AIRFLOW_HOME/config`` or the plugins folder (both
are on ``sys.path``) in every process it starts; the scheduler and the api-server (Clear) call the
hook below when they create task instances. A deployment that already has its own
``airflow_local_settings.py`` (found first, in ``config/``) calls ours from its hook::

    from clio2sf_airflow.pools import task_instance_mutation_hook as clio2sf_pools

    def task_instance_mutation_hook(task_instance, dag_run=None):
        clio2sf_pools(task_instance, dag_run)
        ...  # the deployment's own policy
"""

from __future__ import annotations

from clio2sf_airflow.pools import task_instance_mutation_hook

__all__ = ["task_instance_mutation_hook"]
