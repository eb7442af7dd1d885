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
    """Return ``<staging>/<firm>/<migration_id>``.

    ``<staging>`` is the migration's declared ``staging_root`` (``include/migrations/``), else the
    Variable: two firms' migrations can keep their files in different buckets.
    """
    from clio2sf_airflow.migration import declaration

    declared = declaration(firm, migration_id).staging_root
    return staging.migration_root(ObjectStoragePath(declared) if declared else staging_root(), firm, migration_id)
