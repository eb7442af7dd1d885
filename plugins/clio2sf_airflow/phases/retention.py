"""Retention: purge staged migrations (privileged client data) once they are old enough."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from clio2sf import staging
from clio2sf_airflow.storage import staging_root

log = logging.getLogger(__name__)

RETENTION_VARIABLE = "clio2sf_staging_retention_days"


def purge_staging() -> dict[str, Any]:
    """Delete every staged migration whose newest file is older than the retention Variable.

    Skipped while ``clio2sf_staging_retention_days`` is unset, so nothing is purged by default.
    """
    raw = Variable.get(RETENTION_VARIABLE, default=None)
    if raw in (None, ""):
        raise AirflowSkipException(f"Variable {RETENTION_VARIABLE} is unset: staged files are kept")
    try:
        days = float(raw)
        if days < 0:
            raise ValueError
    except ValueError:
        raise AirflowFailException(
            f"Variable {RETENTION_VARIABLE} must be a number of days >= 0, got {raw!r}"
        ) from None
    purged = staging.purge_older_than(staging_root(), days)
    log.info("retention %s days: purged %d staged migration(s)", days, len(purged))
    return {"days": days, "purged": len(purged)}
