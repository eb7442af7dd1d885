"""Rollback phase: undo a run (or a whole migration) from the ledger."""

from __future__ import annotations

import logging
from typing import Any

from clio2sf.rollback_run import run_rollback
from clio2sf_airflow import migration
from clio2sf_airflow.phases import common
from clio2sf_airflow.phases.common import hold_lease, mroot, params, release_lease, run_id
from clio2sf_airflow.phases.load_common import LOAD_SEQUENCE

log = logging.getLogger(__name__)


def report_id() -> str:
    """This rollback's report folder under ``reports/``: its own Airflow run id, as the other phases' reports
    (``reports/<run id>/``), and ``<run id>/try-<n>`` for a retry, so no attempt replaces the report of one that
    already changed the org."""
    context = common.get_current_context()
    ti = context.get("ti")
    attempt = int(getattr(ti, "try_number", 1) or 1) if ti is not None else 1
    return run_id() if attempt <= 1 else f"{run_id()}/try-{attempt}"


def rollback() -> dict[str, Any]:
    """Plan (and unless ``dry_run``, execute) the rollback; always writes its own report
    (``reports/<this run's id>/rollback.*``, :func:`report_id`)."""
    p = params()
    dry_run = bool(p.get("dry_run", True))
    if not dry_run:
        hold_lease("rollback")
    result = run_rollback(
        migration.salesforce_hook(params()), mroot(p), run_id=p.get("target_run_id") or None, migration_id=p["migration_id"],
        dry_run=dry_run, load_order=list(LOAD_SEQUENCE), report_id=report_id(),
    )
    if not dry_run:
        # what reached Salesforce changed: the next delta window re-sends rather than skips its overlap
        loaded = mroot(p) / "delta" / "loaded"
        if loaded.exists():
            for index in loaded.iterdir():
                index.unlink()
        release_lease()
    log.info("rollback %s: %s", "plan (dry run)" if dry_run else "done",
             {k: v for k, v in result.items() if k != "report"})
    return result
