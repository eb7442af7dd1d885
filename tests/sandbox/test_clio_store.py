"""The sandbox store's pre-projected pages match a projection of the full records."""

from __future__ import annotations

import json

import pytest

from clio2sf.catalog import BY_NAME
from sandbox.clio.fields import compile_plan, project
from sandbox.clio.store import VIEW_KEYS, Store

pytestmark = pytest.mark.unit

DOCS = BY_NAME["documents"]


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


def _expected(store: Store, ids: list[int]) -> list[dict]:
    plan = compile_plan(DOCS.endpoint, DOCS.fields)
    return [project(store.get("documents", i), plan) for i in ids]


@pytest.mark.parametrize("kwargs, ids", [
    ({"after_id": 0, "limit": 4}, [1, 2, 3, 4, 6]),
    ({"after_id": 4, "limit": 200}, [6, 7, 9, 10, 11, 12, 100, 400, 900]),
    ({"after_id": 11, "limit": 200}, [12, 100, 400, 900]),
    ({"after_id": 0, "limit": 200, "matter_id": 5001}, [1, 3, 7, 9, 11, 100, 400, 900]),
    ({"after_id": 0, "limit": 3, "include_deleted": True}, [1, 2, 3, 4]),
    ({"after_id": 0, "limit": 3, "offset": 2, "order_field": "id", "descending": True}, [100, 12, 11, 10]),
])
def test_view_pages_equal_projected_records(store: Store, kwargs: dict, ids: list[int]) -> None:
    view = VIEW_KEYS[(DOCS.endpoint, DOCS.fields)]
    rows = store.page("documents", view=view, **kwargs)
    assert [r[0] for r in rows] == ids
    assert all(isinstance(r[1], bytes) for r in rows)
    assert [json.loads(r[1]) for r in rows] == _expected(store, ids)
    # the same page without the view, projected on the fly, is identical
    full = store.page("documents", **kwargs)
    assert [r[0] for r in full] == ids


def test_view_page_follows_an_update(store: Store) -> None:
    rec = store.get("documents", 2) | {"name": "Renamed"}
    store.save("documents", rec)
    view = VIEW_KEYS[(DOCS.endpoint, DOCS.fields)]
    rows = dict(store.page("documents", view=view, after_id=1, limit=1))
    assert json.loads(rows[2])["name"] == "Renamed"
