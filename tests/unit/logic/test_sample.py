"""Sample selection: size, closure under relationships, determinism, streaming filter."""

from __future__ import annotations

import random

import pytest

from clio2sf.sample import Sample, choose_sample, closure_violations, filter_envelopes, parent_refs

from .clio_fixtures import synthetic_firm

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def firm():
    return synthetic_firm()


def test_sample_is_sized_spanning_and_closed(firm):
    sample = choose_sample(firm, seed=7)
    assert 200 <= sample.total <= 500, sample.counts()
    for obj in ("matters", "contacts", "bills", "activities", "calendar_entries", "tasks", "relationships",
                "documents", "matter_notes", "contact_notes", "communications", "bank_transactions"):
        assert sample.ids.get(obj), f"{obj} missing from the sample"
    kinds = {e["data"]["type"] for e in filter_envelopes(sample, "activities", firm["activities"])}
    assert kinds == {"TimeEntry", "ExpenseEntry"}
    assert not sample.missing
    assert closure_violations(sample, firm) == []
    # explicit chain: every chosen time entry's matter, its client and that client's company are in
    contacts = {e["clio_id"]: e for e in firm["contacts"]}
    for act in filter_envelopes(sample, "activities", firm["activities"]):
        matter_id = act["data"]["matter"]["id"]
        assert matter_id in sample.ids["matters"]
        matter = next(m for m in firm["matters"] if m["clio_id"] == matter_id)
        client = matter["data"]["client"]["id"]
        assert client in sample.ids["contacts"]
        company = contacts[client]["data"].get("company")
        if company:
            assert company["id"] in sample.ids["contacts"]


def test_deterministic_and_order_independent(firm):
    a = choose_sample(firm, seed=3)
    shuffled = {k: random.Random(5).sample(v, len(v)) for k, v in firm.items()}
    b = choose_sample(shuffled, seed=3)
    assert a.ids == b.ids
    assert choose_sample(firm, seed=4).ids != a.ids


def test_callable_index_and_json_round_trip(firm):
    calls = []

    def index(name):
        calls.append(name)
        return iter(firm.get(name, []))

    s = choose_sample(index, seed=1)
    assert s.ids == choose_sample(firm, seed=1).ids
    assert Sample.from_json(s.to_json()).ids == s.ids
    assert list(filter_envelopes(s, "users", firm["users"])) == firm["users"]  # reference objects pass


def test_max_total_shrinks_quotas(firm):
    s = choose_sample(firm, seed=2, max_total=250)
    assert s.total <= 250
    assert closure_violations(s, firm) == []


def test_dangling_parent_reported_and_bad_id_named():
    firm = {"matters": [{"source_system_id": "matter-1", "clio_id": 1, "data": {"id": 1, "client": {"id": 99}}}],
            "contacts": []}
    s = choose_sample(firm, seed=0)
    assert s.missing == {"contacts": {99}}
    with pytest.raises(ValueError, match="matters: record 2: client.id"):
        parent_refs("matters", {"id": 2, "client": {"id": "abc"}})
    with pytest.raises(TypeError, match="one-shot"):
        choose_sample({"matters": iter([])})


def test_custom_field_references_and_related_companies_are_parents():
    from clio2sf.sample import parent_refs

    data = {"id": 7, "client": {"id": 1},
            "custom_field_values": [{"field_type": "contact", "value": "42"}, {"field_type": "matter", "value": "9"},
                                    {"field_type": "text_line", "value": "13"}, {"field_type": "contact", "value": None}]}
    assert sorted(parent_refs("matters", data)) == [("contacts", 1), ("contacts", 42), ("matters", 9)]
    person = {"id": 2, "company": None, "related_contacts": [{"id": 5, "type": "Company"}, {"id": 6, "type": "Person"}]}
    assert parent_refs("contacts", person) == [("contacts", 5)]
