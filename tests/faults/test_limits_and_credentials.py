"""Org limits, rejected credentials and bad configuration, at the hook and pipeline level.

No DAG here: these faults are decided inside one hook call, so the DAG adds only start-up time
(the DAG-level wiring of the same errors is in test_bad_configuration.py).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from clio2sf.discovery import capacity_check, estimates
from clio2sf.load import Envelope, load_rows
from clio2sf.mapping.spec import DEFAULT_MAPPINGS_DIR, SpecError, load_spec
from clio2sf.mapping.validation import validate_spec_against_describes

pytestmark = pytest.mark.integration

EXT = "Clio_Id__c"


@pytest.fixture(scope="module")
def sf(tmp_path_factory):
    from sandbox.salesforce.testing import run_sf_sandbox

    with run_sf_sandbox(tmp_path_factory.mktemp("sf-limits"), seed=42) as sb:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sb.connection_json())
            mp.setenv("REQUESTS_CA_BUNDLE", str(sb.ca_bundle))
            from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

            ClioSalesforceHook(sleep=lambda s: None).ensure_external_id_field("Contact")
            yield sb


@pytest.fixture
def hook(sf):
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    return ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05, max_poll_interval=0.5)


def _rows(prefix: str, n: int) -> list[Envelope]:
    return [Envelope("Contact", f"contact-{prefix}{i}", {EXT: f"contact-{prefix}{i}", "LastName": f"L{i}"}, EXT)
            for i in range(n)]


def _count(sf, prefix: str) -> dict[str, int]:
    rows = sf.sf().query_all(f"SELECT Clio_Id__c FROM Contact WHERE Clio_Id__c LIKE 'contact-{prefix}%'")["records"]
    seen: dict[str, int] = {}
    for r in rows:
        seen[r[EXT]] = seen.get(r[EXT], 0) + 1
    return seen


def test_request_limit_exceeded_stops_with_the_usage_figure_and_resumes_without_duplicates(sf, hook):
    from clio2sf_airflow.hooks.salesforce import SalesforceApiLimitExceeded

    first = load_rows(hook, _rows("lim", 150), mode="composite")
    assert first.created == 150
    used = hook.api_usage["used"]
    sf.knobs(api_daily_limit=used + 1)
    try:
        with pytest.raises(SalesforceApiLimitExceeded) as err:
            for start in range(0, 400, 100):  # batch after batch, as the load tasks do
                load_rows(hook, _rows("lim", 400)[start:start + 100], mode="composite")
        message = str(err.value)
        assert re.search(r"API usage \d+/\d+", message), message
        assert "REQUEST_LIMIT_EXCEEDED" in message
    finally:
        sf.knobs(api_daily_limit=1_000_000)
    # the next day (the limit is raised): the whole batch again, nothing duplicated
    again = load_rows(hook, _rows("lim", 400), mode="composite")
    assert again.failed == 0
    seen = _count(sf, "lim")
    assert len(seen) == 400 and set(seen.values()) == {1}


def test_storage_limit_is_warned_by_the_estimate_and_fails_rows_with_a_clear_error(sf, hook):
    sf.knobs(data_storage_mb=1)
    try:
        limits = hook.limits()
        est = estimates({"contacts": 3000, "matters": 1200, "activities": 9000})
        findings = capacity_check(est, limits)
        storage = [f for f in findings if f.limit == "DataStorageMB"]
        assert storage and storage[0].level == "error", findings
        assert "remaining" in storage[0].message and "MB" in storage[0].message
        rows = _rows("full", 600)
        try:
            result = load_rows(hook, rows, mode="composite")
        except Exception as exc:  # a storage error may stop the batch as a whole
            assert "STORAGE_LIMIT_EXCEEDED" in str(exc)
        else:
            codes = {e.status_code for o in result.outcomes if not o.success for e in o.errors}
            assert result.failed > 0 and "STORAGE_LIMIT_EXCEEDED" in codes, codes
    finally:
        sf.knobs(data_storage_mb=1024)


def test_required_field_rule_rejects_some_rows_and_loads_the_others(sf, hook):
    """The org's validation (a required field) rejects 2 of 10 rows: 8 load, 2 fail with the reason."""
    rows = _rows("val", 10)
    for env in rows[:2]:
        env.row["LastName"] = None
    result = load_rows(hook, rows, mode="composite")
    assert result.created == 8 and result.failed == 2
    failed = [o for o in result.outcomes if not o.success]
    assert {e.status_code for o in failed for e in o.errors} == {"REQUIRED_FIELD_MISSING"}
    assert {o.source_system_id for o in failed} == {"contact-val0", "contact-val1"}


def test_wrong_salesforce_secret_fails_the_connection_test_with_a_reason(sf, monkeypatch):
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    conn = json.loads(sf.connection_json())
    conn["extra"]["consumer_secret"] = "not-the-secret"
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(conn))
    ok, message = ClioSalesforceHook().test_connection()
    assert not ok and message
    assert "not-the-secret" not in message


@pytest.fixture(scope="module")
def clio(tmp_path_factory):
    from sandbox.clio.testing import run_clio_sandbox

    with run_clio_sandbox(tmp_path_factory.mktemp("clio-auth"), seed=42, preset="tiny", rate_limit=None) as c:
        yield c


def _clio_conn(clio, **changes) -> str:
    conn = {"conn_type": "http", "host": clio.base_url, "login": clio.client_id, "password": clio.client_secret,
            "extra": {"refresh_token": clio.refresh_token}}
    conn.update({k: v for k, v in changes.items() if k != "refresh_token"})
    if "refresh_token" in changes:
        conn["extra"] = {"refresh_token": changes["refresh_token"]}
    return json.dumps(conn)


def test_expired_and_revoked_access_tokens_are_refreshed(clio, monkeypatch, tmp_path):
    import tenacity

    from clio2sf_airflow.hooks.clio import ClioHook

    monkeypatch.setenv("AIRFLOW_CONN_CLIO_DEFAULT", _clio_conn(clio))
    monkeypatch.setenv("CLIO2SF_RATE_DIR", str(tmp_path / "rate"))
    clio.set_knobs(token_ttl=1)
    try:
        hook = ClioHook(retry_wait=tenacity.wait_none())
        hook.get_page("users", {"fields": "id"})
        first = hook._access_token
        import time

        time.sleep(1.2)  # the token has now expired on the server
        hook._expires_at = time.time() + 3600  # the hook believes it is still valid: a 401 must refresh it
        hook.get_page("users", {"fields": "id"})
        assert hook._access_token != first
        clio.set_knobs(token_ttl=3600)
        hook._expires_at = 0.0  # take a long-lived token, then have it revoked mid-run
        hook.get_page("users", {"fields": "id"})
        clio.revoke()
        page, _ = hook.get_page("users", {"fields": "id"})
        assert page["data"]
    finally:
        clio.set_knobs(token_ttl=3600)
    statuses = [r["status"] for r in clio.request_log() if r["path"].startswith("/api/v4/users")]
    assert statuses.count(401) >= 2


def test_revoked_refresh_token_fails_at_once_with_what_to_do(clio, monkeypatch, tmp_path):
    import tenacity

    from clio2sf_airflow.hooks.clio import ClioAuthError, ClioHook

    monkeypatch.setenv("AIRFLOW_CONN_CLIO_DEFAULT", _clio_conn(clio, refresh_token="revoked-refresh-token"))
    monkeypatch.setenv("CLIO2SF_RATE_DIR", str(tmp_path / "rate"))
    hook = ClioHook(retry_wait=tenacity.wait_none())
    before = len(clio.request_log())
    with pytest.raises(ClioAuthError) as err:
        hook.get_page("users", {"fields": "id"})
    message = str(err.value)
    assert "re-authorise" in message and "clio_default" in message
    assert "revoked-refresh-token" not in message and clio.client_secret not in message
    assert len(clio.request_log(before)) <= 2  # no retry storm against the token endpoint


@pytest.fixture
def mappings(tmp_path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, target)
    return target


def test_firm_config_naming_an_unknown_key_is_refused_with_its_path(mappings):
    firm = yaml.safe_load((mappings / "firms" / "harlow_vance.yaml").read_text())
    firm["objects"] = {"Contact": {"fields": {"Title": {"map": "no_such_value_map"}}}}
    (mappings / "firms" / "bad_firm.yaml").write_text(yaml.safe_dump(firm))
    with pytest.raises(SpecError) as err:
        load_spec("bad_firm", mappings)
    assert "objects.Contact.fields.Title" in str(err.value) and "no_such_value_map" in str(err.value)


def test_target_field_missing_from_the_org_is_named(hook):
    spec = load_spec("harlow_vance")
    describes = {name: hook.describe(name, refresh=True) for name in ("Account", "Contact", "Case", "Task", "Event")}
    # the org lacks the spec's custom fields until the schema plan is applied; drop one standard field too
    describes["Contact"] = {**describes["Contact"],
                            "fields": [f for f in describes["Contact"]["fields"] if f["name"] != "Title"]}
    problems = validate_spec_against_describes(spec, describes)
    missing = [p for p in problems if p.sobject == "Contact" and p.field == "Title"]
    assert missing and missing[0].rule == "missing_field", problems
    assert "Contact has no field Title" in missing[0].message


def test_no_tls_verification_is_turned_off_in_product_code():
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for folder in ("clio2sf", "plugins", "dags"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            for pattern in (r"verify\s*=\s*False", r"CERT_NONE", r"check_hostname\s*=\s*False",
                            r"disable_warnings", r"_create_unverified_context"):
                if re.search(pattern, text):
                    offenders.append(f"{path.relative_to(root)}: {pattern}")
    assert not offenders, offenders


def test_the_salesforce_hook_verifies_against_the_sandbox_ca(sf, monkeypatch):
    """Without the sandbox CA in the bundle, the hook refuses the sandbox's certificate."""
    import certifi

    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with pytest.raises(Exception) as err:
        ClioSalesforceHook(sleep=lambda s: None).limits()
    assert "CERTIFICATE_VERIFY_FAILED" in repr(err.value) or "SSLError" in repr(err.value)
