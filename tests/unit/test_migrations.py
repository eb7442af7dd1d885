"""Per-migration declarations (include/migrations/) and how a run resolves its connections."""

from __future__ import annotations

import textwrap

import pytest

from clio2sf.migrations import DeclarationError, Migration, find, load_declarations, parse, scheduled

pytestmark = pytest.mark.unit


def _write(folder, name, text):
    (folder / name).write_text(textwrap.dedent(text))


def test_shipped_declaration_is_valid_and_scheduled():
    migs = load_declarations()
    assert any(m.firm == "harlow_vance" and m.migration_id == "m1" for m in migs)
    assert {m.delta_dag_id for m in scheduled()} >= {"mig_06_delta__harlow_vance__m1"}


def test_two_firms_resolve_to_their_own_connections_and_staging(tmp_path):
    _write(tmp_path, "a.yaml", """
        firm: acme
        migration_id: m1
        staging_root: file:///srv/acme
        cutover: {schedule: "*/15 * * * *", start: 2026-12-01T00:00:00Z}
    """)
    _write(tmp_path, "b.yaml", """
        firm: beta
        migration_id: m7
        clio_conn_id: clio_beta_eu
        clio_pool: clio_api_beta
    """)
    a, b = find("acme", "m1", tmp_path), find("beta", "m7", tmp_path)
    assert a.clio_conn_candidates() == ["clio_acme", "clio_default"]
    assert a.salesforce_conn_candidates() == ["salesforce_acme", "salesforce_default"]
    assert a.staging_root == "file:///srv/acme" and b.staging_root is None
    assert b.clio_conn_candidates() == ["clio_beta_eu"]  # declared: no silent fallback
    assert b.clio_pool == "clio_api_beta" and a.clio_pool is None
    # pools per firm: the declared one alone (a typo must show), else the firm's own, else the shared one
    assert b.pool_candidates("clio_api") == ["clio_api_beta"]
    assert b.pool_candidates("salesforce_api") == ["salesforce_api_beta", "salesforce_api"]
    assert a.pool_candidates("clio_api") == ["clio_api_acme", "clio_api"]
    assert [m.key for m in scheduled(tmp_path)] == ["acme__m1"]
    assert find("acme", "m2", tmp_path) is None


def test_a_task_goes_to_the_first_pool_that_exists():
    from clio2sf.migrations import choose_pool, pool_candidates

    firm_own = pool_candidates("salesforce_api", "acme")
    assert choose_pool(firm_own, {"salesforce_api", "salesforce_api_acme"}) == "salesforce_api_acme"
    assert choose_pool(firm_own, {"salesforce_api", "salesforce_api_beta"}) == "salesforce_api"
    declared = pool_candidates("clio_api", "acme", "clio_api_acme_eu")
    assert choose_pool(declared, {"clio_api", "clio_api_acme"}) == "clio_api_acme_eu"  # missing: named, not hidden


@pytest.mark.parametrize(("doc", "needle"), [
    ({"firm": "Acme", "migration_id": "m1"}, "firm"),
    ({"firm": "acme", "migration_id": "a/b"}, "migration_id"),
    ({"firm": "acme", "migration_id": "m1", "colour": 1}, "colour"),
    ({"firm": "acme", "migration_id": "m1", "salesforce_pool": "sf pool"}, "salesforce_pool"),
    ({"firm": "acme", "migration_id": "m1", "staging_root": "/tmp/x"}, "staging_root"),
    ({"firm": "acme", "migration_id": "m1", "cutover": {"schedule": "hourly", "start": "2026-01-01"}}, "cutover.schedule"),
    ({"firm": "acme", "migration_id": "m1", "cutover": {"schedule": "0 * * * *"}}, "cutover.start"),
    ({"firm": "acme", "migration_id": "m1", "cutover": {"schedule": "0 * * * *", "start": "2026-01-02",
                                                       "end": "2026-01-01"}}, "cutover.end"),
])
def test_bad_declarations_name_file_and_field(doc, needle):
    with pytest.raises(DeclarationError, match=needle) as info:
        parse(doc, "x.yaml")
    assert "x.yaml" in str(info.value)


def test_duplicate_declaration_is_an_error(tmp_path):
    for name in ("one.yaml", "two.yaml"):
        _write(tmp_path, name, "firm: acme\nmigration_id: m1\n")
    with pytest.raises(DeclarationError, match="already declared in one.yaml"):
        load_declarations(tmp_path)


def test_resolve_conn_id_prefers_the_firms_connection():
    from clio2sf_airflow.migration import resolve_conn_id

    mig = Migration(firm="acme", migration_id="m1")
    assert resolve_conn_id(mig.clio_conn_candidates(), lambda c: c in {"clio_acme", "clio_default"}) == "clio_acme"
    assert resolve_conn_id(mig.clio_conn_candidates(), lambda c: c == "clio_default") == "clio_default"
    # none exists: the last candidate, so the hook's error names a connection the runbook documents
    assert resolve_conn_id(mig.clio_conn_candidates(), lambda c: False) == "clio_default"
