"""MigrationApprovalOperator: Reject fails the phase naming who and why and revokes that hash's approval."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException

from clio2sf.mapping.confirm import confirm, confirmation_for, read_confirmations
from clio2sf.mapping.spec import load_spec
from clio2sf_airflow.operators.approval import MigrationApprovalOperator

pytestmark = pytest.mark.unit


def _event(option: str, reason: str | None = None) -> dict:
    return {"chosen_options": [option], "params_input": {"reason": reason},
            "responded_at": datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
            "responded_by_user": {"id": "ops_lead", "name": "ops_lead"}}


@pytest.fixture
def store(tmp_path: Path):
    with mock.patch("clio2sf_airflow.phases.common.mroot", lambda p: tmp_path):
        yield tmp_path / "approvals" / "sample.yaml"


def test_reject_fails_with_who_and_why_and_revokes(store: Path):
    spec = load_spec("harlow_vance")
    confirm(spec, "earlier@firm.example", None, store)
    op = MigrationApprovalOperator(task_id="approve_sample", kind="sample", subject="s")
    assert "reason" in op.params  # the form has a reason field
    context = {"params": {"firm": "harlow_vance", "migration_id": "m1"}}
    with pytest.raises(AirflowFailException) as info:
        op.execute_complete(context, _event("Reject", "trust balances differ"))
    message = str(info.value)
    assert "rejected by ops_lead" in message and "trust balances differ" in message
    assert "\n" in message  # the advice is on its own line
    assert confirmation_for(spec, store) is None
    assert read_confirmations(store)[-1] | {} == {"hash": spec.content_hash, "by": "ops_lead",
                                                 "at": "2026-12-03T09:00:00+00:00", "firm": spec.firm,
                                                 "decision": "rejected", "reason": "trust balances differ"}


def test_approve_returns_the_answer_and_records_nothing_itself(store: Path):
    op = MigrationApprovalOperator(task_id="approve_sample", kind="sample", subject="s")
    answer = op.execute_complete({"params": {"firm": "harlow_vance", "migration_id": "m1"}}, _event("Approve"))
    assert answer["responded_by_user"]["name"] == "ops_lead"
    assert not store.exists()  # record_sample_approval stores it downstream
