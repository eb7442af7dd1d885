"""Value conversions used by the transforms: dates, numbers, emails, value maps, paths."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

EMAIL_RE = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_STEP_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(primary|\d+)\])?$")


class BadValue(ValueError):
    """A single field value cannot be converted; ``rule`` names the check that failed."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def _steps(path: str) -> list[tuple[str, str | None]]:
    steps: list[tuple[str, str | None]] = []
    for part in path.split("."):
        m = _STEP_RE.match(part)
        if not m:
            raise ValueError(f"bad path {path!r} (step {part!r})")
        steps.append((m.group(1), m.group(2)))
    return steps


def path_key(path: str) -> str | None:
    """The key ``k`` when ``compile_path(path)`` is ``d.get(k)`` (a path of one plain step), else None."""
    steps = _steps(path)
    return steps[0][0] if len(steps) == 1 and steps[0][1] is None else None


def compile_path(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """Compile ``a.b[primary].c`` / ``items[0].id`` into a fast getter returning None when absent."""
    steps = _steps(path)
    if len(steps) == 1 and steps[0][1] is None:
        key = steps[0][0]
        return lambda d: d.get(key)
    if len(steps) == 2 and steps[0][1] is None and steps[1][1] is None:
        k1, k2 = steps[0][0], steps[1][0]

        def two(d: Mapping[str, Any]) -> Any:
            inner = d.get(k1)
            # ``type(...) is dict`` first: parsed JSON is plain dicts, and the ABC check costs ~10x more.
            return inner.get(k2) if type(inner) is dict or isinstance(inner, Mapping) else None

        return two

    def getter(d: Mapping[str, Any]) -> Any:
        cur: Any = d
        for key, index in steps:
            if type(cur) is not dict and not isinstance(cur, Mapping):
                return None
            cur = cur.get(key)
            if index is not None:
                if not isinstance(cur, list) or not cur:
                    return None
                if index == "primary":
                    cur = primary_item(cur)
                else:
                    i = int(index)
                    cur = cur[i] if i < len(cur) else None
        return cur

    return getter


def primary_item(items: Any) -> Any:
    """The ``[primary]`` step of a path: the first item of a non-empty list that is a mapping with a true
    ``primary``, else its first item; None when ``items`` is not a non-empty list."""
    if not isinstance(items, list) or not items:
        return None
    for x in items:
        if (type(x) is dict or isinstance(x, Mapping)) and x.get("primary"):
            return x
    return items[0]


#: Salesforce stores dates from 1700-01-01 to 4000-12-31; anything else fails the row (or overflows).
SF_MIN_YEAR, SF_MAX_YEAR = 1700, 4000


def _in_sf_range(value: Any, day: date, rule: str) -> None:
    if not SF_MIN_YEAR <= day.year <= SF_MAX_YEAR:
        raise BadValue(rule, f"{value!r} is outside Salesforce's date range ({SF_MIN_YEAR}-01-01 to {SF_MAX_YEAR}-12-31)")


def is_date_text(value: str) -> bool:
    """``to_date(value) == value``, worked out without it for a ``str``: a ``YYYY-MM-DD`` text (ASCII) of a
    date in Salesforce's range.  False says nothing (``to_date`` decides)."""
    if len(value) == 10 and value[4] == "-" and value[7] == "-" and value.isascii():
        # a date that parses is its own isoformat (no strip, no isoformat: the parse takes ASCII digits only,
        # so the text is what ``day.isoformat()`` writes)
        try:
            year = date.fromisoformat(value).year
        except ValueError:
            return False
        return SF_MIN_YEAR <= year <= SF_MAX_YEAR
    return False


def to_date(value: Any) -> str:
    """``YYYY-MM-DD`` from a date, a datetime or their ISO strings; BadValue otherwise (also out of range)."""
    if type(value) is str and is_date_text(value):  # the common text, already YYYY-MM-DD
        return value
    day: date | None = None
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            day = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()
        except ValueError:
            pass
    if day is None:
        raise BadValue("bad_date", f"{value!r} is not a date")
    _in_sf_range(value, day, "bad_date")
    return day.isoformat()


def to_datetime(value: Any) -> str:
    """ISO 8601 date-time with offset (naive values are rejected: their zone is unknown)."""
    if (type(value) is str and len(value) == 25 and value[10] == "T" and value[19] in "+-" and value[22] == ":"
            and value[4] == "-" and value[7] == "-" and value[13] == ":" and value[16] == ":"
            and value[23] < "6" and value[19:] != "-00:00" and value.isascii()):
        # the common text, ``YYYY-MM-DDTHH:MM:SS+HH:MM``, is its own isoformat once it parses (ASCII digits
        # only; an offset's minutes past 59 carry into its hours and ``-00:00`` is written ``+00:00``: both
        # left to the general path)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None  # the general path below says why
        if parsed is not None and parsed.tzinfo is not None and SF_MIN_YEAR <= parsed.year <= SF_MAX_YEAR:
            return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadValue("bad_datetime", f"{value!r} is not an ISO 8601 date-time") from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise BadValue("bad_datetime", f"{value!r} is not an ISO 8601 date-time")
    if parsed.tzinfo is None:
        raise BadValue("bad_datetime", f"{value!r} has no UTC offset")
    _in_sf_range(value, parsed.date(), "bad_datetime")
    return parsed.isoformat()


def parse_datetime(value: Any) -> datetime:
    """Parse a Clio timestamp into an aware datetime (BadValue when malformed or naive)."""
    return datetime.fromisoformat(to_datetime(value))


#: A plain decimal (``-12``, ``1234.5``, ``1e3``) or one with comma thousands separators *and* a
#: decimal point (``1,234.56``).  ``1,5``, ``1,234`` and ``1.234,56`` are locale-ambiguous: refused.
_PLAIN_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED_NUMBER_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+\.\d+")


def to_number(value: Any) -> float | int:
    """A finite number from a number or a number's text; BadValue (``bad_number``) otherwise.

    NaN and infinities are refused (JSON and Salesforce have no form for them); texts whose comma
    could be a decimal or a thousands separator (``"1,5"``, ``"1.234,56"``) are refused rather than
    guessed.
    """
    kind = type(value)
    if kind is int:  # the common cases first: an int (not a bool), a finite float (inf - inf and NaN - NaN are NaN)
        return value
    if kind is float and value - value == 0.0:
        return value
    if isinstance(value, bool):
        raise BadValue("bad_number", f"{value!r} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadValue("bad_number", f"{value!r} is not a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if _GROUPED_NUMBER_RE.fullmatch(text):
            text = text.replace(",", "")
        elif not _PLAIN_NUMBER_RE.fullmatch(text):
            why = ("is locale-ambiguous (is ',' a decimal or a thousands separator?)" if "," in text
                   else "is not a finite number" if text.lower().lstrip("+-") in ("nan", "inf", "infinity")
                   else "is not a number")
            raise BadValue("bad_number", f"{value!r} {why}")
        num = float(text)
        if not math.isfinite(num):
            raise BadValue("bad_number", f"{value!r} is not a finite number")
        return int(num) if num.is_integer() and "." not in text else num
    raise BadValue("bad_number", f"{value!r} is not a number")


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "y", "on", "checked"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "n", "off", ""}:
        return False
    raise BadValue("bad_bool", f"{value!r} is not a boolean")


def is_email(value: str) -> bool:
    return len(value) <= 80 and EMAIL_RE.match(value) is not None


def to_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def snake_words(name: str) -> str:
    """Human words from an API name: ``Clio_Matter_Type__c`` -> ``Clio Matter Type``."""
    base = re.sub(r"__(c|r)$", "", name)
    base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", base)
    return re.sub(r"[_\s]+", " ", base).strip()


def api_name(label: str, suffix: str = "__c") -> str:
    """A Salesforce API name from a label: letters, digits, single underscores, leading letter."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
    cleaned = re.sub(r"_+", "_", cleaned) or "Field"
    if not cleaned[0].isalpha():
        cleaned = "X" + cleaned
    return cleaned[:40] + suffix
