"""The loader against the Salesforce sandbox over HTTPS: Bulk 2.0, collections, natural keys, files."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from clio2sf.load import Envelope, load_content_versions, load_rows

testing = pytest.importorskip("sandbox.salesforce.testing")

pytestmark = pytest.mark.integration

EXT = "Clio_Id__c"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with testing.run_sf_sandbox(tmp_path_factory.mktemp("sf-org"), seed=42) as sb:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sb.connection_json())
            mp.setenv("REQUESTS_CA_BUNDLE", sb.ca_bundle)
            from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

            hook = ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05)
            for obj in ("Account", "Contact", "Case", "ContentVersion"):
                hook.ensure_external_id_field(obj)
            yield sb


@pytest.fixture
def hook(sandbox):
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    return ClioSalesforceHook(poll_interval=0.05, max_poll_interval=0.5)


def row(sobject: str, sid: str, **fields) -> Envelope:
    return Envelope(sobject, sid, {EXT: sid, **fields}, EXT)


def test_external_id_field_is_created_once(hook):
    assert hook.ensure_external_id_field("Contact") is False
    field = next(f for f in hook.describe("Contact", refresh=True)["fields"] if f["name"] == EXT)
    assert field["externalId"] and field["unique"]


def test_bulk_upsert_twice_creates_nothing_the_second_time_and_resolves_lookups(hook):
    accounts = [row("Account", "contact-900", Name="Acme LLP")]
    assert load_rows(hook, accounts, mode="composite").created == 1
    contacts = [
        row(
            "Contact",
            f"contact-{i}",
            LastName=f"Doe {i}",
            FirstName="Zoë",
            Description='says "hi",\nbye',
            Birthdate="1980-02-29",
            **{"Account.Clio_Id__c": "contact-900"},
        )
        for i in range(1, 31)
    ]
    first = load_rows(hook, contacts, mode="bulk", sleep=lambda s: None)
    assert (first.created, first.failed) == (30, 0)
    second = load_rows(hook, contacts, mode="bulk", sleep=lambda s: None)
    assert (second.created, second.updated, second.failed) == (0, 30, 0)
    assert {o.sf_id for o in first.outcomes} == {o.sf_id for o in second.outcomes}
    acct = hook.query_all(f"SELECT Id FROM Account WHERE {EXT} = 'contact-900'")[0]["Id"]
    got = hook.query_all(f"SELECT Id, AccountId, Description FROM Contact WHERE {EXT} = 'contact-7'")[0]
    assert got["AccountId"] == acct and got["Description"] == 'says "hi",\nbye'


def test_composite_partial_failure_lands_in_rejects_and_ledger(hook, tmp_path: Path):
    from clio2sf_airflow.operators.salesforce_load import SalesforceLoadOperator

    envs = [
        {
            "sobject": "Contact",
            "source_system_id": sid,
            "external_id_field": EXT,
            "natural_key": None,
            "row": {EXT: sid, "LastName": last},
        }
        for sid, last in (("contact-501", "Ok"), ("contact-502", None), ("contact-503", "Fine"))
    ]
    batch = tmp_path / "transformed/Contact/batch-00007.jsonl.gz"
    batch.parent.mkdir(parents=True)
    batch.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in envs).encode()))
    op = SalesforceLoadOperator(
        task_id="load",
        sobject="Contact",
        batch_path=f"file://{batch}",
        migration_root=f"file://{tmp_path}",
        migration_id="m1",
        run_id="run1",
        mode="composite",
    )
    summary = op.execute(context={})
    assert (summary["created"], summary["failed"], summary["rows"]) == (2, 1, 3)
    assert summary["api_calls"] >= 1
    rejects = [
        json.loads(x) for x in Path(summary["rejects_path"].removeprefix("file://")).read_text().splitlines()
    ]
    assert [(r["source_system_id"], r["field"], r["rule"]) for r in rejects] == [
        ("contact-502", "LastName", "REQUIRED_FIELD_MISSING")
    ]
    assert "contact-502" in rejects[0]["message"] and "LastName" in rejects[0]["message"]
    ledger = [
        json.loads(x) for x in Path(summary["ledger_path"].removeprefix("file://")).read_text().splitlines()
    ]
    assert [x["status"] for x in ledger] == ["ok", "failed", "ok"]


def test_natural_key_insert_is_idempotent(hook):
    load_rows(hook, [row("Case", "matter-1", Subject="Smith v. Jones")], mode="composite")
    load_rows(hook, [row("Contact", f"contact-{i}", LastName=f"P{i}") for i in (601, 602)], mode="composite")
    roles = [
        Envelope(
            "CaseContactRole",
            f"matter-1/contact-{c}/{r}",
            {"Cases.Clio_Id__c": "matter-1", "Contact.Clio_Id__c": f"contact-{c}", "Role": r},
            None,
            ("Cases.Clio_Id__c", "Contact.Clio_Id__c", "Role"),
        )
        for c, r in ((601, "Other"), (602, "Decision Maker"), (699, "Other"))
    ]
    first = load_rows(hook, roles, sleep=lambda s: None)
    assert (first.created, first.failed) == (2, 1)
    assert first.outcomes[2].errors[0].fields == ("ContactId",)
    second = load_rows(hook, roles, sleep=lambda s: None)
    assert (second.created, second.skipped, second.failed) == (0, 2, 1)
    case_id = hook.query_all(f"SELECT Id FROM Case WHERE {EXT} = 'matter-1'")[0]["Id"]
    assert len(hook.query_all(f"SELECT Id FROM CaseContactRole WHERE CasesId = '{case_id}'")) == 2


def test_content_versions_base64_and_multipart_with_checksums(hook, tmp_path: Path):
    load_rows(hook, [row("Case", "matter-2", Subject="Files")], mode="composite")
    envs = []
    for n, data in ((1, b"%PDF small"), (2, bytes(range(256)) * 400)):
        rel = f"blobs/documents/{n}/1"
        (tmp_path / rel).parent.mkdir(parents=True)
        (tmp_path / rel).write_bytes(data)
        envs.append(
            Envelope(
                "ContentVersion",
                f"document-{n}@v1",
                {
                    EXT: f"document-{n}@v1",
                    "Title": f"Doc {n}",
                    "PathOnClient": f"doc{n}.pdf",
                    "Case:FirstPublishLocation.Clio_Id__c": "matter-2",
                },
                EXT,
                blob={"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
            )
        )
    first = load_content_versions(hook, envs, tmp_path, multipart_threshold=50_000, sleep=lambda s: None)
    assert [(o.success, o.created) for o in first.outcomes] == [(True, True), (True, True)], first.outcomes
    for o, e in zip(first.outcomes, envs, strict=True):
        cv = hook.query_all(f"SELECT Checksum, ContentDocumentId FROM ContentVersion WHERE Id = '{o.sf_id}'")[
            0
        ]
        data = (tmp_path / e.blob["path"]).read_bytes()
        assert cv["Checksum"] == hashlib.md5(data).hexdigest() and o.file_ids == (
            o.sf_id,
            cv["ContentDocumentId"],
        )
    second = load_content_versions(hook, envs, tmp_path, sleep=lambda s: None)
    assert [o.ledger_status for o in second.outcomes] == ["skipped", "skipped"]


def test_unable_to_lock_row_rows_are_retried_to_success(sandbox, hook):
    sandbox.knobs(lock_row_rate=0.3)
    try:
        for mode in ("composite", "bulk"):
            rows = [row("Contact", f"contact-{mode}-{i}", LastName=f"L{i}") for i in range(40)]
            res = load_rows(hook, rows, mode=mode, max_row_retries=10, sleep=lambda s: None)
            assert res.failed == 0, [str(o.errors[0]) for o in res.outcomes if not o.success]
            assert max(o.attempts for o in res.outcomes) > 1
    finally:
        sandbox.knobs(lock_row_rate=0.0)


def test_expired_session_is_renewed(sandbox, hook):
    hook.limits()
    sandbox.expire_sessions()
    assert "DailyApiRequests" in hook.limits()
