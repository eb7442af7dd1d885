"""Expand a Clio calendar entry's recurrence rule (RFC 5545) into bounded occurrences."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr


class BadRecurrence(ValueError):
    """The recurrence rule cannot be parsed or expanded."""


_PROP_RE = re.compile(r"^(?P<name>[A-Z-]+)(?P<params>(?:;[^:]*)?):(?P<value>.*)$")


class UnknownTimeZone(BadRecurrence):
    """A zone name that is not in the IANA database (never replaced by a fixed offset silently)."""


def zone(name: str | None, fallback: tzinfo) -> tzinfo:
    """The IANA zone ``name`` (Clio's ``start_at_time_zone``), ``fallback`` when no name is given.

    :raises UnknownTimeZone: for a name the IANA database does not know; the caller decides
        (a recurring series is rejected, a single event keeps its UTC offset with a note).
    """
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise UnknownTimeZone(f"{str(name)[:60]!r} is not an IANA time zone") from None
    return fallback


def _parse_exdate(params: str, value: str, tz: tzinfo) -> list[datetime | date]:
    out: list[datetime | date] = []
    tzid = re.search(r"TZID=([^;:]+)", params)
    ex_tz = zone(tzid.group(1), tz) if tzid else tz
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if len(item) == 8:
                out.append(datetime.strptime(item, "%Y%m%d").date())
            elif item.endswith("Z"):
                out.append(datetime.strptime(item, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
            else:
                out.append(datetime.strptime(item, "%Y%m%dT%H%M%S").replace(tzinfo=ex_tz))
        except ValueError:
            raise BadRecurrence(f"EXDATE value {item!r} is not a date or date-time") from None
    return out


def parse_rule(rule: str, tz: tzinfo) -> tuple[str, list[datetime | date]]:
    """Split Clio's rule text into the RRULE body and its EXDATE values."""
    rrule_lines: list[str] = []
    exdates: list[datetime | date] = []
    for raw in re.split(r"[\r\n]+", rule.strip()):
        line = raw.strip()
        if not line:
            continue
        m = _PROP_RE.match(line)
        if m and m.group("name") in {"RRULE", "EXDATE", "DTSTART", "RDATE", "EXRULE"}:
            name = m.group("name")
            if name == "RRULE":
                rrule_lines.append(m.group("value"))
            elif name == "EXDATE":
                exdates.extend(_parse_exdate(m.group("params"), m.group("value"), tz))
            elif name in {"RDATE", "EXRULE"}:
                raise BadRecurrence(f"{name} is not supported")
        elif "FREQ=" in line.upper():
            rrule_lines.append(line)
        else:
            raise BadRecurrence(f"unexpected recurrence line {line[:60]!r}")
    if len(rrule_lines) != 1:
        raise BadRecurrence(f"expected one RRULE, found {len(rrule_lines)}")
    return rrule_lines[0], exdates


def occurrences(
    start: datetime,
    rule: str,
    *,
    tz: tzinfo,
    horizon: datetime,
    max_count: int,
    exclude_local_dates: Iterable[date] = (),
) -> Iterator[datetime]:
    """Yield occurrence starts (aware, in ``tz``) of a series starting at ``start``.

    Expansion happens in the series' own zone so wall-clock times survive DST changes; it stops at
    ``horizon`` or after ``max_count`` occurrences.  EXDATEs (date-times, or whole dates) and dates
    in ``exclude_local_dates`` (occurrences overridden by child entries) are skipped.
    """
    local_start = start.astimezone(tz)
    body, exdates = parse_rule(rule, tz)
    # The series is expanded on naive local wall-clock times, so UNTIL must be local and naive too.
    body = re.sub(r"UNTIL=(\d{8})(?:T(\d{6}))?(Z?)", lambda m: _until_local(m, tz), body)
    rule_obj = simple_rule(body, local_start.replace(tzinfo=None))
    if rule_obj is None:  # any shape simple_rule does not expand itself: dateutil's
        try:
            rule_obj = rrulestr("RRULE:" + body, dtstart=local_start.replace(tzinfo=None))
        except (ValueError, TypeError) as exc:
            raise BadRecurrence(f"cannot parse RRULE: {exc}") from None
    excluded_dt = {d.astimezone(UTC) for d in exdates if isinstance(d, datetime)}
    excluded_dates = {d for d in exdates if not isinstance(d, datetime)} | set(exclude_local_dates)
    count = 0
    try:
        for naive in _with_dtstart(rule_obj, local_start.replace(tzinfo=None)):
            occ = naive.replace(tzinfo=tz)
            if occ > horizon or count >= max_count:
                return
            if (excluded_dt and occ.astimezone(UTC) in excluded_dt) or (excluded_dates and occ.date() in excluded_dates):
                continue
            count += 1
            yield occ
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRecurrence(f"cannot expand RRULE: {exc}") from None


def occurrence_times(
    start: datetime,
    rule: str,
    *,
    tz: tzinfo,
    horizon: datetime,
    max_count: int,
    duration: timedelta,
    all_day: bool = False,
    exclude_local_dates: Iterable[date] = (),
) -> list[tuple[str, ...]] | None:
    """:func:`occurrences` of a series as texts: for each occurrence ``occ`` it yields, ``(id suffix, start, end)``:
    ``utc_suffix(occ.astimezone(UTC))``, ``occ.isoformat()`` and the ``isoformat()`` of its end (``duration``
    after its start, in ``tz``); ``all_day``: ``(id suffix, start, end, day)``, ``day`` the ISO date of ``occ``,
    ``start`` that day at ``T00:00:00+00:00`` and ``end`` the day of its last moment (``occ + duration`` less a
    microsecond when the duration is not zero, in wall time) likewise.  The same values, without an aware
    date-time per occurrence: a start's offset is the zone's for its naive local time, its UTC time and the
    horizon check are naive arithmetic, and an end whose local time the zone maps to one instant at the start's
    offset is the naive local end with that offset.

    ``None`` when it is not worked out here (the caller uses :func:`occurrences`): a rule of a shape
    :func:`simple_rule` leaves to dateutil, an EXDATE with a time, a horizon in ``tz`` itself or without an
    offset, anything that raises (``occurrences`` then raises as it does).
    """
    if horizon.tzinfo is None or horizon.tzinfo is tz or horizon.utcoffset() is None:
        return None
    try:
        local_start = start.astimezone(tz)
        body, exdates = parse_rule(rule, tz)
        if any(isinstance(d, datetime) for d in exdates):
            return None
        body = re.sub(r"UNTIL=(\d{8})(?:T(\d{6}))?(Z?)", lambda m: _until_local(m, tz), body)
        dtstart = local_start.replace(tzinfo=None)
        rule_obj = simple_rule(body, dtstart)
        if rule_obj is None:
            return None
        excluded_dates = set(exdates) | set(exclude_local_dates)
        limit = horizon.replace(tzinfo=None) - horizon.utcoffset()  # the horizon in naive UTC
        utcoffset = tz.utcoffset
        tails: dict[timedelta, str] = {}  # offset -> what isoformat() writes after the naive part
        fold1: dict[time, time] = {}  # a time of day -> itself at fold 1 (a series' ends share theirs)
        combine = datetime.combine
        # A naive date-time's isoformat() is its day's and its time's joined by "T"; the texts of each day (shared
        # by every series: _DAY_TEXTS) and of each time of day (a series has a few) are worked out once.
        days = _DAY_TEXTS
        clocks: dict[time, tuple[str, str]] = {}  # a time of day -> ("T" + its isoformat(), "T" + HHMMSS)
        out: list[tuple[str, str, str]] = []
        for naive in _with_dtstart(rule_obj, dtstart):
            off = utcoffset(naive)  # occ.utcoffset() of occ = naive.replace(tzinfo=tz): the zone reads naive's fields and fold
            if off is None:
                return None
            utc = naive - off
            if utc > limit or len(out) >= max_count:  # occ > horizon: aware instances of two zones compare in UTC
                break
            nday = naive.date()
            if excluded_dates and nday in excluded_dates:
                continue
            # the id suffix, utc_suffix(utc): its day YYYYMMDD (None before year 1000: strftime's), "T", HHMMSS, "Z"
            compact = (days.get(uday := utc.date()) or _day_texts(uday))[1]
            suffix = (compact + (clocks.get(uclock := utc.time()) or _clock_texts(clocks, uclock))[1] + "Z" if compact
                      else utc_suffix(utc))
            end = naive + duration
            if all_day:  # an aware occurrence and its end in their own zone: astimezone(tz) changes neither
                day = (days.get(nday) or _day_texts(nday))[0]
                lday = (end - _MICROSECOND if duration else end).date()
                last = (days.get(lday) or _day_texts(lday))[0]
                out.append((suffix, f"{day}T00:00:00+00:00", f"{last}T00:00:00+00:00", day))
                continue
            tail = tails.get(off)
            if tail is None:
                tail = tails[off] = naive.replace(tzinfo=tz).isoformat()[len(naive.isoformat()):]
            if utcoffset(end) == off:  # and at fold 1 (``end.replace(fold=1)``, ~4x the time of a combine)
                clock = end.time()
                clock1 = fold1.get(clock)
                if clock1 is None:
                    clock1 = fold1[clock] = clock.replace(fold=1)
                eday = end.date()
                same = utcoffset(combine(eday, clock1)) == off
            else:
                same = False
            if same:
                # one instant has this local time, at the start's offset: end's own (utc + duration)
                ends = ((days.get(eday) or _day_texts(eday))[0] + (clocks.get(clock) or _clock_texts(clocks, clock))[0]
                        + tail)
            else:  # across a change of offset, or a local time that is skipped or repeated
                ends = (utc + duration).replace(tzinfo=UTC).astimezone(tz).isoformat()
            starts = ((days.get(nday) or _day_texts(nday))[0] + (clocks.get(nclock := naive.time()) or _clock_texts(clocks, nclock))[0]
                      + tail)
            out.append((suffix, starts, ends))
    except (ValueError, TypeError, OverflowError):
        return None
    return out


_MICROSECOND = timedelta(microseconds=1)
#: day -> (its isoformat(), YYYYMMDD or None before year 1000), for occurrence_times (kept up to _DAY_TEXTS_MAX days)
_DAY_TEXTS: dict[date, tuple[str, str | None]] = {}
_DAY_TEXTS_MAX = 100_000


def _day_texts(day: date) -> tuple[str, str | None]:
    iso = day.isoformat()
    texts = (iso, iso.replace("-", "") if day.year >= 1000 else None)
    if len(_DAY_TEXTS) < _DAY_TEXTS_MAX:
        _DAY_TEXTS[day] = texts
    return texts


def _clock_texts(clocks: dict[time, tuple[str, str]], clock: time) -> tuple[str, str]:
    texts = clocks[clock] = ("T" + clock.isoformat(), f"T{clock.hour:02}{clock.minute:02}{clock.second:02}")
    return texts
_WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
_SIMPLE_PART = re.compile(r"(FREQ|INTERVAL|COUNT|UNTIL|BYDAY|BYMONTHDAY)=([0-9A-Z,]+)")
_DIGITS = re.compile(r"[0-9]{1,4}")
_UNTIL_LOCAL = re.compile(r"([0-9]{8})T([0-9]{6})")


class SimpleRule:
    """A rule of the shapes Clio writes, expanded without dateutil: FREQ=DAILY (no BY part), FREQ=WEEKLY
    (BYDAY of plain weekdays, or none: the start's weekday; weeks start on Monday), FREQ=MONTHLY
    (BYMONTHDAY of days 1-31, or none: the start's day), each with INTERVAL and COUNT or UNTIL.

    Iterating it gives exactly the naive instances ``rrulestr("RRULE:" + body, dtstart=dtstart)`` gives
    (dateutil 2.9: the start's sub-seconds dropped, an UNTIL past which it stops, instances before the
    start never given, a month without the day skipped, nothing past year 9999); ``_count`` is COUNT,
    as on dateutil's rrule (:func:`_with_dtstart` reads it).  tests/unit/mapping/test_recurrence.py
    compares the two over generated rules.
    """

    __slots__ = ("freq", "interval", "_count", "until", "days", "dtstart")

    def __init__(self, freq: str, interval: int, count: int | None, until: datetime | None,
                 days: list[int], dtstart: datetime) -> None:
        self.freq, self.interval, self._count, self.until, self.days = freq, interval, count, until, days
        self.dtstart = dtstart

    def __iter__(self) -> Iterator[datetime]:
        instances = self._daily() if self.freq == "DAILY" else self._weekly() if self.freq == "WEEKLY" else self._monthly()
        count, until, dtstart = self._count, self.until, self.dtstart
        for res in instances:
            if until is not None and res > until:
                return
            if res >= dtstart:
                if count is not None:
                    if count <= 0:
                        return
                    count -= 1
                yield res

    def _daily(self) -> Iterator[datetime]:
        res, step = self.dtstart, timedelta(days=self.interval)
        try:
            while True:
                yield res
                res += step
        except OverflowError:  # past 31 December 9999, where dateutil stops too
            return

    def _weekly(self) -> Iterator[datetime]:
        dtstart = self.dtstart
        first = dtstart.date()
        monday = first - timedelta(days=first.weekday())
        step = timedelta(days=7 * self.interval)
        offsets = [timedelta(days=d) for d in self.days]
        at = dtstart.time()
        try:
            while True:
                for off in offsets:
                    day = monday + off
                    if day >= first:
                        yield datetime.combine(day, at)
                monday += step
        except OverflowError:
            return

    def _monthly(self) -> Iterator[datetime]:
        dtstart = self.dtstart
        year, month, at, days, interval = dtstart.year, dtstart.month, dtstart.time(), self.days, self.interval
        while year <= 9999:
            last = _month_len(year, month)
            for md in days:
                if md <= last:
                    yield datetime.combine(date(year, month, md), at)
            month += interval
            if month > 12:
                year += (month - 1) // 12
                month = (month - 1) % 12 + 1


def _month_len(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def simple_rule(body: str, dtstart: datetime) -> SimpleRule | None:
    """:class:`SimpleRule` of an RRULE ``body`` (UNTIL already local and naive) from the naive ``dtstart``,
    or ``None`` when the body is of any other shape (dateutil expands it, or says why it cannot)."""
    parts: dict[str, str] = {}
    for part in body.split(";"):
        m = _SIMPLE_PART.fullmatch(part)
        if m is None or m.group(1) in parts:
            return None
        parts[m.group(1)] = m.group(2)
    freq = parts.pop("FREQ", None)
    if freq not in ("DAILY", "WEEKLY", "MONTHLY") or ("COUNT" in parts and "UNTIL" in parts):
        return None
    interval = count = until = None
    if "INTERVAL" in parts:
        if not _DIGITS.fullmatch(parts["INTERVAL"]) or int(parts["INTERVAL"]) < 1:
            return None
        interval = int(parts["INTERVAL"])
    if "COUNT" in parts:
        if not _DIGITS.fullmatch(parts["COUNT"]) or int(parts["COUNT"]) < 1:
            return None
        count = int(parts["COUNT"])
    if "UNTIL" in parts:
        m = _UNTIL_LOCAL.fullmatch(parts["UNTIL"])
        if m is None:
            return None
        try:
            until = datetime.strptime(parts["UNTIL"], "%Y%m%dT%H%M%S")
        except ValueError:
            return None
    byday, bymonthday = parts.get("BYDAY"), parts.get("BYMONTHDAY")
    if freq == "DAILY":
        if byday is not None or bymonthday is not None:
            return None
        days: list[int] = []
    elif freq == "WEEKLY":
        if bymonthday is not None:
            return None
        if byday is None:
            days = [dtstart.weekday()]
        else:
            names = byday.split(",")
            if not all(n in _WEEKDAYS for n in names):
                return None
            days = sorted({_WEEKDAYS[n] for n in names})
    else:
        if byday is not None:
            return None
        if bymonthday is None:
            days = [dtstart.day]
        else:
            values = bymonthday.split(",")
            if not all(_DIGITS.fullmatch(v) and 1 <= int(v) <= 31 for v in values):
                return None
            days = sorted({int(v) for v in values})
    return SimpleRule(freq, interval or 1, count, until, days, dtstart.replace(microsecond=0))


def _with_dtstart(rule_obj, dtstart: datetime) -> Iterator[datetime]:
    """The rule's instances with DTSTART always first (RFC 5545 3.8.5.3: DTSTART is the first instance,
    and counts toward COUNT, even when it does not match BYDAY/BYMONTHDAY...); dateutil skips it then."""
    dtstart = dtstart.replace(microsecond=0)  # dateutil drops sub-seconds from every instance
    instances = iter(rule_obj)
    first = next(instances, None)
    if first == dtstart:
        yield first
        yield from instances
        return
    yield dtstart
    limit = getattr(rule_obj, "_count", None)
    if first is None or (limit is not None and limit <= 1):
        return
    taken = 1
    yield first
    for naive in instances:
        if limit is not None and taken >= limit - 1:
            return
        taken += 1
        yield naive


def _until_local(m: re.Match[str], tz: tzinfo) -> str:
    naive = datetime.strptime(m.group(1) + (m.group(2) or "235959"), "%Y%m%d%H%M%S")
    if m.group(3):
        naive = naive.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)
    return "UNTIL=" + naive.strftime("%Y%m%dT%H%M%S")


#: ``strftime`` format of an occurrence's id suffix (of its UTC start).
SUFFIX_FORMAT = "%Y%m%dT%H%M%SZ"


def occurrence_suffix(occ: datetime) -> str:
    """The id suffix of one occurrence: its UTC start, ``20240301T150000Z``."""
    return utc_suffix(occ.astimezone(UTC))


def utc_suffix(utc: datetime) -> str:
    """``utc.strftime(SUFFIX_FORMAT)`` of a UTC date-time, formatted without ``strftime`` (~3/4 of its time,
    measured on a loaded machine); a year before 1000, whose ``%Y`` the C library writes its own way, still
    by ``strftime``."""
    if utc.year < 1000:
        return utc.strftime(SUFFIX_FORMAT)
    return f"{utc.year}{utc.month:02}{utc.day:02}T{utc.hour:02}{utc.minute:02}{utc.second:02}Z"


def clamp_end(start: datetime, end: datetime, max_days: int) -> tuple[datetime, bool]:
    """Return (end, clamped): ``end`` moved back to ``start + max_days`` when the event is longer."""
    limit = start + timedelta(days=max_days)
    return (limit, True) if end > limit else (end, False)
