"""Rollback phase: undo a run (or a whole migration) from the ledger."""

from __future__ import annotations

import logging
from typing import Any

from clio2sf.rollback_run import run_rollback
from clio2sf_airflow import migration
from clio2sf_airflow.phases.common import mroot, params
from clio2sf_airflow.phases.load_common import LOAD_SEQUENCE

log = logging.getLogger(__name__)


def rollback() -> dict[str, Any]:
    """Plan (and unless ``dry_run``, execute) the rollback; always writes the report."""
    p = params()
    result = run_rollback(
        migration.salesforce_hook(params()), mroot(p), run_id=p.get("target_run_id") or None, migration_id=p["migration_id"],
        dry_run=bool(p.get("dry_run", True)), load_order=list(LOAD_SEQUENCE),
    )
    log.info("rollback %s: %s", "plan (dry run)" if p.get("dry_run", True) else "done",
             {k: v for k, v in result.items() if k != "report"})
    return result
