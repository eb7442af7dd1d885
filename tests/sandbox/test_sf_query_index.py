"""A filter on a parent's indexed field (``Account.Ext__c IN (...)``) uses the key index, as a real org's
optimizer does, and answers exactly what a scan would."""

from __future__ import annotations

import pytest

from sandbox.salesforce import query
from sandbox.salesforce.org import Org, Settings
from sandbox.salesforce.query import Runner

pytestmark = pytest.mark.unit


@pytest.fixture
def org(tmp_path) -> Org:
    org = Org(tmp_path, Settings(seed=3))
    org.create_custom_field("Account.Ext__c", {"type": "Text", "length": 40, "externalId": True, "label": "Ext"})
    user = None  # internal writes: the new field has no field-level security grant to a user yet
    accounts = org.write("Account", "insert", [{"Name": f"A{i}", "Ext__c": f"Key-{i}"} for i in range(6)],
                         user_id=user)
    acc = [r["id"] for r in accounts]
    contacts = org.write("Contact", "insert",
                         [{"LastName": f"C{i}", "AccountId": acc[i % 6]} for i in range(30)], user_id=user)
    assert all(r["success"] for r in accounts + contacts)
    org.delete([acc[5]], user_id=user)  # a deleted parent (its contacts go to the recycle bin with it)
    org.store.flush()
    return org


def _ids(org: Org, soql: str, include_deleted: bool = False) -> list[str]:
    return sorted(r["Id"] for r in Runner(org, soql, include_deleted=include_deleted).rows())


def _scans(org: Org, monkeypatch) -> list[str]:
    """Record every full-table scan (a scan without ids) the store is asked for."""
    seen: list[str] = []
    real = org.store.scan

    def scan(sobject, *, include_deleted, ids=None):
        if ids is None:
            seen.append(sobject)
        return real(sobject, include_deleted=include_deleted, ids=ids)

    monkeypatch.setattr(org.store, "scan", scan)
    return seen


@pytest.mark.parametrize("where", [
    "Account.Ext__c IN ('key-1', 'KEY-3', 'nope')",  # external ids compare case-insensitively
    "Account.Ext__c = 'Key-2'",
    "Contact.Account.Ext__c IN ('Key-0') AND LastName != 'C6'",
    "Account.Ext__c IN ('Key-5', 'Key-4')",  # Key-5's account is deleted
])
def test_a_parent_key_filter_reads_through_the_index_and_matches_a_scan(org, monkeypatch, where) -> None:
    everything = _ids(org, "SELECT Id, Account.Ext__c, LastName FROM Contact")
    by_scan = sorted(r["Id"] for r in Runner(org, "SELECT Id, Account.Ext__c, LastName FROM Contact",
                                            include_deleted=False).rows()
                     if _matches(org, r, where))
    seen = _scans(org, monkeypatch)
    got = _ids(org, f"SELECT Id FROM Contact WHERE {where}")
    assert seen == []  # no scan: the index answered
    assert got == by_scan and set(got) <= set(everything)
    assert got or "Key-5" in where


def _matches(org: Org, rec: dict, where: str) -> bool:
    """The filter evaluated on one record the plain way (a query by its Id runs the same WHERE)."""
    return bool(Runner(org, f"SELECT Id FROM Contact WHERE Id = '{rec['Id']}' AND ({where})",
                       include_deleted=False).rows())


def test_query_all_through_a_parent_key_finds_deleted_children(org, monkeypatch) -> None:
    four = _ids(org, "SELECT Id FROM Contact WHERE Account.Ext__c = 'Key-4'")
    org.delete(four[:1], user_id=None)
    org.store.flush()
    seen = _scans(org, monkeypatch)
    live = _ids(org, "SELECT Id FROM Contact WHERE Account.Ext__c = 'Key-4'")
    every = _ids(org, "SELECT Id FROM Contact WHERE Account.Ext__c = 'Key-4'", include_deleted=True)
    assert seen == [] and live == four[1:] and every == four and len(four) == 5


def test_an_unindexed_path_still_scans(org, monkeypatch) -> None:
    seen = _scans(org, monkeypatch)
    got = _ids(org, "SELECT Id FROM Contact WHERE Account.Name = 'A1'")
    assert seen == ["Contact"] and len(got) == 5


def test_a_query_keeps_a_bounded_number_of_parents_and_renders_them_all(org, monkeypatch) -> None:
    """A relationship path (``Account.Name``) reads each child's parent; the query (whose cursor lives while
    its pages are read) keeps the most recently used parents only, not a copy of every parent it met (the
    2.0M EventRelations of an xl org, read with ``Event.Clio_Id__c``, held 1.1M Events), and renders the
    same values as with every parent kept."""
    soql = "SELECT Id, LastName, Account.Name, Account.Ext__c FROM Contact"
    whole = Runner(org, soql, include_deleted=False)
    everything = [whole.render(r) for r in whole.rows()]
    assert len(whole._parents) == 5  # the contacts' live accounts, each read once
    monkeypatch.setattr(query, "PARENT_CACHE", 2, raising=False)
    bounded = Runner(org, soql, include_deleted=False)
    assert [bounded.render(r) for r in bounded.rows()] == everything
    assert everything and all(r["Account"]["Name"] for r in everything)
    assert len(bounded._parents) <= 2
