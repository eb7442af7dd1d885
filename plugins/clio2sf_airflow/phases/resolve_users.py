"""Resolve-users phase: Clio users → Salesforce users, reported before any write."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from clio2sf import reports, staging
from clio2sf.extract import read_records
from clio2sf.user_resolution import (
    FallbackOwnerError,
    report_csv,
    report_html,
    resolve_fallback,
    resolve_users,
    user_map_document,
)
from clio2sf_airflow import migration
from clio2sf_airflow.phases.common import (
    firm_spec,
    hold_lease_on_extracted_records,
    mroot,
    params,
    release_lease,
)

log = logging.getLogger(__name__)

USER_SOQL = "SELECT Id, Username, Email, IsActive, Name FROM User"


def resolve() -> dict[str, Any]:
    """Match users, write ``users/user_map.json`` and the HTML/CSV report; return counts."""
    p = params()
    root = mroot(p)
    spec = firm_spec(p["firm"])
    # the user map must not change under a load of the same migration, nor be built from a partial extraction
    hold_lease_on_extracted_records("resolve_users", root, p)
    sf_users = list(migration.salesforce_hook(params()).query_all_iter(USER_SOQL))
    clio_users = [env["data"] for env in read_records(root, "users")]
    fallback = spec.options.get("fallback_owner")
    try:
        fb_id = resolve_fallback(sf_users, fallback)
        resolutions = resolve_users(clio_users, sf_users, fb_id)
    except FallbackOwnerError as exc:
        raise AirflowFailException(f"firm {p['firm']}: {exc}") from exc
    doc = user_map_document(resolutions, fb_id)
    out = root / "users"
    staging.write_json(out / "user_map.json", doc)
    reports.write_text(out / "user_report.csv", report_csv(resolutions))
    reports.write_text(out / "user_report.html", report_html(resolutions, p["firm"], str(fallback)))
    log.info("user resolution: %s (fallback owner %s)", doc["counts"], fb_id)
    release_lease()
    return {"counts": doc["counts"], "report": str(out / "user_report.html")}
