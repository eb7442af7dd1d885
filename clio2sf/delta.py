"""Delta planning: watermarks, overlap dedupe, deletion detection and conflict detection.

Watermarks live in ``<migration root>/delta/watermarks.json``: per Clio object the last
``updated_since`` whose records are committed in Salesforce. They advance only through
:func:`commit_watermark`, called after a load committed. Clio's filter is strictly *after*,
and clocks drift, so reads start an overlap earlier and re-read records are deduplicated.

A changed record is a CONFLICT when Salesforce modified it after our last write (ledger) and
someone else did it: it is queued, never overwritten.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clio2sf import reports, staging
from clio2sf.diff import values_equal
from clio2sf.ledger import utc_now_iso

WATERMARK_FILE = ("delta", "watermarks.json")
DEFAULT_OVERLAP = timedelta(minutes=10)
DEFAULT_LOAD_ORDER: tuple[str, ...] = (
    "Account", "Contact", "AccountContactRelation", "Case", "Opportunity", "CaseContactRole",
    "Rate_Structure__c", "Clio_Billing__c", "Ledger__c", "Time_Entry__c", "Expense__c",
    "Event", "EventRelation", "Task", "ContentVersion", "ContentDocument", "ContentDocumentLink", "ContentNote",
)


def parse_ts(value: str | datetime) -> datetime:
    """An aware UTC datetime from ISO text (``Z``, ``+0000`` and naive-as-UTC accepted)."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
            text = text[:-2] + ":" + text[-2:]  # Salesforce's +0000
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt.microsecond == 0 else \
        dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------ watermarks


def _wm_path(root: Any) -> Any:
    return root / WATERMARK_FILE[0] / WATERMARK_FILE[1]


def read_watermarks(root: Any) -> dict[str, dict[str, Any]]:
    """object → {"updated_since", "committed_at", "run_id"}; empty before the first commit."""
    path = _wm_path(root)
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        try:
            doc = json.loads(fh.read().decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: watermark document is not valid JSON ({exc.msg})") from None
    objects = doc.get("objects")
    if not isinstance(objects, dict):
        raise ValueError(f"{path}: watermark document lacks an 'objects' mapping")
    return objects


def read_since(root: Any, obj: str, overlap: timedelta = DEFAULT_OVERLAP) -> str | None:
    """The ``updated_since`` to send for ``obj``: committed watermark minus the overlap (None: full read)."""
    mark = read_watermarks(root).get(obj)
    if not mark:
        return None
    return _iso(parse_ts(mark["updated_since"]) - overlap)


def next_watermark(current: str | datetime | None, updated_ats: Iterable[str | datetime]) -> str | None:
    """The watermark after a load: the latest ``updated_at`` seen (Clio's clock, not ours),
    never earlier than ``current``. With nothing seen it stays ``current``."""
    best = parse_ts(current) if current is not None else None
    for value in updated_ats:
        if value is None:
            continue
        ts = parse_ts(value)
        if best is None or ts > best:
            best = ts
    return None if best is None else _iso(best)


def extraction_high_water(raw_obj_dir: Any, overlap: timedelta = DEFAULT_OVERLAP) -> str | None:
    """Where the first delta window of an object starts: when its full extraction began (the earliest
    ``started`` in ``_batches.jsonl``, taken before the first page) minus the overlap.

    Every record changed after its page was read was changed after that instant, so the first window
    catches it however long the extraction ran.  None when the extraction left no batch log."""
    path = raw_obj_dir / staging.BATCH_LOG
    if not path.exists():
        return None
    starts = [parse_ts(e["started"]) for e in staging.read_jsonl(path) if e.get("started")]
    return _iso(min(starts) - overlap) if starts else None


def held_watermark(current: str | datetime | None, updated_ats: Iterable[str | datetime],
                   held_ats: Iterable[str | datetime]) -> str | None:
    """:func:`next_watermark`, but never past a record the window failed to load (``held_ats``: their
    ``updated_at``): the mark stops at the earliest of them, so the next window reads it again.
    Never earlier than ``current``."""
    mark = next_watermark(current, updated_ats)
    held = [parse_ts(v) for v in held_ats if v is not None]
    if not held:
        return mark
    first = min(held)
    if current is not None and first <= parse_ts(current):
        return _iso(parse_ts(current))
    if mark is None or first < parse_ts(mark):
        return _iso(first)
    return mark


def commit_watermark(root: Any, obj: str, updated_since: str | datetime, run_id: str) -> dict[str, Any]:
    """Record ``obj``'s new watermark after a committed load (refuses to move backwards).

    The document is rewritten whole, in one put; call it from one task at a time per migration.
    """
    marks = read_watermarks(root)
    new = parse_ts(updated_since)
    old = marks.get(obj)
    if old and parse_ts(old["updated_since"]) > new:
        raise ValueError(f"watermark for {obj} would move backwards: {old['updated_since']} → {_iso(new)}")
    marks[obj] = {"updated_since": _iso(new), "committed_at": utc_now_iso(), "run_id": run_id}
    path = _wm_path(root)
    staging.write_bytes_atomic(path, json.dumps({"version": 1, "objects": marks}, indent=2, sort_keys=True).encode("utf-8"))
    return marks[obj]


# ------------------------------------------------------------------ overlap dedupe, deletions


def dedupe_changes(envelopes: Iterable[Mapping[str, Any]],
                   applied: Mapping[str, str] | None = None) -> list[Mapping[str, Any]]:
    """Keep the latest version of each record, dropping versions already applied.

    ``applied``: source_system_id → ``updated_at`` (or etag) of the version already loaded.
    A record whose staged ``updated_at`` is not newer (or whose etag is equal) is dropped.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for env in envelopes:
        ssid = env["source_system_id"]
        prev = latest.get(ssid)
        if prev is None or _updated(env) >= _updated(prev):
            latest[ssid] = env
    out = []
    for ssid, env in latest.items():
        seen = (applied or {}).get(ssid)
        if seen is not None:
            data = env.get("data") or {}
            if data.get("etag") is not None and data.get("etag") == seen:
                continue
            try:
                if _updated(env) <= parse_ts(seen):
                    continue
            except ValueError:
                pass  # an etag that differs: a newer version
        out.append(env)
    return out


def _updated(env: Mapping[str, Any]) -> datetime:
    value = (env.get("data") or {}).get("updated_at")
    if value is None:
        raise ValueError(f"{env.get('source_system_id')}: updated_at missing")
    return parse_ts(value)


def deleted_ids(previous: Iterable[int], current: Iterable[int]) -> set[int]:
    """Ids staged earlier that Clio no longer lists."""
    return set(previous) - set(current)


def deleted_ids_sorted(previous: Iterable[int], current: Iterable[int]) -> Iterator[int]:
    """The same for two ascending id streams, in constant memory."""
    cur = iter(current)
    c = next(cur, None)
    last = None
    for p in previous:
        if last is not None and p < last:
            raise ValueError(f"previous id stream not ascending at {p}")
        last = p
        while c is not None and c < p:
            c = next(cur, None)
        if c != p:
            yield p


# ------------------------------------------------------------------ conflict detection


@dataclass(frozen=True)
class SfState:
    """A record as it is now in Salesforce."""

    sf_id: str
    system_modstamp: str
    last_modified_by_id: str | None = None
    values: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LastWrite:
    """Our last write of a record (from :func:`clio2sf.ledger.last_write_by_record`)."""

    sf_id: str
    at: str | datetime
    values: Mapping[str, Any] | None = None  # the row we wrote, when staged


@dataclass
class Change:
    sobject: str
    source_system_id: str
    row: Mapping[str, Any] | None = None  # the new neutral row; None for a deletion


@dataclass
class Conflict:
    sobject: str
    source_system_id: str
    sf_id: str
    action: str  # upsert | delete
    sf_modified_at: str
    sf_modified_by: str | None
    our_last_write_at: str | None
    changed_fields: list[str]
    reason: str
    our_values: dict[str, Any] = field(default_factory=dict)
    sf_values: dict[str, Any] = field(default_factory=dict)
    incoming: dict[str, Any] = field(default_factory=dict)


@dataclass
class Operation:
    action: str  # upsert | delete
    sobject: str
    source_system_id: str
    sf_id: str | None = None
    row: Mapping[str, Any] | None = None


@dataclass
class DeltaPlan:
    upserts: list[Operation]
    deletes: list[Operation]
    conflicts: list[Conflict]
    skipped: list[tuple[str, str, str]]  # (sobject, source_system_id, why)

    def counts(self) -> dict[str, int]:
        return {"upserts": len(self.upserts), "deletes": len(self.deletes), "conflicts": len(self.conflicts),
                "skipped": len(self.skipped)}


def _order_key(order: Sequence[str]) -> dict[str, int]:
    return {s: i for i, s in enumerate(order)}


def _conflict(change: Change, action: str, sf: SfState, last: LastWrite | None,
              integration_users: set[str], skew: timedelta) -> Conflict | None:
    if last is None:
        return Conflict(change.sobject, change.source_system_id, sf.sf_id, action, sf.system_modstamp,
                        sf.last_modified_by_id, None, [], "exists in Salesforce but this migration never wrote it",
                        sf_values=dict(sf.values or {}), incoming=dict(change.row or {}))
    if parse_ts(sf.system_modstamp) <= parse_ts(last.at) + skew:
        return None
    if sf.last_modified_by_id and sf.last_modified_by_id in integration_users:
        return None
    changed: list[str] = []
    if last.values is not None and sf.values is not None:
        changed = sorted(k for k, v in last.values.items() if k in sf.values and not values_equal(v, sf.values[k]))
        if not changed:
            return None  # touched (system update, rollup) but none of our fields changed
    at = parse_ts(last.at)
    return Conflict(change.sobject, change.source_system_id, sf.sf_id, action, sf.system_modstamp,
                    sf.last_modified_by_id, _iso(at), changed,
                    "modified in Salesforce after our last write by another user",
                    our_values={k: last.values[k] for k in changed} if last.values else {},
                    sf_values={k: sf.values[k] for k in changed} if sf.values else {},
                    incoming=dict(change.row or {}))


def plan_delta(changes: Iterable[Change], deletions: Iterable[Change],
               sf_state: Mapping[tuple[str, str], SfState], last_writes: Mapping[tuple[str, str], LastWrite], *,
               integration_user_ids: Iterable[str] = (), load_order: Sequence[str] = DEFAULT_LOAD_ORDER,
               skew: timedelta = timedelta(seconds=5)) -> DeltaPlan:
    """Split Clio changes and deletions into upserts, deletes (reverse dependency order)
    and conflicts. Keys of ``sf_state``/``last_writes`` are (sobject, source_system_id)."""
    users = set(integration_user_ids)
    upserts: list[Operation] = []
    deletes: list[Operation] = []
    conflicts: list[Conflict] = []
    skipped: list[tuple[str, str, str]] = []
    for ch in changes:
        key = (ch.sobject, ch.source_system_id)
        sf = sf_state.get(key)
        if sf is None:
            upserts.append(Operation("upsert", ch.sobject, ch.source_system_id, None, ch.row))
            continue
        c = _conflict(ch, "upsert", sf, last_writes.get(key), users, skew)
        if c:
            conflicts.append(c)
        else:
            upserts.append(Operation("upsert", ch.sobject, ch.source_system_id, sf.sf_id, ch.row))
    for ch in deletions:
        key = (ch.sobject, ch.source_system_id)
        sf = sf_state.get(key)
        if sf is None:
            skipped.append((ch.sobject, ch.source_system_id, "already absent from Salesforce"))
            continue
        c = _conflict(ch, "delete", sf, last_writes.get(key), users, skew)
        if c:
            conflicts.append(c)
        else:
            deletes.append(Operation("delete", ch.sobject, ch.source_system_id, sf.sf_id))
    rank = _order_key(load_order)
    unknown = len(load_order)
    upserts.sort(key=lambda o: (rank.get(o.sobject, unknown), o.source_system_id))
    deletes.sort(key=lambda o: (-rank.get(o.sobject, unknown), o.source_system_id))
    return DeltaPlan(upserts, deletes, conflicts, skipped)


def last_writes_from_ledger(df: Any, written_rows: Mapping[tuple[str, str], Mapping[str, Any]] | None = None
                            ) -> dict[tuple[str, str], LastWrite]:
    """Build ``last_writes`` from :func:`clio2sf.ledger.last_write_by_record` output."""
    out = {}
    for rec in df.itertuples(index=False):
        key = (rec.object, rec.source_system_id)
        out[key] = LastWrite(rec.sf_id, rec.at.to_pydatetime(), (written_rows or {}).get(key))
    return out


# ------------------------------------------------------------------ conflict reports


def write_conflicts_jsonl(path: Any, conflicts: Iterable[Conflict]) -> Any:
    text = "".join(json.dumps(asdict(c), default=reports.json_default, sort_keys=True) + "\n" for c in conflicts)
    return reports.write_text(path, text)


def conflicts_html(conflicts: list[Conflict], title: str = "Delta conflicts") -> str:
    head = reports.banner(f"{len(conflicts)} record(s) queued instead of overwritten" if conflicts
                          else "No conflicts", "warn" if conflicts else "ok")
    rows = [[c.sobject, c.source_system_id, c.sf_id, c.action, c.sf_modified_at, c.sf_modified_by,
             c.our_last_write_at, ", ".join(c.changed_fields), c.reason,
             "; ".join(f"{k}: ours={reports.to_text(c.our_values.get(k))} theirs={reports.to_text(c.sf_values.get(k))}"
                       for k in c.changed_fields)] for c in conflicts]
    table = reports.table(["Object", "Record", "Salesforce Id", "Action", "Salesforce modified", "Modified by",
                           "Our last write", "Changed fields", "Reason", "Values"], rows)
    return reports.page(title, head + table, subtitle="Resolve each record, then re-run the delta")


def write_conflicts_html(path: Any, conflicts: list[Conflict]) -> Any:
    return reports.write_text(path, conflicts_html(conflicts))


def merge_sorted_ids(*streams: Iterable[int]) -> Iterator[int]:
    """Merge ascending id streams without repeats (e.g. id pages from several batches)."""
    last = None
    for i in heapq.merge(*streams):
        if i != last:
            yield i
            last = i
