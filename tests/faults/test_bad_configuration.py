"""Bad configuration through the real DAGs: each run fails early with a message saying what to fix."""

from __future__ import annotations

import json
import re
import shutil
from contextlib import ExitStack

import pytest
import yaml
from upath import UPath

from clio2sf.mapping.confirm import confirm
from clio2sf.mapping.spec import DEFAULT_MAPPINGS_DIR, load_spec
from tests.integration.phases import FIRM, Migration, start_migration

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mig(tmp_path_factory, airflow_db):
    with ExitStack() as stack:
        yield start_migration(stack, tmp_path_factory.mktemp("badconf"), airflow_db)


def _started_tasks(text: str) -> list[str]:
    """Task ids that ``airflow dags test`` started."""
    return sorted(set(re.findall(r"\[DAG TEST\] starting task_id=([A-Za-z0-9_.]+)", text)))


def test_missing_connection_and_wrong_credentials_fail_the_first_task(mig: Migration):
    env = dict(mig.env)
    del env["AIRFLOW_CONN_CLIO_DEFAULT"]
    conn = json.loads(env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
    conn["extra"]["consumer_secret"] = "wrong-secret-for-the-test"
    env["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = json.dumps(conn)
    run = mig.run("mig_01_discover", expect_ok=False, tag="badconn", env=env)
    text = run.log()
    assert not run.ok
    assert "connection clio_default" in text and "connection salesforce_default" in text
    assert "Fix the connection(s) in Admin" in text
    assert "wrong-secret-for-the-test" not in text
    assert _started_tasks(text) == ["preflight"], _started_tasks(text)
    assert not (mig.root / "discover").exists()


def _run_with_firm_config(mig: Migration, dag_id: str, name: str, objects: dict):
    """Run ``dag_id`` (expected to fail) for firm ``name`` = harlow_vance + ``objects``, from its own mappings dir."""
    target = mig.workdir / f"mappings-{name}"
    if not target.exists():
        shutil.copytree(DEFAULT_MAPPINGS_DIR, target)
    firm = yaml.safe_load((target / "firms" / "harlow_vance.yaml").read_text())
    firm["objects"] = objects
    (target / "firms" / f"{name}.yaml").write_text(yaml.safe_dump(firm))
    return mig.run(dag_id, expect_ok=False, tag=name.replace("_", ""), firm=name,
                   env={**mig.env, "CLIO2SF_MAPPINGS_DIR": str(target)})


def test_firm_config_naming_an_unknown_clio_field_fails_the_first_task(mig: Migration):
    run = _run_with_firm_config(mig, "mig_02_extract", "unknown_field",
                                {"Contact": {"fields": {"Title": {"from": "job_titel", "max": 128}}}})
    text = run.log()
    assert not run.ok
    assert "objects.Contact.fields.Title.from: ['job_titel'] names no field of Clio contacts" in text
    assert _started_tasks(text) == ["plan_extraction"], _started_tasks(text)


def test_target_field_missing_from_the_org_fails_the_first_task(mig: Migration):
    run = _run_with_firm_config(mig, "mig_01_discover", "missing_target",
                                {"Contact": {"fields": {"AssistantName__c": {"from": "title", "max": 40}}}})
    text = run.log()
    assert not run.ok
    assert "Contact has no field AssistantName__c" in text and "objects.Contact.fields.AssistantName__c" in text
    assert "add it to schema.fields" in text
    assert _started_tasks(text) == ["preflight"], _started_tasks(text)


def test_revoked_refresh_token_fails_the_extract_at_once_without_retries(mig: Migration):
    # No discover ran in this module (scripts.approve refuses an undiscovered migration): the
    # mapping is confirmed directly, as an approval would record it.
    confirm(load_spec(FIRM), "fault-suite", None, UPath(mig.root) / "approvals" / "mapping.yaml")
    env = dict(mig.env)
    conn = json.loads(env["AIRFLOW_CONN_CLIO_DEFAULT"])
    conn["extra"]["refresh_token"] = "a-revoked-refresh-token"
    env["AIRFLOW_CONN_CLIO_DEFAULT"] = json.dumps(conn)
    start = len(mig.clio.request_log())
    run = mig.run("mig_02_extract", expect_ok=False, tag="revoked", objects=["users"], env=env)
    refreshes = [e for e in mig.clio.request_log(start) if e["path"] == "/oauth/token"]
    text = run.log()
    assert not run.ok
    assert "Clio refused the refresh token" in text and "re-authorise the app" in text
    assert "a-revoked-refresh-token" not in text
    assert "try_number=2" not in text  # failed for good: an Airflow retry cannot fix a revoked grant
    # "At once" is counted, not timed: one refused refresh, no tenacity retry of it, no API request.
    assert len(refreshes) == 1, refreshes
    assert not [e for e in mig.clio.request_log(start) if e["path"].startswith("/api/v4/")]
