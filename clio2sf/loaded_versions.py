"""Which version of each Clio record already reached Salesforce, so a delta window skips its overlap.

A delta window reads from the watermark minus an overlap (clocks drift), so it re-reads records the
previous window (or the full load) already loaded. Without an index it would send them again.
``<migration root>/delta/loaded/<object>.json`` maps ``source_system_id`` → the version loaded
(Clio's ``etag``, else ``updated_at``):

* seeded from the full extraction once a full load reconciled (every extracted record was loaded
  or rejected: a rejected record re-sent unchanged would be rejected again);
* updated by each window after its load committed, with what that window loaded.

A changed record whose version equals the index entry is skipped; any other change (new record,
new etag, no version at all) goes through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from clio2sf import staging


def version_of(envelope: Mapping[str, Any]) -> str | None:
    data = envelope.get("data") or {}
    value = data.get("etag") or data.get("updated_at")
    return str(value) if value not in (None, "") else None


def index_path(root: Any, obj: str) -> Any:
    return root / "delta" / "loaded" / f"{obj}.json"


def read_index(root: Any, obj: str) -> dict[str, str] | None:
    return staging.read_json(index_path(root, obj))


def build_index(envelopes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {str(e["source_system_id"]): v for e in envelopes
            if e.get("source_system_id") and (v := version_of(e)) is not None}


def write_index(root: Any, obj: str, index: Mapping[str, str]) -> None:
    staging.write_bytes_atomic(index_path(root, obj), json.dumps(dict(index), sort_keys=True).encode("utf-8"))


def split_new(envelopes: Iterable[Mapping[str, Any]], index: Mapping[str, str]) -> tuple[list[dict], int]:
    """(envelopes whose version differs from the index, how many were already loaded at that version)."""
    new, skipped = [], 0
    for e in envelopes:
        v = version_of(e)
        if v is not None and index.get(str(e.get("source_system_id"))) == v:
            skipped += 1
        else:
            new.append(dict(e))
    return new, skipped


def record_loaded(root: Any, obj: str, envelopes: Iterable[Mapping[str, Any]]) -> int:
    """Add what a committed window loaded to the index; returns how many entries changed."""
    index = read_index(root, obj) or {}
    fresh = build_index(envelopes)
    changed = sum(1 for k, v in fresh.items() if index.get(k) != v)
    index.update(fresh)
    write_index(root, obj, index)
    return changed
