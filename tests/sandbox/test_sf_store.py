"""The Salesforce sandbox store: a batch is readable before its commit, and the same after it."""

from __future__ import annotations

import threading

import pytest

from sandbox.salesforce.store import Store

C1, C2 = "0038c0000000001AAA", "0038c0000000002AAA"


def _hold(store: Store) -> threading.Event:
    """Block the writer thread until the returned event is set, so later batches stay pending."""
    release = threading.Event()
    store._submit(lambda db: release.wait(10))
    return release


def _views(store: Store) -> dict:
    return {
        "fetch": {k: (v[0], v[1], v[2]) for k, v in store.fetch(None, [C1, C2]).items()},
        "meta": store.fetch_meta([C1, C2]),
        "by_ext": store.lookup_keys("Contact", "Clio_Id__c", ["a", "b", "c"]),
        "by_account": store.lookup_keys("Contact", "AccountId", ["001x"]),
    }


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "org.sqlite3")


def test_pending_batch_reads_like_committed(store, tmp_path):
    store.write([("Contact", C1, {"Id": C1, "Clio_Id__c": "a", "AccountId": "001x", "IsDeleted": False}),
                 ("Contact", C2, {"Id": C2, "Clio_Id__c": "b", "IsDeleted": False})], [],
                [("Contact", "Clio_Id__c", "a", C1), ("Contact", "AccountId", "001x", C1),
                 ("Contact", "Clio_Id__c", "b", C2)], [])
    store.flush()
    release = _hold(store)
    # C1 changes its external id a -> c; C2 is soft-deleted. Neither is committed yet.
    store.write([], [("Contact", C1, {"Id": C1, "Clio_Id__c": "c", "AccountId": "001x", "IsDeleted": False}),
                     ("Contact", C2, {"Id": C2, "Clio_Id__c": "b", "IsDeleted": True})],
                [("Contact", "Clio_Id__c", "c", C1)], [("Contact", "Clio_Id__c", "a", C1)])
    pending = _views(store)
    assert store._pending, "the batch should still be waiting for the writer"
    assert pending["by_ext"] == {"c": [C1]}
    assert pending["by_account"] == {"001x": [C1]}
    assert pending["fetch"][C1][1]["Clio_Id__c"] == "c"
    assert pending["fetch"][C2][2] is True and pending["meta"][C2][2] is True
    release.set()
    store.flush()
    assert not store._pending
    assert _views(store) == pending
    again = Store(tmp_path / "org.sqlite3")
    assert _views(again) == pending


def test_a_failed_write_stops_the_store(store):
    store._submit(lambda db: db.execute("INSERT INTO no_such_table VALUES (1)"))
    with pytest.raises(RuntimeError, match="write failed"):
        store.flush()
    with pytest.raises(RuntimeError, match="write failed"):
        store.write([("Contact", C1, {"Id": C1})], [], [], [])


def test_pending_additions_join_committed_ids(store):
    c3 = "0038c0000000003AAA"
    store.write([("Contact", C1, {"Id": C1, "Email": "same@x.org"})], [], [("Contact", "Email", "same@x.org", C1)], [])
    store.flush()
    release = _hold(store)
    store.write([("Contact", c3, {"Id": c3, "Email": "same@x.org"})], [], [("Contact", "Email", "same@x.org", c3)], [])
    assert store._pending
    assert store.lookup_keys("Contact", "Email", ["same@x.org", "other@x.org"]) == {"same@x.org": [C1, c3]}
    release.set()
    store.flush()
    assert sorted(store.lookup_keys("Contact", "Email", ["same@x.org"])["same@x.org"]) == [C1, c3]
