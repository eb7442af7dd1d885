"""Counting a Clio collection without paging it all (clio2sf.counting), against a fake that pages
as Clio documents it: cursor pages of 200, offset pages capped at 10,000 records (422 past it),
``order=id(desc)`` only where the endpoint takes ``order``, and no total in ``meta``."""

from __future__ import annotations

import pytest

from clio2sf import catalog
from clio2sf.counting import count_records


class BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeClio:
    def __init__(self, ids: list[int], *, total: bool = False, ordered: bool = True) -> None:
        self.ids, self.total, self.ordered = sorted(ids), total, ordered
        self.calls: list[dict] = []

    def fetch(self, path, params):
        params = dict(params or {})
        self.calls.append(params)
        limit = int(params.get("limit", 200))
        order = params.get("order", "id(asc)")
        if order not in ("id(asc)", "id(desc)") or (order == "id(desc)" and not self.ordered):
            raise BadRequest(400)
        ids = self.ids[::-1] if order == "id(desc)" else self.ids
        if "offset" in params:
            start = int(params["offset"])
            if start + limit > 10_000:
                raise BadRequest(422)
        else:
            assert "page_token" not in params  # the counter never follows the cursor
            start = 0
        rows = ids[start:start + limit]
        meta = {"paging": {"next": "https://clio.test/next"}} if start + limit < len(ids) else {"paging": {}}
        if self.total:
            meta["records"] = len(ids)
        return {"data": [{"id": i} for i in rows], "meta": meta}, {}


CONTACTS = catalog.get("contacts")
LINE_ITEMS = catalog.get("line_items")  # an endpoint without ``order``


@pytest.mark.parametrize("n", [0, 1, 199, 200])
def test_one_page_is_counted_exactly_with_one_request(n):
    clio = FakeClio(list(range(1, n + 1)))
    assert count_records(CONTACTS, clio.fetch) == {"records": n, "basis": "exact", "requests": 1}


SIZES = [201, 399, 400, 401, 1234, 5000, 9799, 9800, 9801, 9999, 10_000]


@pytest.mark.parametrize("n", SIZES)
def test_evenly_spread_ids_give_the_exact_count_in_three_requests(n):
    clio = FakeClio([7 + 3 * i for i in range(n)])
    got = count_records(CONTACTS, clio.fetch)
    assert got == {"records": n, "basis": "exact", "requests": 3}, clio.calls
    assert all(int(c.get("offset", 0)) + int(c["limit"]) <= 10_000 for c in clio.calls)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("shape", ["gap_after_first_page", "spread_first_page", "no_order"])
def test_up_to_the_offset_cap_the_count_is_exact_in_at_most_ten_requests(n, shape):
    """Ids that mislead the estimate (or an endpoint without ``order``) fall back to a binary search:
    still exact, the count never taken from the ids."""
    if shape == "gap_after_first_page":
        ids = list(range(1, 201)) + [50_000 + i for i in range(n - 200)]
    elif shape == "spread_first_page":
        ids = [100 * i for i in range(1, 201)] + [30_000 + i for i in range(n - 200)]
    else:
        ids = list(range(1, n + 1))
    clio = FakeClio(ids, ordered=shape != "no_order")
    got = count_records(LINE_ITEMS if shape == "no_order" else CONTACTS, clio.fetch)
    assert got["records"] == n and got["basis"] == "exact"
    assert got["requests"] == len(clio.calls) <= 10, clio.calls
    assert all(int(c.get("offset", 0)) + int(c["limit"]) <= 10_000 for c in clio.calls)


def test_beyond_the_cap_an_estimate_from_id_density_in_three_requests():
    n = 32_000
    clio = FakeClio([1000 + 2 * i for i in range(n)])
    got = count_records(CONTACTS, clio.fetch)
    assert got == {"records": n, "basis": "estimate", "requests": 3}
    gappy = FakeClio([1000 + 2 * i for i in range(10_000)] + [50_000 + 2 * i for i in range(5_000)])
    est = count_records(CONTACTS, gappy.fetch)
    assert est["basis"] == "estimate" and est["records"] > 10_000  # an estimate, and labelled as one


def test_beyond_the_cap_without_order_the_lower_bound_is_reported_as_such():
    clio = FakeClio(list(range(1, 12_001)), ordered=False)
    got = count_records(LINE_ITEMS, clio.fetch)
    assert got == {"records": 10_000, "basis": "at_least", "requests": 2}
    assert not any(c.get("order") for c in clio.calls)


def test_a_total_in_meta_ends_the_count_at_once():
    clio = FakeClio(list(range(1, 25_001)), total=True)
    assert count_records(CONTACTS, clio.fetch) == {"records": 25_000, "basis": "total", "requests": 1}


def test_fixed_params_are_kept_on_every_probe():
    notes = catalog.get("matter_notes")
    clio = FakeClio(list(range(1, 1001)))
    count_records(notes, clio.fetch)
    assert all(c.get("type") == "Matter" for c in clio.calls)
