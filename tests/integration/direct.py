"""The pipeline without Airflow: both sandboxes, the real hooks, and the steps the phase tasks call.

Shared by the end-to-end and the promise tests, which drive ``clio2sf`` directly to look at
one step at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from clio2sf import catalog, pipeline, staging
from clio2sf.extract import extract_object, read_records
from clio2sf.mapping.schema_plan import build_schema_plan
from clio2sf.mapping.transform import PRODUCES
from clio2sf.mapping.users import UserMap
from clio2sf.user_resolution import report_csv, resolve_fallback, resolve_users, user_map_document
from scripts.runner import airflow_env

#: What the load needs staged: every object a transform reads, plus schema inputs.
LOAD_INPUTS = set(PRODUCES) | {"custom_fields", "practice_areas", "bank_accounts"}


@contextmanager
def sandbox_hooks(base: Path, **sf_knobs: Any) -> Iterator[tuple[Any, Any, Any, Any]]:
    """Both sandboxes (tiny firm, no Clio limit) with the default connections pointing at them.

    Yields ``(clio, sf, clio_hook, sf_hook)``; the Salesforce hook does not sleep between polls.
    ``sf_knobs``: Salesforce sandbox settings (``audit_fields=True``...).
    """
    from sandbox.clio.testing import run_clio_sandbox
    from sandbox.salesforce.testing import run_sf_sandbox

    with (
        run_clio_sandbox(base / "clio", preset="tiny", rate_limit=None) as clio,
        run_sf_sandbox(base / "sf", seed=42, **sf_knobs) as sf,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, value in airflow_env(clio, sf, f"file://{base / 'stage'}", base={}, rate_dir=base / "rate").items():
            mp.setenv(key, value)
        from clio2sf_airflow.hooks.clio import ClioHook
        from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

        yield clio, sf, ClioHook(), ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05, max_poll_interval=0.5)


def extract_for_load(clio_hook: Any, mroot: Any) -> dict[str, int]:
    """Stage every object the load needs; records staged per object."""
    counts = {}
    for obj in catalog.CLIO_OBJECTS:
        if obj.name in LOAD_INPUTS:
            summary = extract_object(obj, clio_hook.get_page, mroot, download=clio_hook.download_document,
                                     request_count=lambda: clio_hook.requests_made)
            counts[obj.name] = summary["records"]
    return counts


def user_map(hook: Any, mroot: Any, integration_username: str) -> UserMap:
    """Clio users resolved against the org's users, the integration user as fallback owner."""
    sf_users = hook.query_all("SELECT Id, Username, Email, IsActive FROM User")
    res = resolve_users([e["data"] for e in read_records(mroot, "users")], sf_users, integration_username)
    fallback = next(u["Id"] for u in sf_users if u["Username"] == integration_username)
    return UserMap.from_json(user_map_document(res, fallback))


def schema_plan(spec: Any, mroot: Any) -> Any:
    return build_schema_plan(spec, clio_custom_fields=[e["data"] for e in read_records(mroot, "custom_fields")],
                             practice_areas=[e["data"] for e in read_records(mroot, "practice_areas")])


def transform_all(spec: Any, users: UserMap, mroot: Any) -> list[dict]:
    """Transform every staged batch; one result per batch."""
    return list(pipeline.transform_staged(spec, users, mroot))


def _integration_username() -> str:
    from sandbox.common import roster

    return roster.INTEGRATION_USER["username"]


def write_user_map(hook: Any, mroot: Any) -> None:
    """``users/user_map.json`` and ``user_report.csv`` as mig_03 writes them: the staged Clio users resolved
    against the org's, the integration user as fallback owner."""
    sf_users = hook.query_all("SELECT Id, Username, Email, IsActive FROM User")
    fallback = resolve_fallback(sf_users, _integration_username())
    resolutions = resolve_users([e["data"] for e in read_records(mroot, "users")], sf_users, fallback)
    staging.write_json(mroot / "users" / "user_map.json", user_map_document(resolutions, fallback))
    (mroot / "users" / "user_report.csv").write_text(report_csv(resolutions))


def transform_for_load(hook: Any, mroot: Any) -> tuple[Any, UserMap]:
    """What the full load needs after the extraction: the default spec's schema applied to the org and every
    staged batch transformed (users resolved, :func:`user_map`); ``(spec, users)``."""
    from clio2sf.mapping.spec import load_spec

    spec = load_spec(None)
    users = user_map(hook, mroot, _integration_username())
    pipeline.apply_schema_plan(hook, schema_plan(spec, mroot), activity_fallback=False)
    transform_all(spec, users, mroot)
    return spec, users


def account_relations(hook: Any, contact_id: str) -> list[tuple[str, bool]]:
    """The Contact's AccountContactRelations as sorted ``(AccountId, IsDirect)`` pairs."""
    return sorted((r["AccountId"], r["IsDirect"]) for r in hook.query_all(
        f"SELECT AccountId, IsDirect FROM AccountContactRelation WHERE ContactId = '{contact_id}'"))


def companies_and_a_lone_person(clio_hook: Any, n: int) -> tuple[list[int], int]:
    """The Clio ids of the first ``n`` companies and of the first person with no company and no related one."""
    contacts = [r for page in clio_hook.paginate("contacts.json", "id,type,company,related_contacts", {})
                for r in page["data"]]
    companies = sorted(r["id"] for r in contacts if r["type"] == "Company")[:n]
    person = min(r["id"] for r in contacts if r["type"] == "Person" and not r.get("company")
                 and not r.get("related_contacts"))
    return companies, person


def relation_ids(hook: Any, contact_id: str) -> dict[str, str]:
    """The Contact's AccountContactRelations as ``AccountId -> relation Id``."""
    return {r["AccountId"]: r["Id"] for r in hook.query_all(
        f"SELECT Id, AccountId FROM AccountContactRelation WHERE ContactId = '{contact_id}'")}


def full_load_person(clio_hook: Any, hook: Any, mroot: Any, person: int, companies: list[int],
                     fields: str = "Id, AccountId") -> tuple[Any, UserMap, dict[int, str], dict, list]:
    """The firm extracted, its users mapped, transformed and fully loaded, as the phases do before a window;
    then ``(spec, users, Account Id of each company, the person's Contact (``fields``), its relations)``."""
    from tests.integration.test_cutover import _extract, _load

    _extract(clio_hook, mroot, lambda page_no: None)
    write_user_map(hook, mroot)  # as mig_03 writes them
    spec, users = transform_for_load(hook, mroot)
    _load(hook, mroot, spec, mroot, "full-1", "full_load")
    acc = {cid: hook.query_all(f"SELECT Id FROM Account WHERE Clio_Id__c = 'contact-{cid}'")[0]["Id"]
           for cid in companies}
    [contact] = hook.query_all(f"SELECT {fields} FROM Contact WHERE Clio_Id__c = 'contact-{person}'")
    return spec, users, acc, contact, account_relations(hook, contact["Id"])


def rollback_window(hook: Any, mroot: Any, spec: Any, window: str = "w1") -> dict:
    """Roll back one delta window of migration ``m1`` for real (not a dry run), in the spec's load order."""
    from clio2sf.rollback_run import run_rollback

    return run_rollback(hook, mroot, run_id=window, migration_id="m1", dry_run=False, load_order=spec.load_order)


def verify_window(hook: Any, mroot: Any, spec: Any, window: str, report: str | None = None) -> dict:
    """Verify a delta window's records as the delta phase does (its ``raw_ok``, the migration as context)."""
    from clio2sf.verify.run import verify_migration

    return verify_migration(hook, mroot / "delta" / window, spec, out_dir=mroot / "reports" / (report or window),
                            users_dir=mroot / "users", subset=True, raw_dir="raw_ok", context_root=mroot)
