"""What every phase DAG shares: default args, the per-firm params form, tags."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param

from clio2sf import staging

DEFAULT_ARGS = {
    "owner": "migration-ops",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}

TAGS = ["clio2sf", "migration"]


def migration_params(**extra: Param) -> dict[str, Param]:
    """The params form every phase shows in the trigger dialog, plus phase-specific ones."""
    return {
        "firm": Param(
            "harlow_vance",
            type="string",
            title="Firm",
            description="Firm config name: include/mappings/firms/<firm>.yaml",
            pattern=staging.FIRM_PATTERN,
        ),
        "migration_id": Param(
            "m1",
            type="string",
            title="Migration id",
            description="Names this migration's staging area and ledger; reuse it for every phase.",
            pattern=staging.MIGRATION_ID_PATTERN,
        ),
        **extra,
    }
