"""Where a migration's staged files live: one ``ObjectStoragePath`` per firm and migration."""

from __future__ import annotations

import os

from airflow.sdk import ObjectStoragePath, Variable

from clio2sf import staging

STAGING_VARIABLE = "clio2sf_staging_root"


def staging_root() -> ObjectStoragePath:
    """Return the staging root from the Variable (or ``CLIO2SF_STAGING_ROOT``); call inside tasks only."""
    url = Variable.get(STAGING_VARIABLE, default=os.environ.get("CLIO2SF_STAGING_ROOT"))
    if not url:
        raise RuntimeError(
            f"Set the Airflow Variable {STAGING_VARIABLE} (or env CLIO2SF_STAGING_ROOT) to a staging URL "
            "such as file:///srv/clio2sf/staging or s3://aws_default@bucket/clio2sf"
        )
    return ObjectStoragePath(url)


def migration_root(firm: str, migration_id: str) -> ObjectStoragePath:
    """Return ``<staging>/<firm>/<migration_id>`` through the checked :func:`clio2sf.staging.migration_root`."""
    return staging.migration_root(staging_root(), firm, migration_id)
