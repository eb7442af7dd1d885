"""Look-ups of many keys through Bulk API 2.0 query jobs give what the REST GETs give, on the sandbox.

The loader's look-ups (records already there, external ids to Salesforce ids, natural keys already
there, before-images) go through query jobs above ``BULK_LOOKUP_MIN`` keys: as IN lists filling the SOQL
length limit, or one job over every record with a key.  Here the thresholds are lowered so a few dozen
records take each path, and each answer is compared with the REST path's on the same data; the
sandbox's request log shows which path ran (a comparison of the REST path with itself would pass too).
"""

from __future__ import annotations

import datetime as dt

import pytest

from clio2sf import load
from clio2sf.load import (
    Envelope,
    _existing_natural_keys,
    capture_before_images,
    existing_external_ids,
    load_rows,
    resolve_external_ids,
)

testing = pytest.importorskip("sandbox.salesforce.testing")

pytestmark = pytest.mark.integration

EXT = "Clio_Id__c"
N = 30


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with testing.run_sf_sandbox(tmp_path_factory.mktemp("sf-org"), seed=42) as sb:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sb.connection_json())
            mp.setenv("REQUESTS_CA_BUNDLE", sb.ca_bundle)
            from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

            hook = ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05)
            for obj in ("Contact", "Event"):
                hook.ensure_external_id_field(obj)
            yield sb


@pytest.fixture(scope="module")
def hook(sandbox):
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    return ClioSalesforceHook(poll_interval=0.05, max_poll_interval=0.2)


@pytest.fixture(scope="module")
def org(hook):
    """N contacts, N events (one with a description, every other all-day), and their relations."""
    contacts = [Envelope("Contact", f"contact-{i}", {EXT: f"contact-{i}", "LastName": f"Doe {i}"}, EXT) for i in range(N)]
    start = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    events = []
    for i in range(N):
        s = start + dt.timedelta(days=i)
        row = {EXT: f"Calendar_Entry-{i}@2026", "Subject": f"Hearing {i}", "IsAllDayEvent": False,
               "StartDateTime": s.isoformat(), "EndDateTime": (s + dt.timedelta(minutes=30 + i)).isoformat()}
        if i == 3:
            row["Description"] = 'notes, "quoted"\nsecond line'
        events.append(Envelope("Event", f"calendar_entry-{i}@2026", row, EXT))
    assert load_rows(hook, contacts, mode="bulk", sleep=lambda s: None).failed == 0
    assert load_rows(hook, events, mode="bulk", sleep=lambda s: None).failed == 0
    # relations name their parents in another case than they were stored in (external ids are case-insensitive)
    relations = [Envelope("EventRelation", f"er-{i}-{j}", {"Event.Clio_Id__c": f"CALENDAR_ENTRY-{i}@2026",
                                                            "Contact:Relation.Clio_Id__c": f"Contact-{j}", "IsInvitee": True},
                          None, ("EventId", "RelationId")) for i in range(N) for j in (i, (i + 1) % N)]
    half = relations[: len(relations) // 2]
    assert load_rows(hook, half, mode="bulk", sleep=lambda s: None).created == len(half)
    return {"contacts": contacts, "events": events, "relations": relations}


def paths(sandbox, fn, monkeypatch, **knobs):
    """(REST answer, Bulk answer, calls the Bulk answer made by kind)."""
    monkeypatch.setattr(load, "BULK_LOOKUP_MIN", 10**9)
    rest = fn()
    for k, v in {"BULK_LOOKUP_MIN": 5, **knobs}.items():
        monkeypatch.setattr(load, k, v)
    before = sandbox.request_log()["by_kind"]
    bulk = fn()
    after = sandbox.request_log()["by_kind"]
    return rest, bulk, {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


IN_LISTS = {"SOQL_MAX_CHARS": 700, "SCAN_MAX_RATIO": 0}  # several IN-list jobs: a scan reads too much
SCAN = {"SOQL_MAX_CHARS": 700, "SCAN_MAX_RATIO": 1000}  # one job over every record with a key


@pytest.mark.parametrize("knobs", [IN_LISTS, SCAN], ids=["in-lists", "scan"])
def test_each_look_up_answers_as_the_rest_path(sandbox, hook, org, monkeypatch, knobs):
    events = org["events"] + [Envelope("Event", "calendar_entry-missing", {EXT: "calendar_entry-MISSING"}, EXT)]
    rest, bulk, calls = paths(sandbox, lambda: existing_external_ids(hook, events), monkeypatch, **knobs)
    assert rest == bulk and len(rest) == N
    # no REST query; with IN lists, the job over every record was refused unread (create, status) first
    assert "query" not in calls and calls.get("bulk2_query", 0) >= (3 if knobs is SCAN else 2 + 6), calls

    rels = org["relations"]
    idx = range(len(rels))
    rest, bulk, calls = paths(sandbox, lambda: resolve_external_ids(hook, "EventRelation", rels, idx), monkeypatch, **knobs)
    assert rest == bulk and set(rest) == {"Event.Clio_Id__c", "Contact:Relation.Clio_Id__c"}
    assert len(rest["Event.Clio_Id__c"]) == N and "CALENDAR_ENTRY-7@2026" in rest["Event.Clio_Id__c"]
    assert calls.get("bulk2_query", 0) >= 6, calls

    resolved = rest
    flat = [load.resolve_row(e, resolved)[0] for e in rels]
    fields = ("EventId", "RelationId")
    col = load.Column.parse("Event.Clio_Id__c")
    keys = [e.row["Event.Clio_Id__c"] for e in rels]
    rest, bulk, calls = paths(sandbox, lambda: _existing_natural_keys(hook, "EventRelation", fields, flat, (col, keys)),
                              monkeypatch, **knobs)
    assert rest == bulk and len(rest) >= len(rels) // 2, (len(rest), len(bulk))
    assert calls.get("bulk2_query", 0) >= 3, calls

    rest, bulk, calls = paths(sandbox, lambda: capture_before_images(hook, events), monkeypatch, **knobs)
    assert rest == bulk and len(rest) == N
    img = rest["calendar_entry-3@2026"]
    assert img["Description"] == 'notes, "quoted"\nsecond line' and img["IsAllDayEvent"] is False
    assert img["StartDateTime"].endswith("+0000") and rest["calendar_entry-4@2026"]["Description"] is None
    assert calls.get("bulk2_query", 0) >= 3, calls


def test_a_ledger_past_the_scan_limit_goes_straight_to_the_in_lists_with_the_same_answer(sandbox, hook, org,
                                                                                       monkeypatch):
    """At xl every EventRelation task first ran a query job over every relation with an event key, which
    the org answered only after reading them all (2M at the end) and which was then refused as too
    large, when the ledger already said so.  With ``written`` (the ledger's writes of the object) past
    ``SCAN_MAX_RATIO`` a key, no such job: the IN lists answer as the scan does."""
    rels = org["relations"]
    resolved = resolve_external_ids(hook, "EventRelation", rels, range(len(rels)))
    flat = [load.resolve_row(e, resolved)[0] for e in rels]
    fields = ("EventId", "RelationId")
    col = load.Column.parse("Event.Clio_Id__c")
    keys = [e.row["Event.Clio_Id__c"] for e in rels]
    monkeypatch.setattr(load, "BULK_LOOKUP_MIN", 5)
    monkeypatch.setattr(load, "SOQL_MAX_CHARS", 700)
    monkeypatch.setattr(load, "SCAN_MAX_RATIO", 1000)  # a scan may read all of them
    jobs: list[str] = []
    real = type(hook).bulk_query

    def spy(self, soql, **kw):
        jobs.append(soql)
        return real(self, soql, **kw)

    monkeypatch.setattr(type(hook), "bulk_query", spy)
    scanned = _existing_natural_keys(hook, "EventRelation", fields, flat, (col, keys), written=0)
    assert len(jobs) == 1 and "!= null" in jobs[0], jobs
    jobs.clear()
    past = 1000 * len(set(keys)) + 1
    listed = _existing_natural_keys(hook, "EventRelation", fields, flat, (col, keys), written=past)
    assert len(jobs) > 1 and all(" IN (" in j for j in jobs), jobs
    assert listed == scanned and len(listed) >= len(rels) // 2


def test_a_volume_load_through_query_jobs_inserts_only_what_is_missing(sandbox, hook, org, monkeypatch):
    monkeypatch.setattr(load, "BULK_LOOKUP_MIN", 5)
    monkeypatch.setattr(load, "SOQL_MAX_CHARS", 700)
    rels = org["relations"]
    before = sandbox.request_log()["by_kind"]
    first = load_rows(hook, rels, mode="bulk", sleep=lambda s: None)
    assert (first.created, first.skipped, first.failed) == (len(rels) - len(rels) // 2, len(rels) // 2, 0)
    again = load_rows(hook, rels, mode="bulk", sleep=lambda s: None)
    assert (again.created, again.skipped, again.failed) == (0, len(rels), 0)
    after = sandbox.request_log()["by_kind"]
    assert after.get("bulk2_query", 0) > before.get("bulk2_query", 0)
    assert hook.query_count("SELECT COUNT() FROM EventRelation WHERE Event.Clio_Id__c != null") == len(rels)


def test_before_images_of_few_records_take_one_rest_get_and_answer_as_the_rest_path(sandbox, hook, org, monkeypatch):
    """``few`` (the ledger says few records were written): the before-images of more keys than a query job
    pays for are one REST GET over every record with an external id, filtered to the rows asked for (one
    missing, one named in another case); the same answer as the REST path, no query job.  The code before
    ignored the hint: a query job of 3 calls."""
    events = org["events"] + [Envelope("Event", "calendar_entry-missing", {EXT: "calendar_entry-MISSING"}, EXT)]
    events[5] = Envelope("Event", events[5].source_system_id, {**events[5].row, EXT: "CALENDAR_ENTRY-5@2026"}, EXT)
    rest, few, calls = paths(sandbox, lambda: capture_before_images(hook, events, few=True), monkeypatch,
                             **SCAN)
    assert rest == few and len(rest) == N and "calendar_entry-5@2026" in few
    assert calls == {"query": 1}, calls
    # more records with one than QUERY_JOB_CALLS pages hold: that GET, then the query job as before
    def too_many(self, soql, *, max_pages):  # its GET, then the answer of a first page of a larger total
        next(type(hook).query_all_iter(self, soql))
        return None

    before = sandbox.request_log()["by_kind"]
    monkeypatch.setattr(type(hook), "query_upto", too_many)
    assert capture_before_images(hook, events, few=True) == rest
    after = sandbox.request_log()["by_kind"]
    assert after["query"] - before["query"] == 1 and after["bulk2_query"] - before["bulk2_query"] >= 3


def test_existing_keys_of_few_records_by_ids_take_one_rest_get_and_answer_as_the_in_lists(sandbox, hook, org,
                                                                                       monkeypatch):
    """A natural-key object whose rows give no parent-key column (CaseTeamMember: ``Case:Parent``) looks its
    existing keys up by the anchor's ids.  ``few`` (the ledger wrote few of the object): one REST GET over
    every record with one, filtered to the ids asked for (some in their 15-character form), instead of a
    GET per IN list; the same answer.  The code before ignored the hint there: 3 GETs."""
    rels = org["relations"]
    resolved = resolve_external_ids(hook, "EventRelation", rels, range(len(rels)))
    flat = [load.resolve_row(e, resolved)[0] for e in rels]
    flat = [{**r, "EventId": r["EventId"][:15]} if i % 7 == 0 else r for i, r in enumerate(flat)]
    fields = ("EventId", "RelationId")
    monkeypatch.setattr(load.soql_in_chunks, "__defaults__", (10, load.SOQL_IN_BUDGET))  # 30 events: 3 GETs

    def run(few):
        before = sandbox.request_log()["by_kind"]
        got = _existing_natural_keys(hook, "EventRelation", fields, flat, None, few=few)
        after = sandbox.request_log()["by_kind"]
        return got, {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}

    lists = len(list(load.soql_in_chunks(sorted({r["EventId"] for r in flat}))))
    by_lists, calls = run(False)
    assert lists > 1 and calls == {"query": lists} and len(by_lists) >= len(rels) // 2, (calls, len(by_lists))
    scanned, calls = run(N)
    assert scanned == by_lists
    assert calls == {"query": 1}, calls

    # more records with one than the pages allowed: that GET, then the IN lists as before
    def too_many(self, soql, *, max_pages):  # its GET, then the answer of a first page of a larger total
        next(type(hook).query_all_iter(self, soql))
        return None

    monkeypatch.setattr(type(hook), "query_upto", too_many)
    again, calls = run(N)
    assert again == by_lists and calls == {"query": 1 + lists}, calls
