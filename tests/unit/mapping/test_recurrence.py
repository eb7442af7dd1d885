"""RFC 5545 expansion: DTSTART is always the first instance, and counts toward COUNT."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from clio2sf.mapping.recurrence import occurrences

from .conftest import by_sid, envelopes, run

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
