"""Change detection of a delta window (pure): modes, sweep schedule, events + net, deletions."""

from __future__ import annotations

import pytest

from clio2sf import changes
from clio2sf import webhook_events as ev
from clio2sf.catalog import get

pytestmark = pytest.mark.unit
ALL = {"created", "updated", "deleted"}


def test_modes_and_sweeps_follow_the_webhooks_and_the_schedule():
    names = ["contacts", "matters", "relationships", "users"]
    usable = {"contact": ALL, "matter": {"created", "updated"}}
    plans = {p.name: p for p in changes.plan_objects(names, usable, webhooks=True, now=100_000.0,
                                                     baseline=100_000.0 - 3600, interval_hours=24)}
    assert plans["contacts"].mode == "events" and not plans["contacts"].sweep
    assert plans["matters"].mode == "events" and not plans["matters"].sweep  # no deleted event, not due yet
    assert plans["relationships"].mode == "listing" and not plans["relationships"].sweep
    due = {p.name: p.sweep for p in changes.plan_objects(names, usable, webhooks=True, now=100_000.0,
                                                         baseline=100_000.0 - 25 * 3600, interval_hours=24)}
    assert due == {"contacts": False, "matters": True, "relationships": True, "users": True}
    now = {p.name: p.sweep for p in changes.plan_objects(names, usable, webhooks=True, sweep="now")}
    assert now == due
    final = changes.plan_objects(names, usable, webhooks=True, sweep="all")
    assert all(p.sweep for p in final)
    legacy = changes.plan_objects(names, {}, webhooks=False)
    assert all(p.sweep and p.mode == "listing" for p in legacy)
    assert not any(p.sweep for p in changes.plan_objects(names, {}, webhooks=False, sweep="none"))
    with pytest.raises(ValueError, match="sweep"):
        changes.plan_objects(names, {}, webhooks=False, sweep="sometimes")


def test_usable_models_need_enabled_and_unexpired():
    subs = {"models": {"contact": {"status": "enabled", "expires_at": "2030-01-01T00:00:00Z", "events": ["created"]},
                       "matter": {"status": "pending", "expires_at": "2030-01-01T00:00:00Z", "events": ["created"]},
                       "task": {"status": "enabled", "expires_at": "2020-01-01T00:00:00Z", "events": ["created"]}}}
    assert ev.usable_models(subs, 1_700_000_000) == {"contact": {"created"}}
    assert ev.needs_renewal("2030-01-01T00:00:00Z", 1_700_000_000) is False
    assert ev.needs_renewal("2023-11-16T00:00:00Z", 1_700_000_000, within_hours=72) is True


class FakeClio:
    """Serves contacts by id; ``updated`` are what an updated_since listing returns."""

    def __init__(self, present: set[int], updated: set[int]) -> None:
        self.present, self.updated, self.calls = present, updated, []

    def __call__(self, path, params):
        self.calls.append((path, dict(params or {})))
        if "ids[]" in params:
            ids = [int(i) for i in params["ids[]"]]
            assert len(ids) <= changes.IDS_BATCH
            return {"data": [{"id": i, "name": f"c{i}"} for i in ids if i in self.present], "meta": {"paging": {}}}
        assert params["updated_since"] and params["fields"] == changes.NET_FIELDS
        return {"data": [{"id": i} for i in sorted(self.updated)], "meta": {"paging": {}}}, {}


def test_events_and_net_read_changed_records_by_id_and_find_deletions():
    fake = FakeClio(present=set(range(1, 500)) - {7}, updated={1, 2, 3, 300})
    fetch = lambda path, params: (r if isinstance(r := fake(path, params), tuple) else (r, {}))  # noqa: E731
    events = changes.summarize_events([
        ("a", {"id": 1, "event": "updated"}), ("b", {"id": 1, "event": "updated"}),  # a duplicate
        ("c", {"id": 2, "event": "created"}), ("d", {"id": 7, "event": "deleted"}),
        ("e", {"id": 9, "event": "deleted"}),  # deleted per the event, but Clio still lists it: not deleted
    ])
    assert events.by_event == {"updated": 2, "created": 1, "deleted": 2}
    got = changes.detect_by_events(get("contacts"), fetch, since="2026-01-01T00:00:00Z", events=events)
    assert sorted(r["id"] for r in got.records) == [1, 2, 3, 9, 300]
    assert got.gone == {7}
    assert got.net_only == 2  # 3 and 300: changed, but no delivery said so
    assert len(fake.calls) == 2  # one net page, one ids[] batch
    assert changes.remaining_ids([1, 7, "7", 8], got.gone) == [1, 8]


def test_ids_are_fetched_in_batches_of_the_page_limit():
    fake = FakeClio(present=set(range(1000)), updated=set())
    fetch = lambda path, params: (r if isinstance(r := fake(path, params), tuple) else (r, {}))  # noqa: E731
    got = list(changes.fetch_ids(get("matters"), fetch, range(450)))
    assert len(got) == 450 and len(fake.calls) == 3


def test_receiver_urls_are_https_only():
    assert ev.receiver_url("https://af.example/clio2sf/webhooks/", "harlow", "m1", "contact") == \
        "https://af.example/clio2sf/webhooks/harlow/m1/contact"
    with pytest.raises(ValueError, match="https"):
        ev.receiver_url("http://af.example/clio2sf/webhooks", "harlow", "m1", "contact")
    with pytest.raises(ValueError):
        ev.receiver_url("https://af.example", "..", "m1", "contact")
