"""Expectations derived from raw Clio records and the spec (no transform involved)."""

from __future__ import annotations

from clio2sf.verify import source
from tests.unit.sf_fake import FakeSF
from tests.unit.verify import good_data as g


def _build(raw, context=None):
    return source.build(lambda n: raw.get(n, []), raw, g.spec(), g.USERS, now=g.NOW, context=context)


def test_a_delta_window_reads_parents_from_the_whole_extraction():
    full = g.raw()
    window = {"matters": full["matters"]}  # the matter changed; its client (a person of Acme) did not
    alone = _build(window).records[("Case", "matter-10")]
    assert alone.links["ContactId"][0] == "contact-2" and "AccountId" not in alone.links
    with_context = _build(window, context=lambda n: full.get(n, [])).records[("Case", "matter-10")]
    assert with_context.links["AccountId"][0] == "contact-1"
    assert ("Contact", "contact-2") not in _build(window, context=lambda n: full.get(n, [])).records


def test_recurrence_follows_rfc5545_and_local_time():
    exp = _build(g.raw())
    starts = [s.isoformat() for s in exp.series["calendar_entry-101"]["starts"]]
    assert starts == ["2024-03-06T09:00:00-05:00", "2024-03-11T09:00:00-04:00", "2024-03-18T09:00:00-04:00"]


def test_the_owner_of_a_calendar_entry_is_the_user_of_its_calendar():
    owner = _build(g.raw()).records[("Event", "calendar_entry-100")].owner
    assert owner.clio_user == "1001" and owner.path == "calendar_owner"


def test_a_rule_with_until_in_utc_expands():
    """UNTIL=...Z (UTC, as RFC 5545 requires with a zoned DTSTART) does not make the entry unexpandable."""
    raw = g.raw()
    raw["calendar_entries"][1]["data"].update(start_at="2024-03-06T09:00:00-05:00", end_at="2024-03-06T10:00:00-05:00",
                                              recurrence_rule="FREQ=WEEKLY;BYDAY=MO;UNTIL=20240319T000000Z")
    exp = _build(raw)
    assert [s.date().isoformat() for s in exp.series["calendar_entry-101"]["starts"]] == [
        "2024-03-06", "2024-03-11", "2024-03-18"]
    assert exp.records.get(("Event", "calendar_entry-101")) is None  # a series, not a rejected entry


def test_an_open_all_day_series_is_compared_up_to_the_horizon_only():
    """The load expanded an open series up to its own horizon (its 'now' + recurrence_horizon_days): an
    all-day occurrence in the last days before that horizon is not an unexpected record."""
    from datetime import timedelta

    from clio2sf.verify import compare, readback

    raw = g.raw()
    raw["calendar_entries"] = [raw["calendar_entries"][1]]
    raw["calendar_entries"][0]["data"].update(all_day=True, recurrence_rule="FREQ=DAILY",
                                              start_at="2024-05-01T00:00:00-04:00", end_at="2024-05-02T00:00:00-04:00")
    horizon = g.NOW + timedelta(days=730)
    org = {**g.org(), "Event": [
        {"Id": f"00U0000000000{i:02d}AAA", "Clio_Id__c": f"calendar_entry-101@{d}", "ActivityDate": d,
         "IsAllDayEvent": True, "Subject": "Weekly", "WhatId": g.CASE, "OwnerId": g.ANN}
        for i, d in enumerate([(horizon - timedelta(days=2)).date().isoformat()])]}
    exp = _build(raw)
    rb = readback.read(FakeSF(org, types=g.TYPES),
                       compare.wanted_fields(exp))
    result = compare.compare(exp, rb, g.USERS, compare.Rejects(), now=g.NOW)
    assert not [f for f in result.unexplained() if f.check == "occurrences" and f.actual], result.unexplained()[:3]
    # an occurrence well inside the window that the rule does not give is still caught
    org["Event"][0].update(Clio_Id__c="calendar_entry-101@x", ActivityDate="2024-04-30")
    rb = readback.read(FakeSF(org, types=g.TYPES),
                       compare.wanted_fields(exp))
    result = compare.compare(exp, rb, g.USERS, compare.Rejects(), now=g.NOW)
    assert any(f.check == "occurrences" and f.actual == "2024-04-30" for f in result.unexplained())


def test_reading_back_one_sobject_at_a_time_finds_what_reading_all_finds():
    """verify_migration reads the org by object (each record compared as it is read, one sobject after
    another, none held): on an org
    with defects of every kind (a value, a link, a lost record, a record without a source, a duplicate,
    a lost occurrence, a lost team member) it reports exactly what the whole read reports."""
    from clio2sf.verify import compare, readback

    org = g.org()
    org["Contact"][0]["Email"] = "changed@elsewhere.example"
    org["Clio_Billing__c"][0]["Case__c"] = None
    org["Task"] = []
    org["Account"].append({**org["Account"][0], "Id": "001000000000002AAA", "Clio_Id__c": "contact-99"})
    org["Account"].append({**org["Account"][0], "Id": "001000000000003AAA"})
    org["Event"] = [e for e in org["Event"] if not e["Clio_Id__c"].endswith("@20240311")]
    org["CaseTeamMember"] = []
    exp = _build(g.raw())

    def findings(by_object):
        client = FakeSF(org, types=g.TYPES)
        rb = readback.read(client, compare.wanted_fields(exp), by_object=by_object)
        readback.read_users(client, rb)
        readback.read_links(client, rb, ["CaseTeamMember", "EventRelation"])
        held = []
        if by_object:
            stream = rb.loader

            def spy(sobject):
                for row in stream(sobject):
                    held.append((sobject, sum(len(v) for v in rb.records.values())))
                    yield row
            rb.loader = spy
        result = compare.compare(exp, rb, g.USERS, compare.Rejects(), now=g.NOW)
        rows = sorted((f.sobject, f.key, f.field, f.check, str(f.expected), str(f.actual), f.status) for f in result.findings)
        return rows, result.totals(), held, rb

    whole, totals, _, _ = findings(False)
    by_object, totals_by_object, held, rb = findings(True)
    assert by_object == whole and totals_by_object == totals
    checks = {r[3] for r in whole}
    assert {"value", "link", "exists", "exactly_once", "occurrences", "team"} <= checks, checks
    assert any(r[5] == "duplicates" for r in whole)
    assert held and all(n == 0 for _, n in held), held  # each record compared as it is read, none held
    streamed = [so for so, _ in held]
    assert len({so for so in streamed}) == len([so for i, so in enumerate(streamed) if i == 0 or streamed[i - 1] != so])
    assert not any(rb.records.values())  # and none left after
    assert not exp.records  # each sobject's expectations dropped once compared
