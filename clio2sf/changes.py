"""What changed in Clio during a delta window: webhook events first, ``updated_since`` as the net,
full id sweeps only where no deletion events exist and when the ops schedule says so.

Per migrated object, :func:`plan_objects` picks a mode:

* ``events`` (the object's Clio webhook is enabled, unexpired, with ``created`` and ``updated``):
  the ids from the window's events, plus the ids an ``updated_since`` listing of ``id,updated_at``
  returns (the safety net for dropped deliveries: one page per 200 changed records), are read in
  ``ids[]`` batches with the object's full fields (:func:`detect_by_events`). A ``deleted`` event
  is trusted only as far as its id: a record counts as deleted when Clio no longer lists it.
* ``listing`` (no usable webhook): the full-field ``updated_since`` listing, as before webhooks.

The full id sweep (every id Clio lists, to find deletions by difference) runs for an object:

* every window when the migration has no webhooks at all (the behaviour before webhooks);
* with webhooks, only for objects whose model has no usable ``deleted`` event, and then only
  when ``sweep`` is ``now``, or ``auto`` and the last sweep is older than the ops interval;
* for every object with ``sweep=all`` (the final cutover: catches deletions whose delivery was lost).

Pure: Clio is reached through a ``fetch(path_or_url, params) -> (body, headers)`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from clio2sf.catalog import ClioObject
from clio2sf.webhook_events import OBJECT_MODELS

SWEEP_MODES = ("auto", "now", "all", "none")
#: ids per ``ids[]`` request: Clio's page limit, so one batch is one request.
IDS_BATCH = 200
NET_FIELDS = "id,updated_at"
CHANGE_EVENTS = frozenset({"created", "updated", "matter_opened", "matter_pended", "matter_closed"})

Fetch = Callable[[str, Mapping[str, Any] | None], tuple[dict[str, Any], Mapping[str, str]]]


@dataclass(frozen=True)
class ObjectPlan:
    name: str
    model: str | None
    mode: str  # events | listing
    sweep: bool
    reason: str


def plan_objects(names: Iterable[str], usable: Mapping[str, set[str]], *, sweep: str = "auto",
                 webhooks: bool, last_sweeps: Mapping[str, float] | None = None, now: float = 0.0,
                 interval_hours: float = 24.0, baseline: float | None = None) -> list[ObjectPlan]:
    """Choose each object's detection mode and whether its ids are swept this window.

    ``usable``: model → the events its webhook can deliver now (see
    :func:`clio2sf.webhook_events.usable_models`); ``webhooks``: the migration registered webhooks;
    ``last_sweeps``: object → epoch of its last sweep (``baseline`` when never swept, e.g. when the
    webhooks were registered, which follows the full extraction).
    """
    if sweep not in SWEEP_MODES:
        raise ValueError(f"sweep must be one of {SWEEP_MODES}, got {sweep!r}")
    out = []
    for name in names:
        model = OBJECT_MODELS.get(name)
        events = usable.get(model, set()) if model else set()
        mode = "events" if {"created", "updated"} <= events else "listing"
        if sweep == "all":
            do, why = True, "sweep=all (final cutover)"
        elif sweep == "none":
            do, why = False, "sweep=none"
        elif not webhooks:
            do, why = True, "no webhooks: deletions only by id sweep"
        elif "deleted" in events:
            do, why = False, "deletions come from deleted events"
        elif sweep == "now":
            do, why = True, "no deleted events; sweep=now"
        else:
            last = (last_sweeps or {}).get(name, baseline)
            due = last is None or now - last >= interval_hours * 3600
            do = due
            why = f"no deleted events; last sweep {'over' if due else 'under'} {interval_hours:g} h ago"
        out.append(ObjectPlan(name, model, mode, do, why))
    return out


@dataclass
class EventSummary:
    changed: set[int]
    deleted: set[int]
    files: list[str]
    events: int
    by_event: dict[str, int]


def summarize_events(events: Iterable[tuple[str, Mapping[str, Any]]]) -> EventSummary:
    """Ids changed and deleted according to a model's stored deliveries (duplicates collapse)."""
    changed: set[int] = set()
    deleted: set[int] = set()
    files: list[str] = []
    by_event: dict[str, int] = {}
    for name, doc in events:
        files.append(name)
        event = str(doc.get("event"))
        by_event[event] = by_event.get(event, 0) + 1
        rid = int(doc["id"])
        if event == "deleted":
            deleted.add(rid)
        elif event in CHANGE_EVENTS:
            changed.add(rid)
    return EventSummary(changed, deleted, files, sum(by_event.values()), by_event)


def _pages(fetch: Fetch, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    body, _ = fetch(path, params)
    while True:
        yield body
        nxt = ((body or {}).get("meta") or {}).get("paging", {}).get("next")
        if not nxt:
            return
        body, _ = fetch(nxt, None)


def net_ids(obj: ClioObject, fetch: Fetch, since: str | None) -> set[int]:
    """Ids of records changed since ``since`` (``id,updated_at`` only: small pages)."""
    if since is None:
        return set()
    params = {"limit": IDS_BATCH, "fields": NET_FIELDS, **obj.list_params, "updated_since": since}
    return {int(r["id"]) for page in _pages(fetch, obj.endpoint, params) for r in page["data"]}


def fetch_ids(obj: ClioObject, fetch: Fetch, ids: Iterable[int], batch: int = IDS_BATCH) -> Iterator[dict[str, Any]]:
    """The records with these ids, full fields, in ``ids[]`` batches (what Clio lists now)."""
    wanted = sorted({int(i) for i in ids})
    for start in range(0, len(wanted), batch):
        chunk = wanted[start:start + batch]
        params = {"limit": IDS_BATCH, "fields": obj.fields, **obj.list_params, "ids[]": chunk}
        for page in _pages(fetch, obj.endpoint, params):
            yield from page["data"]


@dataclass
class Detected:
    records: list[dict[str, Any]]
    gone: set[int]
    event_ids: int
    net_ids: int
    net_only: int  # changed records no delivery told us about (dropped or late deliveries)

    def counts(self) -> dict[str, int]:
        return {"records": len(self.records), "gone": len(self.gone), "event_ids": self.event_ids,
                "net_ids": self.net_ids, "net_only": self.net_only}


def detect_by_events(obj: ClioObject, fetch: Fetch, *, since: str | None, events: EventSummary,
                     batch: int = IDS_BATCH) -> Detected:
    """Events + net → the changed records to stage and the ids Clio no longer lists."""
    net = net_ids(obj, fetch, since)
    asked = events.changed | events.deleted | net
    records = list(fetch_ids(obj, fetch, asked, batch))
    found = {int(r["id"]) for r in records}
    gone = (events.changed | events.deleted) - found
    return Detected(records, gone, len(events.changed | events.deleted), len(net),
                    len(net - events.changed - events.deleted))


def remaining_ids(staged_ids: Iterable[Any], gone: Iterable[int]) -> list[Any]:
    """The staged ids minus those Clio no longer lists (the ``current ids`` a window's plan takes)."""
    dead = {str(g) for g in gone}
    return [i for i in staged_ids if str(i) not in dead]


def plan_report(plans: Iterable[ObjectPlan]) -> dict[str, dict[str, Any]]:
    return {p.name: asdict(p) for p in plans}
