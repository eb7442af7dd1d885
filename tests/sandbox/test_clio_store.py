"""The sandbox store: scans in order with Clio's visibility rules, and writes that bump the generation."""

from __future__ import annotations

import pytest

from sandbox.clio.store import Store

pytestmark = pytest.mark.unit


def _doc(rid: int, matter: int, deleted: bool = False) -> dict:
    return {"id": rid, "etag": f'"e{rid}"', "name": f"Doc {rid} – café", "matter": {"id": matter, "etag": '"m"'},
            "deleted_at": "2024-01-02T00:00:00-05:00" if deleted else None,
            "_created_ts": 1_700_000_000.0 + rid, "_updated_ts": 1_700_000_000.0 + rid}


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "clio.sqlite3")
    # a dense run with a trashed record and a hard-deleted one, then sparse ids
    recs = [_doc(i, 5000 + i % 2, deleted=i == 5) for i in range(1, 13)] + [_doc(i, 5001) for i in (100, 400, 900)]
    s.insert_many("documents", recs)
    s.delete("documents", 8)
    return s


@pytest.mark.parametrize("kwargs, ids", [
    ({"after_id": 0}, [1, 2, 3, 4, 6, 7, 9, 10, 11, 12, 100, 400, 900]),
    ({"after_id": 11}, [12, 100, 400, 900]),
    ({"include_deleted": True, "ids": [4, 5, 8, 900]}, [4, 5, 900]),
    ({"updated_since": 1_700_000_000.0 + 100}, [400, 900]),
    ({"created_before": 1_700_000_000.0 + 3}, [1, 2]),
    ({"order_field": "id", "descending": True, "ids": [1, 2, 100]}, [100, 2, 1]),
    ({"order_field": "name", "ids": [2, 100, 12]}, [100, 12, 2]),
    ({"ids": [2**70, -(2**70), 3]}, [3]),
])
def test_scan_order_and_visibility(store: Store, kwargs: dict, ids: list[int]) -> None:
    assert [r["id"] for r in store.scan("documents", **kwargs)] == ids


def test_get_count_and_huge_ids(store: Store) -> None:
    assert store.get("documents", 5)["deleted_at"] is not None  # a trashed record is still shown
    assert store.get("documents", 8) is None
    assert store.get("documents", 2**64) is None
    assert store.count("documents") == 13 and store.count("documents", include_deleted=True) == 14
    assert store.count("documents", lambda r: r["matter"]["id"] == 5000) == 5
    assert store.kinds() == ["documents"]


def test_writes_bump_the_generation(store: Store) -> None:
    before = store.generation
    store.save("documents", store.get("documents", 2) | {"name": "Renamed"})
    assert store.generation == before + 1 and store.get("documents", 2)["name"] == "Renamed"
    store.delete("documents", 2)
    assert store.generation == before + 2
