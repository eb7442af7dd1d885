"""The verifier builds and compares one group of objects at a time (memory follows the largest group,
not the firm), and finds exactly what building the whole firm first finds."""

from __future__ import annotations

from clio2sf.verify import compare, readback, run, source
from tests.unit.sf_fake import FakeSF
from tests.unit.verify import good_data as g


def _defects() -> dict:
    """The good org with a defect of every kind, and records without an expectation whose Clio id
    belongs to a group compared before or after theirs."""
    org = g.org()
    org["Contact"][0]["Email"] = "changed@elsewhere.example"
    org["Clio_Billing__c"][0]["Case__c"] = None
    org["Task"] = []
    org["Account"].append({**org["Account"][0], "Id": "001000000000002AAA", "Clio_Id__c": "contact-99"})
    org["Account"].append({**org["Account"][0], "Id": "001000000000003AAA"})
    org["Account"].append({**org["Account"][0], "Id": "001000000000004AAA", "Clio_Id__c": "calendar_entry-100"})
    org["Event"].append({**org["Event"][0], "Id": "00U000000000009AAA", "Clio_Id__c": "contact-2"})
    org["Event"] = [e for e in org["Event"] if not e["Clio_Id__c"].endswith("@20240311")]
    org["CaseTeamMember"] = []
    return org


def _rows(result: compare.Result) -> list[tuple]:
    return sorted((f.sobject, f.key, f.field, f.check, str(f.expected), str(f.actual), f.status, f.reason)
                  for f in result.findings)


def test_one_group_at_a_time_finds_what_building_the_whole_firm_first_finds():
    org = _defects()
    exp = source.build(lambda n: g.raw().get(n, []), g.raw(), g.spec(), g.USERS, now=g.NOW)
    client = FakeSF(org, types=g.TYPES)
    rb = readback.read(client, compare.wanted_fields(exp))
    readback.read_users(client, rb)
    readback.read_links(client, rb, ["AccountContactRelation", "CaseTeamMember", "EventRelation"])
    whole = compare.compare(exp, rb, g.USERS, compare.Rejects(), now=g.NOW)

    by_group = g.verify(g.raw(), org)
    one_whole_group, _ = run.compare_groups(  # a delta window's way: one group, read whole
        FakeSF(org, types=g.TYPES), source.Builder(lambda n: g.raw().get(n, []), set(g.raw()), g.spec(), g.USERS, g.NOW),
        g.USERS, compare.Rejects(), whole=True, horizon_days=730, now=g.NOW, subset=False)

    assert _rows(one_whole_group) == _rows(whole) and one_whole_group.totals() == whole.totals()

    assert _rows(by_group) == _rows(whole) and by_group.totals() == whole.totals()
    assert {"value", "link", "exists", "exactly_once", "occurrences", "team"} <= {r[3] for r in _rows(whole)}
    reasons = {f.key: f.reason for f in by_group.findings if f.check == "exactly_once"}
    # a Clio id of a group compared after the Account's (the calendar) and before the Event's (contacts)
    assert reasons["calendar_entry-100"] == reasons["contact-2"] == compare.NOT_MAPPED_HERE
    assert reasons["contact-99"] == compare.NO_SOURCE


def test_groups_join_the_clio_objects_that_feed_one_sobject():
    builder = source.Builder(lambda n: [], {"activities", "tasks", "communications", "contacts", "calendar_entries",
                                            "bills", "users"}, g.spec(), g.USERS, g.NOW)
    assert sorted(builder.groups()) == [
        (("activities", "tasks", "communications"), ("Expense__c", "Task", "Time_Entry__c")),
        (("bills",), ("Clio_Billing__c",)),
        (("calendar_entries",), ("Event",)),
        (("contacts",), ("Account", "Contact")),
    ]


def test_each_group_is_compared_before_the_next_is_built():
    """A spy on the order of work: the raw records of one group are read, then its sobjects read back
    and compared, before any raw record of another group is read (the parents' compact views are
    read first). Building every object before comparing (the firm in memory) fails this."""
    log: list[tuple[str, str]] = []
    raw = g.raw()

    def read_raw(name):
        log.append(("raw", name))
        return raw.get(name, [])

    class Spy(FakeSF):
        def query_all_iter(self, soql):
            fields = soql.split(" FROM ")[0]
            if fields != f"SELECT Id, {readback.EXT}" and readback.EXT in fields:  # one sobject's fields
                log.append(("read", soql.split(" FROM ")[1].split()[0]))
            return super().query_all_iter(soql)

    builder = source.Builder(read_raw, set(raw), g.spec(), g.USERS, g.NOW)
    run.compare_groups(Spy(g.org(), types=g.TYPES), builder, g.USERS, compare.Rejects(), whole=False,
                       horizon_days=730, now=g.NOW, subset=False)
    spans = []
    for objects, sobjects in builder.groups():
        built = max(i for i, (what, name) in enumerate(log) if what == "raw" and name in objects)
        read = [i for i, (what, name) in enumerate(log) if what == "read" and name in sobjects]
        assert read, (objects, log)
        spans.append((built, max(read)))
    spans.sort()
    assert len(spans) >= 4
    assert all(end < start for (_, end), (start, _) in zip(spans, spans[1:], strict=False)), log


class _Described(FakeSF):
    """The fake org with each lookup's ``referenceTo`` in its describe (as Salesforce gives it)."""

    REFS = {"AccountId": ["Account"], "ContactId": ["Contact"], "WhatId": ["Case", "Account"], "Case__c": ["Case"],
            "Contact__c": ["Contact"], "Account__c": ["Account"], "RelationId": ["Contact", "User"],
            "OwnerId": ["User"], "ParentId": ["Case"], "MemberId": ["User"], "EventId": ["Event"]}

    def describe(self, sobject):
        out = super().describe(sobject)
        for f in out["fields"]:
            if f["type"] == "reference":
                f["referenceTo"] = self.REFS[f["name"]]
        return out


def test_only_the_objects_lookups_point_at_are_indexed_by_id_and_the_findings_are_the_same():
    """The Id index (kept across groups) holds the parents lookups point at, not e.g. the calendar's
    occurrences or the tasks: on an org with every kind of defect (a lookup pointing nowhere, an
    attendee missing, ...) the findings are those of indexing everything."""
    org = _defects()
    org["Event"][0]["WhatId"] = g.ACC  # a lookup that points at another record than its Clio parent's
    everything = g.verify(g.raw(), org)  # FakeSF's describe has no referenceTo: every object indexed
    builder = source.Builder(lambda n: g.raw().get(n, []), set(g.raw()), g.spec(), g.USERS, g.NOW)
    parents, rb = run.compare_groups(_Described(org, types=g.TYPES), builder, g.USERS, compare.Rejects(), whole=False,
                                     horizon_days=730, now=g.NOW, subset=False)
    assert _rows(parents) == _rows(everything) and parents.totals() == everything.totals()
    assert any(f.check == "link" and f.key == "calendar_entry-100" and f.actual == "contact-1" for f in parents.findings)
    assert rb.indexed == {"Account", "Contact", "Case"}
    assert {so for so, _ in rb.by_id.values()} == {"Account", "Contact", "Case", "User"}


def test_clio_ids_are_held_as_numbers_per_kind_and_found_exactly():
    ids = compare.ClioIds()
    ids.update(["contact-12", "contact-3", "calendar_entry-100", "odd-id", "contact-007", "x-0"])
    ids.update(["contact-5"])
    assert all(s in ids for s in ["contact-12", "contact-3", "contact-5", "calendar_entry-100", "odd-id",
                                  "contact-007", "x-0"])
    assert not any(s in ids for s in ["contact-7", "contact-4", "matter-12", "contact-12x", "odd", "calendar-100",
                                      "contact-0012", "entry-100"])
    assert list(ids.numbers["contact"]) == [3, 5, 12] and ids.text == {"odd-id", "contact-007"}


def _big_firm() -> tuple[dict, dict]:
    """The good firm with 24 more tasks and 12 people without a company (the individual-client
    Account is derived from them), and an org with a defect of every kind among them."""
    raw, org = g.raw(), _defects()
    org["Task"] = [{**g.org()["Task"][0]}]
    for n in range(300, 324):
        raw["tasks"].append({**raw["tasks"][0], "source_system_id": f"task-{n}", "clio_id": n,
                             "data": {**raw["tasks"][0]["data"], "id": n}})
        org["Task"].append({**org["Task"][0], "Id": f"00T000000000{n}AAA", "Clio_Id__c": f"task-{n}"})
    for n in range(400, 412):
        raw["contacts"].append({**raw["contacts"][1], "source_system_id": f"contact-{n}", "clio_id": n,
                                "data": {**raw["contacts"][1]["data"], "id": n, "company": None}})
        org["Contact"].append({**org["Contact"][0], "Id": f"003000000000{n}AAA", "Clio_Id__c": f"contact-{n}"})
    del org["Task"][3]                                      # a lost task (task-302)
    org["Task"][4]["Subject"] = "Changed"                   # a changed value
    org["Task"][5]["Clio_Id__c"] = "TASK-305"               # its Clio id in another case
    org["Task"].append({**org["Task"][6], "Id": "00T000000000900AAA"})  # a task twice
    org["Task"].append({**org["Task"][0], "Id": "00T000000000901AAA", "Clio_Id__c": "task-999"})  # no source
    org["Task"].append({**org["Task"][0], "Id": "00T000000000902AAA", "Clio_Id__c": "contact-401"})  # another's id
    return raw, org


def test_a_group_over_the_cap_is_never_built_whole_and_its_parts_find_what_the_whole_finds():
    """A group with more records than the cap (expected, or in the org: the calendar's occurrences)
    is built and compared in parts (by the Clio number's last digits): no build holds the whole group, and
    the findings, reasons, totals, per-object counts and notes are those of the group built whole."""
    raw, org = _big_firm()
    builds: list[tuple[tuple[str, ...], int, int]] = []

    class Spy(source.Builder):
        def build(self, objects, part=source.WHOLE):
            exp = super().build(objects, part)
            builds.append((tuple(objects), part.count, len(exp.records) + len(exp.series)))
            return exp

        def build_parts(self, objects, count, flush=5_000):  # every part in one pass: a part's size over its pieces
            held: dict[int, int] = {}
            for index, exp in super().build_parts(objects, count, flush):
                held[index] = held.get(index, 0) + len(exp.records) + len(exp.series)
                yield index, exp
            builds.extend((tuple(objects), count, n) for n in held.values())

    def verify(cap):
        builds.clear()
        builder = Spy(lambda n: raw.get(n, []), set(raw), g.spec(), g.USERS, g.NOW)
        return run.compare_groups(_Described(org, types=g.TYPES), builder, g.USERS,
                                  compare.Rejects.from_lines([{"source_system_id": "task-302", "rule": "r", "message": "m"}]),
                                  whole=False, horizon_days=730, now=g.NOW, subset=False, cap=cap)[0]

    whole = verify(10**6)
    assert all(count == 1 for _, count, _ in builds)
    sizes = {objects: n for objects, _, n in builds}
    parts = verify(3)
    assert _rows(parts) == _rows(whole) and parts.totals() == whole.totals() and parts.notes == whole.notes
    assert (parts.records, parts.fields, parts.matches) == (whole.records, whole.fields, whole.matches)
    checks = {(f.check, f.status) for f in whole.findings}
    assert {("exists", "mismatch"), ("exists", "explained"), ("value", "mismatch"), ("exactly_once", "mismatch"),
            ("occurrences", "mismatch"), ("link", "mismatch"), ("team", "mismatch")} <= checks, checks
    assert {f.key for f in whole.findings if f.check == "exactly_once"} >= {"task-999", "contact-401", "task-306",
                                                                            "TASK-305"}
    # over the cap of 3: 25 tasks, 14 contacts (+ the derived Account), 4 Events in the org (2 entries)
    for objects in [("tasks",), ("contacts",), ("calendar_entries",)]:
        mine = [(count, n) for o, count, n in builds if o == objects]
        assert mine and all(count > 1 for count, _ in mine), (objects, mine)  # never built whole
        assert sum(n for _, n in mine) == sizes[objects]  # each record built once (before lane 35a: twice)
        if sizes[objects] > 3:
            assert max(n for _, n in mine) < sizes[objects]
    assert all(count == 1 for o, count, _ in builds if o in {("matters",), ("bills",)})  # under the cap: whole


def test_a_group_in_parts_is_built_once_from_one_read_of_its_raw_records():
    """A group in parts (a cap of 3: tasks, contacts and the calendar in parts) reads each of its Clio
    objects' raw batches once and builds each record's expectations once (before lane 35a: a pass over
    the parts for what the group asks of the org, then each part built again to compare it, every
    build reading the group's raw records whole: 2 x parts reads and 2 builds of every record). The
    parents' views and the edited occurrences are read once for the firm, before any group."""
    raw, org = _big_firm()
    reads: dict[str, int] = {}
    built: dict[tuple[str, str], int] = {}

    def read_raw(name):
        reads[name] = reads.get(name, 0) + 1
        return raw.get(name, [])

    class Counted(source.Builder):
        def base(self, sobject, key, env, obj):
            built[(sobject, key)] = built.get((sobject, key), 0) + 1
            return super().base(sobject, key, env, obj)

    builder = Counted(read_raw, set(raw), g.spec(), g.USERS, g.NOW, sizes=lambda n: len(raw.get(n, [])))
    builder.index_parents()
    assert builder.edited is not None  # read once for the firm (kept across groups)
    reads.clear()
    parted: list[int] = []
    compare_parts = run.compare_parts
    run.compare_parts = lambda *a: (parted.append(a[-1]), compare_parts(*a))[1]
    try:
        result, _ = run.compare_groups(_Described(org, types=g.TYPES), builder, g.USERS, compare.Rejects(),
                                       whole=False, horizon_days=730, now=g.NOW, subset=False, cap=3)
    finally:
        run.compare_parts = compare_parts
    assert len(parted) >= 3 and max(parted) > 3  # tasks, contacts and the calendar were compared in parts
    assert reads == {name: 1 for name in source.ROUTED if name in raw}, reads
    assert built and set(built.values()) == {1}, {k: n for k, n in built.items() if n != 1}
    assert set(builder.passes.values()) == {1} and len(builder.passes) == len(builder.groups())
    whole = g.verify(raw, org)  # the same findings as every group built whole
    assert _rows(result) == _rows(whole) and result.totals() == whole.totals() and result.notes == whole.notes


def test_the_parts_built_in_one_pass_are_the_parts_built_one_at_a_time_and_held_a_piece_at_a_time():
    """``Builder.build_parts``: every part of a group in one pass, handed out in pieces of about ``flush``
    records or occurrence starts (what the pass holds); a part's pieces joined are that part built alone
    (records in the same order, the derived individual-client Account in its part, notes and their raw
    positions, Clio ids, series, team members, attendees, account relations)."""
    raw, _ = _big_firm()
    builder = source.Builder(lambda n: raw.get(n, []), set(raw), g.spec(), g.USERS, g.NOW)
    for objects in [("tasks",), ("contacts",), ("calendar_entries",), ("matters",)]:
        for count in (1, 3, 7):
            pieces: dict[int, source.Expectations] = {}
            for index, piece in builder.build_parts(objects, count, flush=4):
                # handed out once the pieces hold 4: at most 3 and the last record's (a series: its starts)
                last = max((len(s["starts"]) for s in piece.series.values()), default=1)
                assert piece.size() <= 3 + last, (objects, count, piece.size())
                pieces.setdefault(index, source.Expectations()).extend(piece)
            for index in range(count):
                alone = builder.build(objects, source.Part(index, count))
                joined = pieces.get(index, source.Expectations())
                assert list(joined.records) == list(alone.records), (objects, count, index)
                assert joined == alone, (objects, count, index)
            if objects == ("contacts",):  # people without a company: the derived Account, in its own part
                assert [i for i, p in pieces.items() if ("Account", builder.individual) in p.records] == \
                    [source.Part(0, count).of(builder.individual)]


def test_a_group_in_parts_reads_each_table_of_the_org_once_and_finds_what_the_whole_finds():
    """Every group in parts (a cap of 1): each sobject's fields and each team member / event relation
    table are read from the org once for the group (and spooled to a file per part), not once a part
    (before: a ``LIKE`` on the Clio id's endings of the sobject and the relation tables whole for every
    part: the reads grew with the square of the group; at xl the calendar's 50 parts read 2.0M
    EventRelation rows 50 times). Seeded defects of every kind, attendees and team members included,
    are found as when each group is compared whole; no spool file is left."""
    raw, org = _big_firm()
    org["EventRelation"] = [r for r in org["EventRelation"] if r["RelationId"] != g.ANN]  # an attendee lost
    org["EventRelation"].append({"Id": "0RE000000000077AAA", "EventId": g.EV, "RelationId": "003000000000401AAA"})
    org["CaseTeamMember"] = [{"Id": "0B6000000000002AAA", "ParentId": g.CASE, "MemberId": "005000000000077AAA"}]

    def verify(cap):
        client = _Described(org, types=g.TYPES)
        builder = source.Builder(lambda n: raw.get(n, []), set(raw), g.spec(), g.USERS, g.NOW)
        result, rb = run.compare_groups(client, builder, g.USERS, compare.Rejects(), whole=False, horizon_days=730,
                                        now=g.NOW, subset=False, cap=cap)
        reads: dict[str, int] = {}
        for soql in client.queries:
            cols, sobject = soql.split(" FROM ")[0], soql.split(" FROM ")[1].split()[0]
            if cols != "SELECT Id, Clio_Id__c":  # the index (its own read of Ids, once per sobject)
                reads[sobject] = reads.get(sobject, 0) + 1
        return result, reads, rb

    whole, whole_reads, _ = verify(10**6)
    parts, reads, rb = verify(1)
    assert _rows(parts) == _rows(whole) and parts.totals() == whole.totals() and parts.notes == whole.notes
    checks = {(f.check, f.key) for f in parts.findings}
    assert {("attendees", f"calendar_entry-100#user:{g.ANN[:15]}"), ("attendees", "calendar_entry-100#contact-401"),
            ("team", f"matter-10#{g.ANN[:15]}")} <= checks, checks
    assert all(n == 1 for n in reads.values()) and reads == whole_reads, reads
    assert {"Task", "Event", "EventRelation", "CaseTeamMember"} <= set(reads)
    assert not rb.spools


def test_distinct_clio_ids_and_duplicates_are_counted_from_hashes_exactly(monkeypatch):
    """The index keeps a hash of each Clio id, not the ids: with every hash colliding or not, in one
    bucket or many, the distinct count and each duplicate (in the org's order, once each time seen
    again) are those of the ids themselves."""
    org = _big_firm()[1]
    org["Task"].append({**org["Task"][6], "Id": "00T000000000903AAA"})  # task-306 a third time
    org["Task"].append({**org["Task"][2], "Id": "00T000000000904AAA"})  # task-301 twice

    def counted():
        rb = readback.index(FakeSF(org, types=g.TYPES), ["Task", "Account", "Contact"], ids=False)
        return rb.sizes, dict(rb.duplicates), rb.queries

    sizes, dups, queries = counted()
    assert dups == {"Task": ["task-306", "task-306", "task-301"], "Account": ["contact-1"]}
    assert sizes == {"Task": len({t["Clio_Id__c"] for t in org["Task"]}), "Account": 3, "Contact": 13}
    for bucket, hashed in [(2, hash), (1, len), (3, lambda key: 7)]:
        monkeypatch.setattr(readback, "BUCKET", bucket)
        monkeypatch.setattr(readback, "_hash", hashed)
        assert counted()[:2] == (sizes, dups), (bucket, hashed)
    assert queries == 3 + 2  # the sobjects with a hash seen twice read again (their ids decide): Task, Account
    assert counted()[2] == 3 + 3  # every hash the same: every sobject read again


def test_every_clio_id_is_in_one_part_and_its_rows_are_spooled_to_that_part():
    keys = ["task-305", "TASK-305", "task-5", "task-1000", "calendar_entry-15@20240306", "calendar_entry-3@20240315",
            "document-42@v3", "matter-7#005000000000001", "individual-client-account", "contact-\u0663\u0663", "x-",
            "contact-12345678901234567890", "a@b#c", "a#b@c"]
    for count in (1, 2, 3, 7, 10, 11, 40, 101):
        parts = [source.Part(i, count) for i in range(count)]
        assert all(sum(k in p for p in parts) == 1 for k in keys), count
        assert all(k in parts[parts[0].of(k)] for k in keys), count  # ``of`` names the part a key is in
        assert [p for p in parts if "TASK-305" in p] == [p for p in parts if "task-305" in p]  # no case in digits
        spool = readback.Spool(count)
        spool.BUFFER = 3  # flushed in several batches
        try:
            spool.fill((parts[0].of(k), {"Clio_Id__c": k, "n": n}) for n, k in enumerate(keys))
            for part in parts:  # each part's file holds its records, in the org's order
                assert [r["Clio_Id__c"] for r in spool.read(part.index)] == [k for k in keys if k in part], (count, part)
        finally:
            spool.close()
        assert spool.dir is None
    assert source.Part(0, 3).endings() is None and source.Part(1, 3).endings() == ["1", "4", "7"]


def test_the_number_of_parts_keeps_the_largest_under_the_cap():
    numbers = range(100, 3300)
    raw = {"tasks": [{"source_system_id": f"task-{n}", "data": {"id": n}} for n in numbers]}
    builder = source.Builder(lambda n: raw.get(n, []), set(raw), g.spec(), g.USERS, g.NOW)
    for cap, parts in [(4_000, 1), (1_600, 2), (1_000, 4), (400, 10), (300, 12)]:
        count = run.parts_of(builder, ("tasks",), ("Task",), readback.ReadBack(), cap)
        largest = max(sum(f"task-{n}" in source.Part(i, count) for n in numbers) for i in range(count))
        assert (count, largest <= cap) == (parts, True), (cap, count, largest)


def _outside_the_sample(org: dict, copies: int) -> dict:
    """``org`` with ``copies`` more of its matter (with a team member) and of its calendar entry (with two
    relations): records of the firm outside a sample, as after the full load."""
    org = {k: [dict(r) for r in v] for k, v in org.items()}
    case, event = org["Case"][0], org["Event"][0]
    for i in range(1, copies + 1):
        case_id, event_id = f"500Z{i:011d}AAA", f"00UZ{i:011d}AAA"  # 15 characters of their own
        org["Case"].append({**case, "Id": case_id, "Clio_Id__c": f"matter-{1000 + i}"})
        org["CaseTeamMember"].append({"Id": f"0B6Z{i:011d}AAA", "ParentId": case_id, "MemberId": g.ANN})
        org["Event"].append({**event, "Id": event_id, "Clio_Id__c": f"calendar_entry-{1000 + i}"})
        org["EventRelation"] += [{"Id": f"0REY{i:011d}AAA", "EventId": event_id, "RelationId": g.ANN},
                                 {"Id": f"0REZ{i:011d}AAA", "EventId": event_id, "RelationId": g.CON}]
    return org


def test_a_subset_holds_the_links_and_parts_of_its_own_records_not_the_orgs(monkeypatch):
    """The sample (``subset``): the team members and event relations held are those of the sample's
    matters and entries (before: every row of the org's tables, as after a full load: memory followed
    the org), and its parts follow its own records, not the org's (before: an org over the cap split
    the sample's groups into parts, each reading the link tables again). The findings are those of
    an org holding only the sample."""
    held: list[set[str]] = []
    read_links = readback.read_links

    def spy(client, rb, sobjects, parents=None, keys=None):
        read_links(client, rb, sobjects, parents, keys)
        held.append(set(rb.team) | set(rb.relations))

    built: list[int] = []
    build = source.Builder.build
    monkeypatch.setattr(readback, "read_links", spy)
    monkeypatch.setattr(source.Builder, "build", lambda self, objects, part=source.WHOLE: (
        built.append(part.count), build(self, objects, part))[1])

    def findings(org: dict, cap: int | None = None) -> compare.Result:
        held.clear()
        built.clear()
        builder = source.Builder(lambda n: g.raw().get(n, []), set(g.raw()), g.spec(), g.USERS, g.NOW)
        return run.compare_groups(FakeSF(org, types=g.TYPES), builder, g.USERS, compare.Rejects(), whole=False,
                                  horizon_days=730, now=g.NOW, subset=True, cap=cap)[0]

    alone = findings(g.org())
    sample_parents = {readback.short(r["Id"]) for so in ("Case", "Event") for r in g.org()[so]}
    firm = _outside_the_sample(g.org(), 40)
    among = findings(firm, cap=20)
    assert _rows(among) == _rows(alone) and among.totals() == alone.totals()
    assert held and all(parents <= sample_parents for parents in held), held
    assert built and set(built) == {1}  # the sample's groups are under the cap: built whole, once each


def test_a_subsets_id_index_holds_its_own_parents_not_the_orgs_and_finds_what_the_whole_index_finds(monkeypatch):
    """The sample (``subset``) in an org holding the firm: the Id index of the objects lookups point at
    holds the records the sample's lookups and attendees are expected to point at (before: every
    Account, Contact and Case of the org, as after a full load: memory followed the org). A lookup and an
    attendee pointing at a record outside the sample are read by Id and reported by its Clio id: the
    findings are those of indexing the org's whole tables, with or without ``referenceTo``."""
    firm = _outside_the_sample(g.org(), 40)
    for i in range(1, 41):
        firm["Account"].append({**firm["Account"][0], "Id": f"001Z{i:011d}AAA", "Clio_Id__c": f"contact-{2000 + i}"})
        firm["Contact"].append({**firm["Contact"][0], "Id": f"003Z{i:011d}AAA", "Clio_Id__c": f"contact-{3000 + i}"})
    firm["Clio_Billing__c"][0]["Case__c"] = "500Z00000000001AAA"  # a case outside the sample (matter-1001)
    firm["EventRelation"].append({"Id": "0RE000000000009AAA", "EventId": g.EV, "RelationId": "003Z00000000002AAA"})
    firm["Case"][0]["AccountId"] = "001000000000404AAA"  # an Id of no record

    def findings(org_class, whole_index: bool, cap: int | None = None):
        if whole_index:
            monkeypatch.setattr(readback, "scope", lambda client, rb: None, raising=False)  # as before: the org's tables indexed
        else:
            monkeypatch.undo()
        builder = source.Builder(lambda n: g.raw().get(n, []), set(g.raw()), g.spec(), g.USERS, g.NOW)
        return run.compare_groups(org_class(firm, types=g.TYPES), builder, g.USERS, compare.Rejects(), whole=False,
                                  horizon_days=730, now=g.NOW, subset=True, cap=cap)

    for org_class in (FakeSF, _Described):
        whole, whole_rb = findings(org_class, whole_index=True)
        scoped, rb = findings(org_class, whole_index=False)
        assert _rows(scoped) == _rows(whole) and scoped.totals() == whole.totals(), org_class
        assert any(f.check == "link" and f.field == "Case__c" and f.actual == "matter-1001" for f in scoped.findings)
        assert any(f.check == "attendees" and f.actual == "contact-3002" for f in scoped.findings)
        assert any(f.check == "link" and f.field == "AccountId" and f.actual == "001000000000404AAA"
                   for f in scoped.findings)
        held = {key for so, key in rb.by_id.values() if so != "User"}
        assert held <= {"contact-1", "contact-2", "matter-10", "matter-1001", "contact-3002"}, held
        assert len({key for so, key in whole_rb.by_id.values() if so != "User"}) >= 120  # the org's tables
        in_parts, parts_rb = findings(org_class, whole_index=False, cap=1)  # every group in parts (compare_parts)
        assert _rows(in_parts) == _rows(whole) and in_parts.totals() == whole.totals(), org_class
        assert {key for so, key in parts_rb.by_id.values() if so != "User"} <= held
