"""Readable names for Clio records in reports: what the firm recognises, not our internal ids.

``matter-7`` reads as ``00007-Lopez (matter-7)``, ``contact-9`` as ``Jane Doe (contact-9)``,
``bill-12`` as ``Invoice 1001 (bill-12)``. Labels are record values: they go into the firm's own
report files (behind Airflow's auth), never into logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_LABEL = 60


def record_name(data: Mapping[str, Any] | None) -> str | None:
    """The name a person would use for a Clio record (matter number, contact name, invoice number...)."""
    if not isinstance(data, Mapping):
        return None
    if data.get("display_number"):
        return _short(data["display_number"])
    name = data.get("name") or " ".join(str(data[k]) for k in ("first_name", "last_name") if data.get(k))
    if name:
        return _short(name)
    if data.get("number") not in (None, ""):
        return _short(f"Invoice {data['number']}")
    for key in ("subject", "summary", "description", "note", "date"):
        if data.get(key):
            return _short(data[key])
    return None


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"


def readable(source_id: str | None, labels: Mapping[str, str] | None) -> str:
    """``Jane Doe (contact-9)`` when the id has a label, the id alone otherwise."""
    if not source_id:
        return ""
    name = (labels or {}).get(str(source_id))
    return f"{name} ({source_id})" if name else str(source_id)
