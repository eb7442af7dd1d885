"""The occurrences check's cutoff (the horizon less 7 days) for an all-day recurring entry, compared by day.

Found by the large DAG benchmark verifying at 00:03 UTC: the cutoff's instant (00:03 UTC) came before the
local midnight of an all-day occurrence on the cutoff's own day (05:00 UTC in New York), so the rule's
occurrence was left out of what was expected while the org's, stamped by day, was inside the limit: 53
"an occurrence the rule does not give" on a clean load. Whether it fired depended on the time of day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from clio2sf.verify.compare import Comparison

pytestmark = pytest.mark.unit

NY = ZoneInfo("America/New_York")
CUTOFF = datetime(2028, 11, 27, 0, 3, tzinfo=UTC)  # what a verify at 2026-12-05 00:03 UTC gets (730 - 7 days)


class _NoRejects:
    def rejected(self, *ids):
        return None


def _check(got: dict[str, str], *, now: datetime = CUTOFF - timedelta(days=723)) -> list[tuple[str, str]]:
    comparison = Comparison(rb=None, users=None, rejects=_NoRejects(), horizon_days=730, now=now)
    weekly = [datetime(2028, 11, 13, tzinfo=NY) + timedelta(weeks=i) for i in range(4)]  # 13, 20, 27 Nov, 4 Dec
    series = {"template": SimpleNamespace(source="calendar_entry-1"), "all_day": True, "starts": weekly}
    comparison.occurrences("calendar_entry-1", series, got)
    return [(f.key, f.reason) for f in comparison.res.findings]


def test_an_all_day_occurrence_on_the_cutoff_day_is_expected_not_reported():
    got = {"2028-11-13": "e13", "2028-11-20": "e20", "2028-11-27": "e27"}  # the org's, by day
    assert _check(got) == []


def test_the_check_still_fails_on_an_occurrence_the_rule_does_not_give_and_on_a_missing_one():
    found = _check({"2028-11-13": "e13", "2028-11-23": "e23", "2028-11-27": "e27"})
    assert ("e23", "an occurrence the rule (RFC 5545) does not give") in found
    assert any(key.startswith("calendar_entry-1@2028-11-20") and "is missing" in why for key, why in found), found
    assert len(found) == 2, found


def test_past_the_cutoff_day_the_horizon_decides():
    got = {"2028-11-13": "e13", "2028-11-20": "e20", "2028-11-27": "e27", "2028-12-04": "e04"}
    assert _check(got) == []  # 4 Dec is past the cutoff: neither expected nor reported
