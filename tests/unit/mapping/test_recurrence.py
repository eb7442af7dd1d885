"""RFC 5545 expansion: DTSTART is always the first instance, and counts toward COUNT."""

from __future__ import annotations

import copy
import random
import re
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from clio2sf import staging
from clio2sf.mapping import recurrence
from clio2sf.mapping.recurrence import occurrences
from clio2sf.mapping.spec import MappingSpec
from clio2sf.mapping.transform import transform_object
from clio2sf.mapping.users import UserMap
from clio2sf.pipeline import _scalar_finite_row

from .conftest import by_sid, envelopes, lookup_all, run

pytestmark = pytest.mark.unit

NY = ZoneInfo("America/New_York")
HORIZON = datetime(2025, 1, 1, tzinfo=UTC)


def _dates(start: datetime, rule: str) -> list[str]:
    return [o.date().isoformat() for o in occurrences(start, rule, tz=NY, horizon=HORIZON, max_count=50)]


def test_start_off_the_byday_rule_is_the_first_occurrence():
    # Tuesday 5 March 2024, rule on Mondays: 5 March, then the Mondays
    start = datetime(2024, 3, 5, 10, tzinfo=NY)
    assert _dates(start, "FREQ=WEEKLY;BYDAY=MO;UNTIL=20240320T000000Z") == ["2024-03-05", "2024-03-11", "2024-03-18"]


def test_start_off_the_bymonthday_rule_counts_toward_count():
    start = datetime(2024, 1, 20, 9, tzinfo=NY)
    assert _dates(start, "FREQ=MONTHLY;BYMONTHDAY=1;COUNT=3") == ["2024-01-20", "2024-02-01", "2024-03-01"]


def test_start_on_the_rule_is_not_repeated():
    start = datetime(2024, 3, 4, 10, tzinfo=NY)  # a Monday
    assert _dates(start, "FREQ=WEEKLY;BYDAY=MO;COUNT=3") == ["2024-03-04", "2024-03-11", "2024-03-18"]


def test_count_one_off_rule_is_just_the_start():
    start = datetime(2024, 3, 5, 10, tzinfo=NY)
    assert _dates(start, "FREQ=WEEKLY;BYDAY=MO;COUNT=1") == ["2024-03-05"]


def test_transform_keeps_the_first_occurrence_of_an_off_rule_series(spec, users):
    item = envelopes("calendar_entries")[0]
    item["data"]["start_at"], item["data"]["end_at"] = "2024-03-05T10:00:00-05:00", "2024-03-05T11:00:00-05:00"
    rows, _ = run("calendar_entries", spec, users, items=[item], lookup={})
    events = sorted(k for k in by_sid([r for r in rows if r["sobject"] == "Event"]))
    assert events[0] == "calendar_entry-40@20240305T150000Z"


def test_a_start_with_sub_seconds_is_not_doubled():
    # Clio start_at with microseconds: dateutil drops them; the start must not come twice
    start = datetime(2024, 1, 15, 0, 0, 0, 398392, tzinfo=NY)
    assert _dates(start, "FREQ=DAILY;INTERVAL=1;COUNT=3") == ["2024-01-15", "2024-01-16", "2024-01-17"]


# --- the rules Clio writes, expanded without dateutil (recurrence.SimpleRule), against dateutil's ---------

_ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "America/Sao_Paulo", "Asia/Kolkata", "UTC",
          "Pacific/Chatham", "America/St_Johns"]
_DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


def _dateutil_only(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recurrence, "simple_rule", lambda body, dtstart: None)


def _generated_cases(n: int, seed: int) -> list[tuple[datetime, str, str]]:
    """(local start, zone name, rule) of n generated series: starts near daylight-saving changes (2 a.m. and
    1 a.m. on the days they happen), on month ends and 29 February, with sub-seconds; FREQ=DAILY/WEEKLY/MONTHLY
    with or without INTERVAL, BYDAY / BYMONTHDAY, COUNT or UNTIL (on an instance, a second either side,
    a date only, in UTC or before the start), and shapes only dateutil expands (which must still agree)."""
    rnd = random.Random(seed)
    special = [(2024, 3, 10), (2024, 11, 3), (2024, 3, 31), (2024, 10, 27), (2024, 4, 7), (2024, 10, 6),
               (2024, 1, 31), (2024, 2, 29), (2023, 2, 28), (2024, 8, 31), (2024, 12, 31), (2023, 12, 30),
               (2025, 3, 9), (2100, 2, 28), (2000, 2, 29)]
    cases = []
    for _ in range(n):
        if rnd.random() < 0.5:
            y, mo, d = rnd.choice(special)
        else:
            y, mo = rnd.randint(2023, 2026), rnd.randint(1, 12)
            d = rnd.randint(1, recurrence._month_len(y, mo))
        hour = rnd.choice([0, 1, 2, 2, 3, 9, 12, 23])
        start = datetime(y, mo, d, hour, rnd.choice([0, 30, 59]), rnd.choice([0, 0, 59]),
                         rnd.choice([0, 0, 165017]))
        zone_name = rnd.choice(_ZONES)
        freq = rnd.choice(["DAILY", "WEEKLY", "MONTHLY", "MONTHLY", "WEEKLY"])
        parts = [f"FREQ={freq}"]
        if rnd.random() < 0.7:
            parts.append(f"INTERVAL={rnd.choice([1, 1, 2, 3, 5, 12])}")
        if freq == "WEEKLY" and rnd.random() < 0.8:
            parts.append("BYDAY=" + ",".join(rnd.sample(_DAYS, rnd.randint(1, 4))))
        if freq == "MONTHLY" and rnd.random() < 0.8:
            parts.append("BYMONTHDAY=" + ",".join(str(rnd.choice([1, 15, 28, 29, 30, 31, rnd.randint(1, 31)]))
                                                  for _ in range(rnd.randint(1, 3))))
        end = rnd.random()
        if end < 0.35:
            parts.append(f"COUNT={rnd.choice([1, 2, 3, 10, 40])}")
        elif end < 0.8:
            until = start + timedelta(days=rnd.choice([0, 1, 6, 7, 30, 31, 60, 365, -3]),
                                      seconds=rnd.choice([0, 0, 1, -1]))
            form = rnd.choice(["%Y%m%dT%H%M%S", "%Y%m%dT%H%M%SZ", "%Y%m%d"])
            parts.append("UNTIL=" + until.strftime(form))
        if rnd.random() < 0.05:  # shapes SimpleRule leaves to dateutil
            parts.append(rnd.choice(["WKST=SU", "BYDAY=1MO", "BYMONTHDAY=-1", "BYHOUR=9", "COUNT=0"]))
        rnd.shuffle(parts)
        cases.append((start, zone_name, ";".join(parts)))
    return cases


def _expand(start: datetime, zone_name: str, rule: str) -> list[datetime] | str:
    tz = ZoneInfo(zone_name)
    try:
        return list(occurrences(start.replace(tzinfo=tz), rule, tz=tz, horizon=datetime(2027, 6, 1, tzinfo=UTC),
                                max_count=120, exclude_local_dates={date(2024, 3, 11)}))
    except recurrence.BadRecurrence as exc:
        return f"BadRecurrence: {exc}"


def test_the_rules_clio_writes_expand_as_dateutil_expands_them(monkeypatch):
    cases = _generated_cases(3000, seed=20)
    ours = [_expand(*case) for case in cases]
    assert sum(recurrence.simple_rule(rule.replace("Z", ""), start) is not None
               for start, _, rule in cases) > 2000  # most of them take the path under test
    _dateutil_only(monkeypatch)
    theirs = [_expand(*case) for case in cases]
    for case, a, b in zip(cases, ours, theirs, strict=True):
        assert a == b, case
        # the same instants and the same zone (an occurrence's offset is what its row says)
        assert [str(o) for o in a] == [str(o) for o in b] if isinstance(a, list) else True, case


@pytest.mark.parametrize("start, rule", [
    (datetime(2024, 1, 31, 9), "FREQ=MONTHLY;INTERVAL=1;COUNT=6"),  # months without a 31st are skipped
    (datetime(2024, 2, 29, 9), "FREQ=MONTHLY;INTERVAL=12;COUNT=2"),  # next 29 February: 2028
    (datetime(2024, 3, 10, 2, 30), "FREQ=DAILY;INTERVAL=1;COUNT=3"),  # a wall time that does not exist that day
    (datetime(2024, 11, 3, 1, 30), "FREQ=WEEKLY;INTERVAL=1;BYDAY=SU;COUNT=3"),  # one that exists twice
    (datetime(2025, 7, 5, 0, 0, 0, 165017), "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;UNTIL=20251231T000000Z"),
    (datetime(2024, 4, 30, 9), "FREQ=MONTHLY;INTERVAL=12;BYMONTHDAY=31"),  # never matches: the start only
])
def test_edge_rules_expand_as_dateutil_expands_them(monkeypatch, start, rule):
    ours = _expand(start, "America/New_York", rule)
    assert recurrence.simple_rule(rule.replace("Z", ""), start) is not None
    _dateutil_only(monkeypatch)
    assert ours == _expand(start, "America/New_York", rule)


def test_simple_rule_leaves_other_shapes_to_dateutil():
    start = datetime(2024, 1, 15, 9)
    for body in ["FREQ=YEARLY", "FREQ=WEEKLY;WKST=SU", "FREQ=WEEKLY;BYDAY=1MO", "FREQ=MONTHLY;BYMONTHDAY=-1",
                 "FREQ=MONTHLY;BYDAY=MO", "FREQ=DAILY;BYDAY=MO", "FREQ=DAILY;COUNT=3;UNTIL=20240201T000000",
                 "FREQ=DAILY;INTERVAL=0", "FREQ=DAILY;COUNT=0", "freq=daily", "FREQ=DAILY;", "FREQ=DAILY;COUNT=2;COUNT=3",
                 "FREQ=DAILY;UNTIL=20240201", "FREQ=MONTHLY;BYMONTHDAY=32", "FREQ=FORTNIGHTLY;BYDAY=XX;INTERVAL=-1"]:
        assert recurrence.simple_rule(body, start) is None, body


@pytest.mark.parametrize("utc", [datetime(2024, 3, 1, 15, tzinfo=UTC), datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                                 datetime(1000, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
                                 datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1, 1, 1, 12, tzinfo=UTC)])
def test_an_occurrence_suffix_is_what_strftime_writes(utc):
    assert recurrence.utc_suffix(utc) == utc.strftime(recurrence.SUFFIX_FORMAT)
    assert recurrence.occurrence_suffix(utc.astimezone(NY)) == utc.strftime(recurrence.SUFFIX_FORMAT)


def _awkward_series() -> list[dict]:
    """The fixture's calendar entries, and a series whose ids and attendees need escaping in JSON (quotes,
    backslash, control and non-ASCII characters), a second user, and one whose attendee id holds the
    template's own mark; series all day (one over two days, in another zone), with a ``%`` in their
    text, with an Event slot's mark in their text, with a float and a NaN value (json's form), lasting a fraction of a second more."""
    items = envelopes("calendar_entries")
    odd = copy.deepcopy(items[0])
    odd["source_system_id"] = 'calendar_entry-"40\\é\u2028\x01'
    odd["data"]["attendees"] = [
        {"id": 'x"\\y', "type": "Contact"},
        {"id": 802, "type": "Calendar"}, {"id": "ü\n", "type": "Contact"}, {"id": 1001, "type": "User"},
        {"id": 5, "type": "User"}]  # a user with no Salesforce user: reported, not linked
    odd_int_user = copy.deepcopy(items[0])
    odd_int_user["source_system_id"] = "calendar_entry-41"
    odd_int_user["data"]["attendees"] = [{"id": 1003, "type": "User"}, {"id": 9001, "type": "Contact"}]
    marked = copy.deepcopy(items[0])  # an id holding the template's mark: this series' rows built one by one
    marked["source_system_id"] = "calendar_entry-42"
    marked["data"]["attendees"] = [{"id": "\ue000sid\ue000", "type": "Contact"}, {"id": 9001, "type": "Contact"}]
    out = [*items, odd, odd_int_user, marked]
    for n, change in enumerate([
            {"all_day": True, "summary": "100% %s %% %(x)s", "start_at": "2024-03-04T00:00:00-05:00",
             "end_at": "2024-03-05T00:00:00-05:00"},
            {"all_day": True, "start_at": "2024-03-03T21:00:00-08:00", "end_at": "2024-03-05T21:00:00-08:00",
             "start_at_time_zone": "America/Vancouver", "recurrence_rule": "FREQ=DAILY;INTERVAL=3;COUNT=9"},
            {"description": "a slot's mark \ue000s1\ue000 in the text"},
            {"created_at": 1.5},
            {"created_at": float("nan")},
            {"end_at": "2024-03-04T11:30:00.250000-05:00"}], 50):
        entry = copy.deepcopy(items[0])
        entry["source_system_id"] = f"calendar_entry-{n}"
        entry.pop("original_create_date", None)
        entry["data"].update(change)
        out.append(entry)
    return out


def _reordered(spec):
    """The spec with Event's mapping setting EndDateTime, StartDateTime and ActivityDate itself, in that
    order (an occurrence's values then go in at those places of the row)."""
    data = copy.deepcopy(spec.data)
    data["objects"]["Event"]["fields"] = {"EndDateTime": {"from": "end_at"}, "StartDateTime": {"from": "start_at"},
                                          "ActivityDate": {"from": "start_at", "as": "date"},
                                          **data["objects"]["Event"]["fields"]}
    return MappingSpec(data, spec.firm, spec.sources)


@pytest.mark.parametrize("reorder", [False, True], ids=["spec", "reordered"])
def test_encoded_event_lines_are_the_lines_of_the_rows(spec, reorder):
    """transform_object(lines=True) (what pipeline.transform_batch asks for): a series' Event rows and its
    occurrences' EventRelation rows come as lines; each object's lines are, in order, what
    pipeline.transform_batch writes for its rows (msgspec, or json for a row that needs it)."""
    if reorder:
        spec = _reordered(spec)
    users = UserMap({1001: "005000000000001AAA", 1002: "005000000000002AAA", 1003: "005000000000003AAA"}, "005000000000009AAA",
                    calendars={801: 1001, 802: 1002})
    items = _awkward_series()

    templated: dict[str, list[bytes]] = {"Event": [], "EventRelation": []}

    def stream(lines: bool) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        for res in transform_object("calendar_entries", copy.deepcopy(items), spec, users, lookup=lookup_all(),
                                    horizon=HORIZON, lines=lines):
            if "lines" in res:
                out.setdefault(res["sobject"], []).extend(res["lines"])
                templated[res["sobject"]].extend(res["lines"])
            else:
                fast = None if "rule" in res else _scalar_finite_row  # a reject: json
                out.setdefault(res.get("sobject", "reject"), []).append(staging.encode_line(res, fast))
        return out

    encoded, rows = stream(True), stream(False)
    relations, events = rows["EventRelation"], rows["Event"]
    assert len(relations) > 20 and any(b'\\"40\\\\' in line and b"\\u0001" in line for line in relations)
    assert encoded == rows
    assert any(b'\\"40\\\\' in line for line in templated["EventRelation"])  # the escaped ids went through the templates
    assert not any(b"calendar_entry-42" in line for line in templated["EventRelation"])  # the marked series did not
    assert any(b"calendar_entry-42" in line and b"\xee\x80\x80sid" in line for line in relations)
    ev = templated["Event"]
    assert any(b'\\"40\\\\' in line and b"\\u0001" in line for line in ev)
    assert any(b"calendar_entry-50@" in line and b"100% %s %% %(x)s" in line and b'"IsAllDayEvent":true' in line for line in ev)
    assert sum(b'"source_system_id":"calendar_entry-51@' in line for line in ev) == 9
    assert any(b"calendar_entry-55@" in line and b".250000-" in line for line in ev)
    for n in (52, 53, 54):  # a slot's mark in the row's text, a float, a NaN: rows, the last written by json
        assert not any(f"calendar_entry-{n}@".encode() in line for line in ev)
        assert sum(f'"source_system_id":"calendar_entry-{n}@'.encode() in line for line in events) >= 3
    assert any(b"calendar_entry-54@" in line and b"NaN" in line for line in events)
    assert len(ev) > len(events) / 2
    plain = list(transform_object("calendar_entries", copy.deepcopy(items), spec, users, lookup=lookup_all(), horizon=HORIZON))
    assert not any("lines" in r for r in plain)


def _texts(start: datetime, tz, rule: str, horizon: datetime, max_count: int, duration: timedelta, all_day: bool,
           excluded: set) -> list[tuple[str, ...]] | str:
    """What the calendar transform writes for each occurrence occurrences() gives (transform._calendar_entries'
    rows one by one): its id suffix, start and end (all day: the days, and the day)."""
    try:
        occs = list(occurrences(start, rule, tz=tz, horizon=horizon, max_count=max_count, exclude_local_dates=excluded))
    except recurrence.BadRecurrence as exc:
        return f"BadRecurrence: {exc}"
    out: list[tuple[str, ...]] = []
    for occ in occs:
        suffix = recurrence.utc_suffix(occ.astimezone(UTC))
        if all_day:
            end = occ + duration
            first = occ.astimezone(tz).date().isoformat()
            last = (end - timedelta(microseconds=1) if end > occ else end).astimezone(tz).date().isoformat()
            out.append((suffix, f"{first}T00:00:00+00:00", f"{last}T00:00:00+00:00", first))
        else:
            out.append((suffix, occ.isoformat(), (occ.astimezone(UTC) + duration).astimezone(occ.tzinfo).isoformat()))
    return out


_DURATIONS = [timedelta(0), timedelta(hours=1), timedelta(minutes=90, milliseconds=250), timedelta(hours=23),
              timedelta(days=1), timedelta(hours=25, seconds=1), timedelta(days=14)]
_HORIZONS = [datetime(2027, 6, 1, tzinfo=UTC), datetime(2025, 3, 9, 3, 30, tzinfo=ZoneInfo("Europe/Paris")),
             datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("Australia/Sydney")),
             datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30)))]


def test_occurrence_texts_are_what_the_occurrences_give():
    """occurrence_times (the calendar's lines without an aware date-time per occurrence) gives, for each
    occurrence occurrences() gives, the id suffix, start and end the rows one by one have: generated series
    (starts at 1-3 a.m. on daylight-saving days, sub-seconds, month ends), durations that end in a skipped or
    repeated hour or across a change, all day or not, in IANA zones and fixed offsets, horizons in UTC,
    in other zones and at fixed offsets, a cap, excluded dates; None only where occurrences() is left to."""
    rnd = random.Random(30)
    computed = 0
    for start, zone_name, rule in _generated_cases(3000, seed=30):
        tz = ZoneInfo(zone_name) if rnd.random() < 0.85 else timezone(timedelta(hours=rnd.choice([-5, 0, 5.5, 13]),
                                                                                  seconds=rnd.choice([0, 0, 17])))
        start = start.replace(tzinfo=tz, fold=rnd.choice([0, 0, 1]))
        args = dict(horizon=rnd.choice(_HORIZONS), max_count=rnd.choice([1, 5, 120]),
                    duration=rnd.choice(_DURATIONS), all_day=rnd.random() < 0.3,
                    excluded=rnd.choice([set(), {date(2024, 3, 11), date(2024, 11, 4), start.date()}]))
        if rnd.random() < 0.05:
            rule += "\nEXDATE;VALUE=DATE:" + (start + timedelta(days=7)).strftime("%Y%m%d")
        expected = _texts(start, tz, rule, **args)
        excluded = args.pop("excluded")
        got = recurrence.occurrence_times(start, rule, tz=tz, exclude_local_dates=excluded, **args)
        if got is None:  # only a shape dateutil expands, one occurrences() refuses, or a horizon in the zone itself
            assert isinstance(expected, str) or args["horizon"].tzinfo is tz or recurrence.simple_rule(
                re.sub(r"UNTIL=(\d{8})(?:T(\d{6}))?(Z?)", lambda m, tz=tz: recurrence._until_local(m, tz),
                       recurrence.parse_rule(rule, tz)[0]), start.astimezone(tz).replace(tzinfo=None)) is None, rule
            continue
        computed += 1
        assert got == expected, (start, zone_name, rule, args)
    assert computed > 2500


@pytest.mark.parametrize("start, duration", [
    (datetime(2024, 3, 10, 1, 30), timedelta(hours=1)),  # ends at 2:30, a wall time the change skips: 3:30 EDT
    (datetime(2024, 11, 3, 0, 30), timedelta(hours=1, minutes=30)),  # ends at 1:00 EDT, a wall time that comes twice
    (datetime(2024, 11, 3, 0, 30), timedelta(hours=2)),  # ends at 1:30 EST, the second time
    (datetime(2024, 3, 9, 23, 0), timedelta(hours=4)),  # across the change
])
def test_an_occurrence_ending_at_a_change_ends_where_its_instant_does(start, duration):
    rule = "FREQ=DAILY;COUNT=2"
    expected = _texts(start.replace(tzinfo=NY), NY, rule, HORIZON, 10, duration, False, set())
    assert recurrence.occurrence_times(start.replace(tzinfo=NY), rule, tz=NY, horizon=HORIZON, max_count=10,
                                       duration=duration) == expected
    assert expected[0][2] == (start.replace(tzinfo=NY).astimezone(UTC) + duration).astimezone(NY).isoformat()


@pytest.mark.parametrize("start", [datetime(998, 12, 28, 9, 15), datetime(999, 12, 30, 23, 30, 0, 250000),
                                   datetime(1000, 1, 1, 0, 0), datetime(2024, 2, 28, 22, 0, 0, 1)])
def test_occurrence_texts_of_early_years_and_sub_seconds_are_what_the_occurrences_give(start):
    """A day before year 1000 (its id suffix is strftime's) and a start with sub-seconds give the texts the rows
    one by one have, the day texts kept between series (recurrence._DAY_TEXTS) included: each series twice."""
    tz = timezone(timedelta(hours=-5))
    horizon = datetime(2100, 1, 1, tzinfo=UTC)
    for all_day in (False, True, False):
        expected = _texts(start.replace(tzinfo=tz), tz, "FREQ=DAILY;COUNT=4", horizon, 10, timedelta(hours=3), all_day, set())
        got = recurrence.occurrence_times(start.replace(tzinfo=tz), "FREQ=DAILY;COUNT=4", tz=tz, horizon=horizon,
                                          max_count=10, duration=timedelta(hours=3), all_day=all_day)
        assert got == expected
        assert len(got) == 4
