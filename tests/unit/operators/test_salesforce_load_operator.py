"""SalesforceLoadOperator: reads a staged batch, writes ledger and rejects, returns a summary."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from unittest import mock

import pytest

from clio2sf_airflow.operators.salesforce_load import SalesforceLoadOperator

pytestmark = pytest.mark.unit


class Hook:
    def __init__(self, *a, **kw):
        self.api_calls = 1

    def composite_upsert(self, sobject, ext_field, records):
        return [
            {"id": "003000000000001AAA", "success": True, "errors": [], "created": True}
            if r["LastName"]
            else {
                "success": False,
                "errors": [
                    {
                        "statusCode": "REQUIRED_FIELD_MISSING",
                        "message": "Required fields are missing: [LastName]",
                        "fields": ["LastName"],
                    }
                ],
            }
            for r in records
        ]


def test_execute_writes_ledger_and_rejects(tmp_path: Path):
    rows = [
        {
            "sobject": "Contact",
            "source_system_id": f"contact-{i}",
            "external_id_field": "Clio_Id__c",
            "natural_key": None,
            "row": {"Clio_Id__c": f"contact-{i}", "LastName": name},
        }
        for i, name in ((1, "Doe"), (2, ""))
    ]
    batch = tmp_path / "transformed/Contact/batch-00001.jsonl.gz"
    batch.parent.mkdir(parents=True)
    batch.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    op = SalesforceLoadOperator(
        task_id="load",
        sobject="Contact",
        batch_path=f"file://{batch}",
        migration_root=f"file://{tmp_path}",
        migration_id="m1",
        run_id="r1",
    )
    with mock.patch("clio2sf_airflow.operators.salesforce_load.ClioSalesforceHook", Hook):
        summary = op.execute(context={})
    assert {k: summary[k] for k in ("rows", "created", "updated", "failed", "batch", "api_calls")} == {
        "rows": 2,
        "created": 1,
        "updated": 0,
        "failed": 1,
        "batch": "batch-00001",
        "api_calls": 1,
    }
    json.dumps(summary)
    ledger = [
        json.loads(x)
        for x in (tmp_path / "ledger/r1/full_load/Contact/batch-00001.jsonl").read_text().splitlines()
    ]
    assert [(x["source_system_id"], x["status"], x["created"]) for x in ledger] == [
        ("contact-1", "ok", True),
        ("contact-2", "failed", False),
    ]
    (reject,) = [
        json.loads(x)
        for x in (tmp_path / "rejects/full_load/Contact/batch-00001.jsonl").read_text().splitlines()
    ]
    assert reject["source_system_id"] == "contact-2" and reject["field"] == "LastName"


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        SalesforceLoadOperator(
            task_id="x", sobject="Contact", batch_path="p", migration_root="r", migration_id="m", mode="fast"
        )
