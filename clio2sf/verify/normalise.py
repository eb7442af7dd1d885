"""Values the way Salesforce stores them, so that an expected value and a read-back value compare.

``normalise(value, kind, scale=None, length=None)`` returns a comparable, hashable value or None
for empty: emails lower-cased, numbers as decimals rounded to the field's scale (currency: 2),
date-times as UTC instants to the millisecond, dates as ``YYYY-MM-DD``, checkboxes as booleans
(empty is false), ids in their 15-character form, text with CRLF folded and cut to the field length.
Written apart from the transform's converters on purpose (a check must not share what it checks).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from dateutil import parser as dtparser

NUMBER = {"double", "currency", "percent", "int", "long", "number"}
DEFAULT_SCALE = {"currency": 2, "int": 0, "long": 0}
_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


class Unparseable(ValueError):
    """A value that cannot be read as its kind (reported as a mismatch, never raised past compare)."""


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == [] or value == {}


#: The common shape of a date-time (Salesforce's ``2024-03-04T14:00:00.000+0000``, Clio's
#: ``2024-03-04T09:00:00-05:00``): read without dateutil (:func:`_plain_instant`).
_PLAIN = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
                    r"(Z|[+-][0-9]{2}:?[0-9]{2})?")
_OFFSETS: dict[int, timezone] = {}


def _plain_instant(text: str) -> datetime | None:
    """``text`` of :data:`_PLAIN`'s shape as ``dateutil.parser.isoparse`` reads it (naive: UTC), without
    it (:func:`instant` about twice as fast); None for anything else, or anything it might read differently
    (an hour of 24, an offset past 23:59, a day the month lacks): dateutil decides those."""
    m = _PLAIN.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    minutes = 0
    if off is not None and off != "Z":
        oh, om = int(off[1:3]), int(off[-2:])
        if oh > 23 or om > 59:
            return None
        minutes = (oh * 60 + om) * (-1 if off[0] == "-" else 1)
    tz = _OFFSETS.get(minutes)
    if tz is None:
        tz = _OFFSETS[minutes] = UTC if minutes == 0 else timezone(timedelta(minutes=minutes))
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int(frac.ljust(6, "0")) if frac else 0,
                        tzinfo=tz)
    except ValueError:
        return None


def instant(value: Any) -> datetime:
    """A UTC instant (ms precision) from an ISO string or a datetime; naive values are read as UTC."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        dt = _plain_instant(text)  # type: ignore[assignment]
        if dt is None:
            try:
                dt = dtparser.isoparse(text)
            except (ValueError, OverflowError):
                raise Unparseable(f"{value!r} is not a date-time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def day(value: Any) -> str:
    """``YYYY-MM-DD``: a date as written, or the calendar day of a date-time in its own offset."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return text
    try:
        return dtparser.isoparse(text).date().isoformat()
    except (ValueError, OverflowError):
        raise Unparseable(f"{value!r} is not a date") from None


def number(value: Any, scale: int | None) -> Decimal:
    if isinstance(value, bool):
        raise Unparseable(f"{value!r} is not a number")
    try:
        d = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise Unparseable(f"{value!r} is not a number") from None
    if scale is None:
        return d.normalize()
    return d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "on", "checked"):
        return True
    if text in ("false", "0", "no", "n", "off", ""):
        return False
    raise Unparseable(f"{value!r} is not a boolean")


def text(value: Any, length: int | None = None) -> str:
    out = (value if isinstance(value, str) else str(value)).replace("\r\n", "\n").replace("\r", "\n").strip()
    return out[:length] if length else out


def normalise(value: Any, kind: str, scale: int | None = None, length: int | None = None) -> Any:
    """The comparable form of ``value`` for a Salesforce field of type ``kind`` (describe type).

    :raises Unparseable: the value cannot be read as ``kind``.
    """
    k = (kind or "string").lower()
    if k in ("boolean", "checkbox"):
        return boolean(value)
    if is_empty(value):
        return None
    if k in NUMBER:
        return number(value, scale if scale is not None else DEFAULT_SCALE.get(k))
    if k == "datetime":
        return instant(value)
    if k == "date":
        return day(value)
    if k == "email":
        return text(value).casefold()
    if k in ("id", "reference"):
        s = str(value)
        return s[:15] if _ID.match(s) else s
    if k == "multipicklist":
        return frozenset(p.strip() for p in str(value).split(";") if p.strip())
    return text(value, length)


def display(value: Any) -> Any:
    """A report-friendly form of a normalised value."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, frozenset):
        return ";".join(sorted(value))
    return value
