"""Resolve a run's migration: its declaration, connections and staging root (call inside tasks only).

The firm and migration id come from the run's params; the rest from ``include/migrations/``
(:mod:`clio2sf.migrations`). An undeclared migration uses the defaults: connections
``clio_<firm>`` / ``salesforce_<firm>`` when they exist, else ``clio_default`` /
``salesforce_default``, and the ``clio2sf_staging_root`` Variable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from clio2sf.migrations import DeclarationError, Migration, find

log = logging.getLogger(__name__)


def declaration(firm: str, migration_id: str) -> Migration:
    """The declared migration, or an undeclared one with every default."""
    try:
        found = find(firm, migration_id)
    except DeclarationError as exc:
        raise AirflowFailException(f"migration declarations: {exc}") from exc
    return found or Migration(firm=firm, migration_id=migration_id)


def resolve_conn_id(candidates: Iterable[str], exists: Callable[[str], bool] | None = None) -> str:
    """The first candidate connection that exists; the last one when none does (its hook then names it)."""
    exists = exists or connection_exists
    ids = list(candidates)
    for cid in ids:
        if exists(cid):
            return cid
    return ids[-1]


def connection_exists(conn_id: str) -> bool:
    """Whether an Airflow connection of that id is defined (env, secrets backend or database)."""
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def clio_conn_id(p: dict[str, Any]) -> str:
    return resolve_conn_id(declaration(p["firm"], p["migration_id"]).clio_conn_candidates())


def salesforce_conn_id(p: dict[str, Any]) -> str:
    return resolve_conn_id(declaration(p["firm"], p["migration_id"]).salesforce_conn_candidates())


def clio_hook(p: dict[str, Any], **kw: Any):
    """A :class:`ClioHook` on this migration's Clio connection (one rate budget and token per grant)."""
    from clio2sf_airflow.hooks.clio import ClioHook

    cid = clio_conn_id(p)
    log.info("firm %s migration %s: Clio connection %s", p["firm"], p["migration_id"], cid)
    return ClioHook(cid, **kw)


def salesforce_hook(p: dict[str, Any], **kw: Any):
    """A :class:`ClioSalesforceHook` on this migration's Salesforce connection."""
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    return ClioSalesforceHook(salesforce_conn_id(p), **kw)
