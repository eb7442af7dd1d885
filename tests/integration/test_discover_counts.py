"""Discover's record counts against the Clio sandbox over HTTP (ClioHook), read from the
sandbox's own request log: a few requests per object instead of one per 200 records.

The sandbox gives no total in ``meta`` (Clio's spec declares none), so the counter must use the
documented paging only: one request for an object of one page, an offset-paged binary search up to
10,000 records (exact), an id-density estimate beyond.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from clio2sf import catalog
from clio2sf.counting import count_records

try:
    from sandbox.clio.testing import run_clio_sandbox
except ImportError as exc:  # the sandbox is developed in parallel
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason=f"Clio sandbox not importable: {exc}")]
else:
    pytestmark = pytest.mark.integration

MIGRATED = [o for o in catalog.CLIO_OBJECTS if o.migrated]


@pytest.fixture(scope="module")
def clio(tmp_path_factory):
    # 1,300 matters: several objects span many pages, activities pass 10,000 records.
    with run_clio_sandbox(tmp_path_factory.mktemp("clio"), preset="large", matters=1300, rate_limit=None) as sb:
        yield sb


def test_counts_take_a_few_requests_per_object_and_are_exact_up_to_the_offset_cap(clio, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CLIO_DEFAULT", json.dumps({
        "conn_type": "http", "host": clio.base_url, "login": clio.client_id, "password": clio.client_secret,
        "extra": {"refresh_token": clio.refresh_token, "rate_state_dir": str(tmp_path / "rate")}}))
    from clio2sf_airflow.hooks.clio import ClioHook

    hook = ClioHook()
    hook.who_am_i()  # the token request out of the way
    expected = clio.counts(MIGRATED)
    start = len(clio.request_log())
    got = {o.name: count_records(o, hook.get_page) for o in MIGRATED}
    log = clio.request_log(start)
    served = Counter(e["path"] for e in log if e["method"] == "GET")
    assert sum(served.values()) == sum(g["requests"] for g in got.values()) == len(log)
    assert all(e["status"] == 200 for e in log), [e for e in log if e["status"] != 200][:3]
    paging_all = sum(max(1, math.ceil(expected[o.name] / 200)) for o in MIGRATED)
    for o in MIGRATED:
        n, g = expected[o.name], got[o.name]
        if n <= 10_000:
            assert g["basis"] == "exact" and g["records"] == n, (o.name, g, n)
            # one page: one request; the sandbox's ids are dense, so the id estimate hits at once (3),
            # except where the endpoint takes no ``order`` (binary search, at most 10)
            assert g["requests"] == (1 if n <= 200 else 3 if o.ordered else g["requests"]) <= 10, (o.name, g)
        else:
            assert g["records"] >= 10_000 and g["basis"] in ("estimate", "at_least") and g["requests"] <= 3, (o.name, g)
            if g["basis"] == "estimate":
                assert abs(g["records"] - n) <= 0.1 * n, (o.name, g, n)
    big = [o.name for o in MIGRATED if expected[o.name] > 10_000]
    assert big, expected  # the preset exercises the estimate
    used = sum(g["requests"] for g in got.values())
    assert used <= 4 * len(MIGRATED) and used * 2 < paging_all, (used, paging_all)
    print(f"discover counting: {used} requests for {len(MIGRATED)} objects; paging everything: {paging_all}")
