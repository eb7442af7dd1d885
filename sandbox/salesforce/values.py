"""Field value conversion and checks, shared by REST (JSON values) and Bulk (CSV strings)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, date, datetime, timedelta

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: The range of dates and date-times Salesforce accepts (Data Loader guide: "Data Import Dates").
MIN_DATE, MAX_DATE = date(1700, 1, 1), date(4000, 12, 31)
MIN_DATETIME = datetime(1700, 1, 1, tzinfo=UTC)
MAX_DATETIME = datetime(4000, 12, 31, tzinfo=UTC)


class FieldError(Exception):
    """A per-record DML error: statusCode, message, fields."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields or []

    def as_dict(self) -> dict:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


def format_dt(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def parse_dt(value: str) -> datetime:
    s = value.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    if len(s) == 10:
        s += "T00:00:00+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def now_str() -> str:
    return format_dt(datetime.now(UTC))


def _bad(f: dict, value: object) -> FieldError:
    return FieldError("INVALID_TYPE_ON_FIELD_IN_RECORD",
                      f"{f['label']}: value not of required type: {value}", [f["name"]])


def _out_of_range(f: dict, value: object) -> FieldError:
    return FieldError("FIELD_INTEGRITY_EXCEPTION", f"{f['label']}: invalid date: {value} (valid dates are "
                      "1700-01-01 to 4000-12-31)", [f["name"]])


def convert(f: dict, value: object, *, from_csv: bool) -> object:
    """Convert ``value`` to the stored form for field ``f`` (raises FieldError).

    As a real org stores them: null for an empty string (Salesforce has no empty string), false for
    a null checkbox, emails lower-cased, dates only within 1700-01-01..4000-12-31.
    """
    t = f["type"]
    if value is None or (value == "" and t != "base64"):
        return False if t == "boolean" else None
    if t in ("string", "textarea", "picklist", "combobox", "email", "phone", "url", "multipicklist",
             "id", "reference"):
        if not isinstance(value, str):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad(f, value)
            value = str(value)
        if t in ("id", "reference") or value == "":
            return value or None
        if len(value) > f["length"] > 0:
            raise FieldError("STRING_TOO_LONG",
                             f"{f['label']}: data value too large: {value[:80]} (max length={f['length']})",
                             [f["name"]])
        if t == "email":
            if not _EMAIL.match(value):
                raise FieldError("INVALID_EMAIL_ADDRESS", f"{f['label']}: invalid email address: {value}",
                                 [f["name"]])
            return value.lower()
        if t in ("picklist", "multipicklist") and f["restrictedPicklist"]:
            allowed = {p["value"] for p in f["picklistValues"] if p["active"]}
            parts = value.split(";") if t == "multipicklist" else [value]
            if any(p not in allowed for p in parts):
                raise FieldError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                 f"{f['label']}: bad value for restricted picklist field: {value}",
                                 [f["name"]])
        return value
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if from_csv and value == "":
            return False
        raise _bad(f, value)
    if t in ("int", "double", "currency", "percent"):
        if isinstance(value, bool):
            raise _bad(f, value)
        try:
            num = float(value) if not isinstance(value, int | float) else value
        except (TypeError, ValueError):
            raise _bad(f, value) from None
        if num != num:  # NaN: not a number Salesforce stores (and not valid JSON)
            raise _bad(f, value)
        if t == "int":
            if num != int(num):
                raise _bad(f, value)
            return int(num)
        prec, scale = f.get("precision") or 18, f.get("scale") or 0
        if abs(num) >= 10 ** (prec - scale):
            raise FieldError("NUMBER_OUTSIDE_VALID_RANGE",
                             f"{f['label']}: value outside of valid range on numeric field: {value}",
                             [f["name"]])
        return round(float(num), scale) if scale or t != "double" else float(num)
    if t == "date":
        if not isinstance(value, str):
            raise _bad(f, value)
        try:
            day = date.fromisoformat(value[:10]) if len(value) >= 10 else date.fromisoformat(value)
        except ValueError:
            raise _bad(f, value) from None
        if not MIN_DATE <= day <= MAX_DATE:
            raise _out_of_range(f, value)
        return day.isoformat()
    if t == "datetime":
        if not isinstance(value, str):
            raise _bad(f, value)
        try:
            dt = parse_dt(value)
        except (ValueError, OverflowError):
            raise _bad(f, value) from None
        if not MIN_DATETIME <= dt <= MAX_DATETIME:
            raise _out_of_range(f, value)
        return format_dt(dt)
    if t == "base64":
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise _bad(f, "<base64>") from None
    return value


def minutes_between(start: str, end: str) -> int:
    return int((parse_dt(end) - parse_dt(start)) / timedelta(minutes=1))


def add_minutes(start: str, minutes: int) -> str:
    return format_dt(parse_dt(start) + timedelta(minutes=minutes))


def to_csv_value(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
