"""Clio requests per path through discover and the extraction, against the Clio sandbox over HTTP,
read from the sandbox's own request log: each object is paged once (issue #20's Clio ratio).

The phase functions run in-process (``read_clio_schema``, the extraction of every record object,
``summarize_extraction``) with the Airflow context replaced by the migration's params. Before this,
discover paged every matter (for the reference files' billing methods and evergreen retainers) and
every activity rate (for the rate hierarchy) and the extraction paged them again; now discover counts
them and the reference files take those parts from the staged copy once the extraction is complete.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest

from benchmarks.common import clio_conn_json
from clio2sf import catalog, staging
from clio2sf.counting import PAGE
from clio2sf.discovery.reference import reference_exports
from clio2sf.extract import extract_object, read_records

try:
    from sandbox.clio.testing import run_clio_sandbox
except ImportError as exc:  # the sandbox is developed in parallel
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason=f"Clio sandbox not importable: {exc}")]
else:
    pytestmark = pytest.mark.integration

FIRM = "harlow_vance"
MIGRATED = [o for o in catalog.CLIO_OBJECTS if o.migrated and o.name != "documents"]


@pytest.fixture(scope="module")
def clio(tmp_path_factory):
    # 1,600 matters: matters span 8 pages, activity rates 2, reminders several.
    with run_clio_sandbox(tmp_path_factory.mktemp("clio"), preset="large", matters=1600, rate_limit=None) as sb:
        yield sb


def _pages(n: int) -> int:
    return max(1, math.ceil(n / PAGE))


def _served(log: list[dict]) -> Counter:
    return Counter(e["path"].removeprefix("/api/v4/").removesuffix(".json") for e in log if e["method"] == "GET")


def test_discover_and_extraction_page_each_object_once(clio, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CLIO_DEFAULT", clio_conn_json(clio, tmp_path / "rate"))
    from clio2sf_airflow.hooks.clio import ClioHook
    from clio2sf_airflow.phases import discover, extract

    root = staging.migration_root(tmp_path / "staging", FIRM, "reads")
    p = {"firm": FIRM, "migration_id": "reads", "objects": [o.name for o in MIGRATED]}
    hook = ClioHook()
    hook.who_am_i()  # the token request out of the way
    for module in (discover, extract):
        monkeypatch.setattr(module, "params", lambda: dict(p))
        monkeypatch.setattr(module, "mroot", lambda _p=None: root)
        monkeypatch.setattr(module, "hold_lease", lambda *a, **k: None)
        monkeypatch.setattr(module, "release_lease", lambda *a, **k: None)
    monkeypatch.setattr(discover.migration, "clio_hook", lambda _p, **kw: hook)
    expected = clio.counts(catalog.CLIO_OBJECTS)

    start = len(clio.request_log())
    discover.read_clio_schema()
    disc_log = clio.request_log(start)
    disc = _served(disc_log)
    basis = staging.read_json(root / "discover" / "clio_count_basis.json")
    counts = staging.read_json(root / "discover" / "clio_counts.json")
    assert counts == {o.name: expected[o.name] for o in catalog.CLIO_OBJECTS if o.migrated}
    # configuration read in full, once (a migrated one's read is its count); settings one request
    for name in discover.CONFIG_OBJECTS:
        assert disc[catalog.get(name).endpoint] == _pages(expected[name]), (name, disc[name], expected[name])
    assert disc["settings/billing"] == 1
    # every other migrated object only counted: the requests its count took, a few, never its pages
    for obj in MIGRATED:
        if obj.name in discover.CONFIG_OBJECTS:
            continue
        requests = sum(basis[o.name]["requests"] for o in MIGRATED if o.endpoint == obj.endpoint)
        assert disc[obj.endpoint] == requests <= 10 * (1 + (obj.endpoint == "notes")), (obj.name, disc[obj.endpoint])
    assert disc["matters"] <= 3 < _pages(expected["matters"]), disc["matters"]  # was 1 sample + every page
    assert sum(disc.values()) == len(disc_log)
    config = staging.read_json(root / "discover" / "clio_config.json")
    assert "matters" not in config and "activity_rates" not in config
    assert any(config["custom_field_samples"]["Matter"].values())  # the count's first page is the sample
    # what build_mapping_document writes from it: those parts say they come after extraction
    at_discover = reference_exports(config, rate_document=discover.rate_document(config))
    assert at_discover["trust_accounting_rules.json"]["evergreen_retainers"].startswith("not read at discovery")
    assert "pending" in at_discover["rate_hierarchy.json"]["items"][0]

    start = len(clio.request_log())
    summaries = [{**extract_object(obj, hook.get_page, root, request_count=lambda: hook.requests_made)}
                 for obj in MIGRATED]
    ext = _served(clio.request_log(start))
    for obj in MIGRATED:
        n = sum(expected[o.name] for o in MIGRATED if o.endpoint == obj.endpoint)
        assert ext[obj.endpoint] == sum(_pages(expected[o.name]) for o in MIGRATED if o.endpoint == obj.endpoint), (
            obj.name, ext[obj.endpoint], n)
    before = len(clio.request_log())
    extract.summarize_extraction([{k: s[k] for k in ("object", "records", "batches", "requests", "complete")}
                                  for s in summaries])
    assert len(clio.request_log(before)) == 0  # the reference files come from the staged copy

    # discover + extraction, per object: its pages plus its count's few requests, nothing read twice
    total = disc + ext
    for obj in MIGRATED:
        same = [o.name for o in MIGRATED if o.endpoint == obj.endpoint]
        counting = 0 if obj.name in discover.CONFIG_OBJECTS else sum(basis[n]["requests"] for n in same)
        assert total[obj.endpoint] == sum(_pages(expected[n]) for n in same) * (1 + (obj.name in discover.CONFIG_OBJECTS)) + counting, obj.name

    # the reference files' parts from extracted records are there, and true to Clio
    matters = [env["data"] for env in read_records(root, "matters")]
    evergreen = [m for m in matters if m.get("evergreen_retainer")]
    assert evergreen, "the preset has matters with an evergreen retainer"
    trust = staging.read_json(root / "discover" / "reference" / "trust_accounting_rules.json")
    assert sorted(e["matter_id"] for e in trust["evergreen_retainers"]) == sorted(m["id"] for m in evergreen)
    assert all(e["minimum_threshold"] is not None for e in trust["evergreen_retainers"])
    billing = staging.read_json(root / "discover" / "reference" / "billing_automation.json")
    assert billing["summary"]["matter_billing_methods"] == dict(Counter(m.get("billing_method") or "unknown"
                                                                        for m in matters))
    rates = staging.read_json(root / "discover" / "reference" / "rate_hierarchy.json")["items"][0]
    assert "pending" not in rates
    assert sum(len(c["rates"]) for c in rates["client"]) == expected["activity_rates"]
    assert len(rates["matter"]) == sum(1 for m in matters if (m.get("custom_rate") or {}).get("rates"))
    print(f"Clio requests per path, discover + extraction: {dict(sorted(total.items()))}")
