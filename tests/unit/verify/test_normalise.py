"""Date-times of the common shape are read without dateutil, and read exactly as dateutil reads them:
the same instant for every string it accepts, Unparseable for every string it refuses."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from dateutil import parser as dtparser

from clio2sf.verify import normalise as norm

pytestmark = pytest.mark.unit


def _by_dateutil(text: str) -> datetime | str | None:
    """``instant`` as it was (dateutil for every string): None where it raised Unparseable, the name of
    any other exception it raised (a year 1 instant east of UTC: OverflowError)."""
    try:
        dt = dtparser.isoparse(text.strip())
    except (ValueError, OverflowError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt = dt.astimezone(UTC)
    except Exception as exc:  # noqa: BLE001 - compared with what instant raises now
        return type(exc).__name__
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _instant(text: str) -> datetime | str | None:
    try:
        return norm.instant(text)
    except norm.Unparseable:
        return None
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__


DATES = ["2024-03-04", "2024-02-29", "2023-02-29", "2024-13-01", "2024-04-31", "0001-01-01", "9999-12-31", "2024-00-10"]
TIMES = ["14:00:00", "00:00:00", "23:59:59", "24:00:00", "24:00:01", "12:60:00", "12:00:60", "7:00:00", "14:00"]
FRACTIONS = ["", ".0", ".000", ".123", ".1234", ".999999", ".1234567", ",5", "."]
OFFSETS = ["", "Z", "z", "+0000", "-0000", "+00:00", "-00:00", "-05:00", "+0530", "+05:30", "+2359", "+2400",
           "-0060", "+00:60", "+05", "+5:00", "+05:3", "-12:00", " "]


def test_every_combination_reads_as_dateutil_reads_it():
    checked = parsed = 0
    for d, t, f, o in itertools.product(DATES, TIMES, FRACTIONS, OFFSETS):
        for text in (f"{d}T{t}{f}{o}", f" {d}T{t}{f}{o} ", f"{d} {t}{f}{o}"):
            got, want = _instant(text), _by_dateutil(text)
            assert got == want, text
            if isinstance(got, datetime):
                assert got.tzinfo is UTC and got.isoformat() == want.isoformat(), text
                parsed += 1
            checked += 1
    assert parsed > 1000 and checked > parsed  # both accepted and refused strings were compared
    for text in ["2024-03-04T14:00:00.000+0000", "2024-03-04T09:00:00-05:00", "2024-03-04", "x", "",
                 "2024-03-04T14:00:00.000+0000x", "\u0662\u0660\u0662\u0664-03-04T14:00:00Z", "2024-03-04t14:00:00Z"]:
        assert _instant(text) == _by_dateutil(text), text


def test_the_common_shapes_are_read_without_dateutil(monkeypatch):
    """Salesforce's and Clio's date-times do not go through dateutil (before: every value did, about a
    tenth of the verify process's CPU on a 1,600-matter firm); other shapes still do."""
    def refuse(text):
        raise AssertionError(f"dateutil asked about {text!r}")

    monkeypatch.setattr(norm.dtparser, "isoparse", refuse)
    assert norm.instant("2024-03-04T14:00:00.000+0000") == datetime(2024, 3, 4, 14, tzinfo=UTC)
    assert norm.instant("2024-03-04T09:00:00-05:00") == datetime(2024, 3, 4, 14, tzinfo=UTC)
    assert norm.instant("2024-03-04T14:00:00.1239Z") == datetime(2024, 3, 4, 14, 0, 0, 123000, tzinfo=UTC)
    assert norm.instant("2024-03-04T14:00:00") == datetime(2024, 3, 4, 14, tzinfo=UTC)
    with pytest.raises(AssertionError, match="dateutil asked"):
        norm.instant("2024-03-04T24:00:00Z")
