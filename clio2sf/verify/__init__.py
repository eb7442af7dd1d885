"""Verification of a migration against the org.

``reconciliation``: the sample diff of what was sent and the record/amount reconciliation.
``source`` / ``readback`` / ``normalise`` / ``compare`` / ``report`` / ``accounting``: the
source-to-target verifier (``run.verify_migration``): what Salesforce must hold, derived only from
the raw Clio extraction and the mapping spec's declarations, compared with a SOQL read-back.
"""

from clio2sf.verify.reconciliation import (
    EXT,
    NATURAL_KEY_OBJECTS,
    base_id,
    existing_ids,
    is_primary,
    iter_raw,
    query_in,
    raw_objects,
    reconcile_migration,
    sample_diff,
)

__all__ = ["EXT", "NATURAL_KEY_OBJECTS", "base_id", "existing_ids", "is_primary", "iter_raw", "query_in",
           "raw_objects", "reconcile_migration", "sample_diff"]
