"""Pools per firm: the cluster policy that puts a migration run's tasks in its firm's pools.

The DAG files name the shared pools (``clio_api``, ``salesforce_api``) because a task's pool is
fixed when the file is parsed and the firm is a run parameter. When the scheduler creates a task
instance of a ``mig_*`` run it calls :func:`task_instance_mutation_hook` (installed by
``plugins/airflow_local_settings.py``), which moves the task to the pool the run's migration
chooses (:meth:`clio2sf.migrations.Migration.pool_candidates`):

* the declaration's ``clio_pool`` / ``salesforce_pool`` when it names one;
* else ``clio_api_<firm>`` / ``salesforce_api_<firm>`` when that pool exists;
* else the shared pool (a firm without pools of its own shares them, as before).

The scheduler calls the hook again whenever it re-creates an instance (a mapped task's expansion, a
Clear), so mapped load and transform batches and cleared tasks stay in their firm's pool.

Airflow's contract for this hook: it runs inside the scheduler's transaction and must not open a
session or commit. The pool names are read with the run's own session (one small SELECT, no
flush), and both they and the declarations are cached for :data:`CACHE_SECONDS`: a pool created
or a declaration edited is used by task instances created after that.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from clio2sf import staging
from clio2sf.migrations import SHARED_POOLS, DeclarationError, Migration, choose_pool, find

log = logging.getLogger(__name__)

#: How long pool names and declarations are reused before being read again.
CACHE_SECONDS = 30.0
#: The bundle's DAGs (phase DAGs and generated delta DAGs); other DAGs' tasks are never moved.
DAG_ID_PREFIX = "mig_"

_FIRM_RE = re.compile(staging.FIRM_PATTERN)
_MIGRATION_RE = re.compile(staging.MIGRATION_ID_PATTERN)
_cache: dict[Any, tuple[float, Any]] = {}
_warned: set[tuple[str, str]] = set()


def _cached(key: Any, load):
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    value = load()
    _cache[key] = (now, value)
    return value


def run_migration(task_instance: Any, dag_run: Any) -> tuple[str, str] | None:
    """The run's firm and migration id: its conf, else the DAG's param defaults (a scheduled run's conf is empty)."""
    conf = getattr(dag_run, "conf", None) or {}
    dag = getattr(getattr(task_instance, "task", None), "dag", None)
    defaults = getattr(dag, "params", None) or {}
    values = []
    for key in ("firm", "migration_id"):
        value = conf.get(key)
        if value is None and key in defaults:
            value = defaults[key]
        values.append(value)
    firm, mid = values
    if not (isinstance(firm, str) and _FIRM_RE.match(firm) and isinstance(mid, str) and _MIGRATION_RE.match(mid)):
        return None
    return firm, mid


def _pool_names(dag_run: Any) -> frozenset[str] | None:
    """Every pool's name, read through the session ``dag_run`` belongs to (None when it has none)."""
    from airflow.models.pool import Pool
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:
        return None

    def load() -> frozenset[str]:
        with session.no_autoflush:
            return frozenset(session.scalars(select(Pool.pool)))

    return _cached("pools", load)


def _declaration(firm: str, migration_id: str) -> Migration:
    return _cached(("migration", firm, migration_id),
                   lambda: find(firm, migration_id) or Migration(firm=firm, migration_id=migration_id))


def pool_for(shared: str, migration: Migration, existing: frozenset[str]) -> str:
    """The pool of a task the DAG put in ``shared``, for ``migration`` (logs once when it falls back)."""
    chosen = choose_pool(migration.pool_candidates(shared), existing)
    if chosen == shared and (migration.firm, shared) not in _warned:
        _warned.add((migration.firm, shared))
        log.warning("firm %s has no pool %s_%s: its tasks share the pool %s with every other firm "
                    "(create it, e.g. with scripts/import_settings)", migration.firm, shared, migration.firm, shared)
    return chosen


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    """Cluster policy: move a ``mig_*`` run's task from a shared pool to its firm's pool."""
    if dag_run is None or task_instance.pool not in SHARED_POOLS:
        return
    if not str(getattr(dag_run, "dag_id", "")).startswith(DAG_ID_PREFIX):
        return
    found = run_migration(task_instance, dag_run)
    if found is None:
        return
    try:
        migration = _declaration(*found)
    except DeclarationError as exc:  # the task itself fails on it, naming the file and the field
        log.warning("pools per firm: migration declarations are invalid (%s); %s stays in %s",
                    exc, task_instance.task_id, task_instance.pool)
        return
    existing = _pool_names(dag_run)
    if existing is None:
        return
    task_instance.pool = pool_for(task_instance.pool, migration, existing)
