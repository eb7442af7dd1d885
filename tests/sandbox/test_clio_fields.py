"""Pure tests of the Clio sandbox: field plans from the official spec, the catalog against it, blobs,
limits, the firm's books."""

from __future__ import annotations

import pytest

from clio2sf.catalog import CLIO_OBJECTS
from sandbox.clio import blobs
from sandbox.clio.config import Knobs
from sandbox.clio.fields import FieldError, compile_plan, project, split_top
from sandbox.clio.firm import DEFECTS, FirmBuilder
from sandbox.clio.ratelimit import RateLimiter, in_peak, limit_in_force
from sandbox.clio.schema import model
from sandbox.clio.spec import item_schema, load_spec, schema_properties

pytestmark = pytest.mark.unit


def test_default_selection_is_id_and_etag() -> None:
    assert compile_plan("Matter", None) == (("id", None), ("etag", None))
    rec = {"id": 1, "etag": '"x"', "status": "Open"}
    assert project(rec, compile_plan("Matter", ""), "Matter") == {"id": 1, "etag": '"x"'}


def test_projection_nesting_and_nulls() -> None:
    rec = {"id": 7, "client": {"id": 3, "etag": '"e"', "name": "Jo"}, "email_addresses": [
        {"id": 1, "etag": '"a"', "address": "a@x.test", "primary": True}], "practice_area": None}
    plan = compile_plan("Matter", "id,client{name},practice_area{name},close_date")
    assert project(rec, plan, "Matter") == {"id": 7, "client": {"name": "Jo"}, "practice_area": None,
                                            "close_date": None}
    bare = compile_plan("Matter", "client")
    assert project(rec, bare, "Matter") == {"client": {"id": 3, "etag": '"e"'}}
    plan = compile_plan("Contact", "email_addresses{address,primary}")
    assert project(rec, plan, "Contact") == {"email_addresses": [{"address": "a@x.test", "primary": True}]}


def test_every_documented_field_is_selectable() -> None:
    """The allowed fields are the spec's, nothing more: every property compiles, nothing else does."""
    for op in model().operations.values():
        props = model().fields(op.schema)
        if props:
            assert [n for n, _ in compile_plan(op.schema, ",".join(props))] == list(props)
        for name, f in props.items():
            if f.nested and model().fields(f.target):
                sub = ",".join(model().fields(f.target))
                assert compile_plan(op.schema, f"{name}{{{sub}}}")[0][0] == name
        with pytest.raises(FieldError):
            compile_plan(op.schema, "id,not_a_clio_field")


@pytest.mark.parametrize("fields, needle", [
    ("id,bogus", "bogus"), ("client{bogus}", "bogus"), ("client{company{name}}", "deeper"),
    ("nope{id}", "nope"), ("client{id", "Malformed"), ("status{id}", "not a nested"),
])
def test_bad_selections_name_the_field(fields: str, needle: str) -> None:
    with pytest.raises(FieldError, match=needle):
        compile_plan("Matter", fields)


def test_every_catalog_selection_compiles() -> None:
    for obj in CLIO_OBJECTS:
        plan = compile_plan(model().operations[obj.endpoint].schema, obj.fields)
        assert [name for name, _ in plan] == [p.split("{")[0] for p in split_top(obj.fields)]


def test_catalog_fields_exist_in_official_spec() -> None:
    """Every field the extractor asks for is a real Clio field (nested ones included)."""
    spec = load_spec()
    missing = []
    for obj in CLIO_OBJECTS:
        props = schema_properties(spec, item_schema(spec, obj.endpoint))
        for part in split_top(obj.fields):
            name, _, sub = part.partition("{")
            if name not in props:
                missing.append(f"{obj.name}.{name}")
                continue
            if sub:
                target = props[name].get("items", props[name])
                sub_props = schema_properties(spec, target["$ref"].rsplit("/", 1)[-1])
                missing += [f"{obj.name}.{name}{{{s}}}" for s in sub.rstrip("}").split(",") if s not in sub_props]
    assert missing == []


def test_catalog_requests_use_only_documented_parameters() -> None:
    """The extractor's first request of every catalog object is one the spec documents."""
    from clio2sf.extract import first_request
    from sandbox.clio.filters import build_query

    for obj in CLIO_OBJECTS:
        op = model().operations[obj.endpoint]
        _, params = first_request(obj, updated_since="2024-01-01T00:00:00Z" if obj.incremental else None)
        assert obj.ordered == ("order" in op.params), obj.name
        assert set(params) <= set(op.params), (obj.name, sorted(set(params) - set(op.params)))
        if "order" in params and op.orders:
            assert params["order"] in op.orders, obj.name
        build_query(op, [(k, str(v)) for k, v in params.items()])


@pytest.mark.parametrize("kind", sorted(blobs.KINDS))
def test_blob_bytes_are_deterministic_and_exact(kind: str) -> None:
    a = blobs.generate(42, 5, 1, kind, 5000, ref_doc=4)
    assert a == blobs.generate(42, 5, 1, kind, 5000, ref_doc=4)
    assert len(a) == 5000
    assert a != blobs.generate(42, 5, 2, kind, 5000, ref_doc=4)
    assert blobs.generate(42, 5, 1, kind, 0) == b""
    magic = {"pdf": b"%PDF", "docx": b"PK\x03\x04", "png": b"\x89PNG", "html": b"<html>", "txt": b""}[kind]
    assert a.startswith(magic)
    if kind == "html":
        assert b'src="data:image/png;base64,' in a


def test_signed_urls() -> None:
    sig = blobs.sign("s", 1, 2, 100)
    assert blobs.verify("s", 1, 2, 100, sig)
    assert not blobs.verify("s", 1, 3, 100, sig)
    assert not blobs.verify("other", 1, 2, 100, sig)


def test_fixed_window_counts_exactly() -> None:
    rl = RateLimiter()
    results = [rl.hit("t", 1000.0 + i * 0.01, 5, 2.0)[0] for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    allowed, remaining, reset, start = rl.hit("t", 1002.5, 5, 2.0)
    assert allowed and remaining == 4 and start == 1002.5 and reset == 1004.5
    assert rl.hit("other", 1000.0, 5, 2.0)[1] == 4


def test_limit_schedule_and_peak_hours() -> None:
    # 2026-11-30 is a Monday; 12:00 Los Angeles is peak, 22:00 is off-peak; Saturday is off-peak.
    monday_noon = 1796068800.0  # 2026-11-30T20:00:00Z
    assert in_peak(monday_noon, "04-19", "America/Los_Angeles")
    assert not in_peak(monday_noon + 10 * 3600, "04-19", "America/Los_Angeles")
    assert not in_peak(monday_noon - 2 * 86400, "04-19", "America/Los_Angeles")
    k = Knobs(rate_limit=50, offpeak_limit=300)
    assert limit_in_force(k, monday_noon) == 50
    assert limit_in_force(k, monday_noon + 10 * 3600) == 300
    k = Knobs(rate_limit=50, limit_schedule=[[100.0, 10]])
    assert limit_in_force(k, 99.0) == 50 and limit_in_force(k, 100.0) == 10
    assert limit_in_force(Knobs(rate_limit=None), 0) is None


def test_firm_is_deterministic_and_complete() -> None:
    a, b = FirmBuilder(7, 12), FirmBuilder(7, 12)
    a.build()
    b.build()
    assert a.data["contacts"] == b.data["contacts"]
    d = a.data
    assert {m["status"] for m in d["matters"]} == {"Open", "Pending", "Closed"}
    assert {m["billing_method"] for m in d["matters"]} == {"hourly", "flat", "contingency"}
    assert {x["type"] for x in d["activities"]} >= {"TimeEntry", "ExpenseEntry"}
    assert {cf["field_type"] for cf in d["custom_fields"]} == {
        "checkbox", "contact", "currency", "date", "time", "email", "matter", "numeric", "picklist",
        "text_area", "text_line", "url"}
    assert any(len(c["related_contacts"]) >= 3 for c in d["contacts"])
    assert any(c["type"] == "Person" and c["company"] is None for c in d["contacts"])
    assert {n["type"] for n in d["notes"]} == {"Matter", "Contact"}
    assert {c["type"] for c in d["communications"]} == {"EmailCommunication", "PhoneCommunication"}
    assert any(e["all_day"] for e in d["calendar_entries"]) and any(e["recurrence_rule"] for e in d["calendar_entries"])
    assert [u["id"] for u in d["users"]] == list(range(1001, 1013))


def test_dirty_knob_injects_every_defect() -> None:
    b = FirmBuilder(3, 60, dirty_rate=0.3)
    b.build()
    assert {x["defect"] for x in b.dirty} == set(DEFECTS)
    contacts = {c["id"]: c for c in b.data["contacts"]}
    for entry in b.dirty:
        if entry["defect"] == "invalid_email":
            assert "@@" in contacts[entry["id"]]["primary_email_address"]
        if entry["defect"] == "duplicate_contact":
            assert contacts[entry["id"]]["name"] == contacts[entry["duplicate_of"]]["name"]


def test_books_tie_out() -> None:
    """Per bill paid + credits + balance = total (interest included); trust never goes negative and
    each matter's trust transactions sum to its Trust account balance; voided allocations count nothing."""
    b = FirmBuilder(42, 120)
    b.build()
    d = b.data
    allocs: dict[int, dict[str, float]] = {}
    for a in d["allocations"]:
        if a["voided_at"] is None:
            kind = a["parent"]["type"]
            allocs.setdefault(a["bill"]["id"], {}).setdefault(kind, 0.0)
            allocs[a["bill"]["id"]][kind] += a["amount"]
    interest = {i["bill"]["id"]: i["total"] for i in d["interest_charges"]}
    for bill in d["bills"]:
        got = allocs.get(bill["id"], {})
        assert round(got.get("Payment", 0.0), 2) == bill["paid"], bill["number"]
        assert round(got.get("CreditMemo", 0.0), 2) == bill["credits_issued"], bill["number"]
        assert round(bill["paid"] + bill["credits_issued"] + bill["balance"], 2) == bill["total"], bill["number"]
        assert round(bill["sub_total"] + interest.get(bill["id"], 0.0), 2) == bill["total"], bill["number"]
    trust = {a["id"] for a in d["bank_accounts"] if a["type"] == "Trust"}
    running: dict[int, float] = {}
    for t in sorted(d["bank_transactions"], key=lambda t: (t["date"], t["_created_ts"], t["id"])):
        if t["bank_account_id"] in trust:
            running[t["matter"]["id"]] = round(running.get(t["matter"]["id"], 0.0) + t["amount"], 2)
            assert running[t["matter"]["id"]] >= 0, t
    for m in d["matters"]:
        balances = {x["id"]: x["balance"] for x in m["account_balances"]}
        assert round(sum(balances.values()), 2) == running.get(m["id"], 0.0), m["display_number"]
    kinds = {(a["parent"]["type"], (a["source_bank_account"] or {}).get("type"), a["voided_at"] is not None)
             for a in d["allocations"]}
    assert {("Payment", "Trust", False), ("Payment", None, False), ("Payment", None, True),
            ("CreditMemo", None, False)} <= kinds
    assert d["interest_charges"] and d["credit_memos"]
