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


def test_each_object_is_streamed_once_through_retries_and_closure(firm):
    """The quota rounds, the closure and the smaller retries decide from one stream per object: the
    sampler used to stream every object again in each round (xl: 1,177 CPU-s for select_sample)."""
    calls: dict[str, int] = {}

    def index(name):
        calls[name] = calls.get(name, 0) + 1
        return iter(firm.get(name, []))

    s = choose_sample(index, seed=5, max_total=150)  # too big at first: the quotas shrink and the choice is redone
    assert s.total <= 150 and closure_violations(s, firm) == []
    assert calls and max(calls.values()) == 1, calls
    assert s.ids == choose_sample(firm, seed=5, max_total=150).ids


def test_the_fields_decoder_chooses_the_same_sample(firm, tmp_path):
    """Records parsed by ``index_decoder`` (only the fields the choice reads) give the sample whole records give."""
    from clio2sf import staging
    from clio2sf.sample import index_decoder

    paths = {}
    for name, envs in firm.items():
        paths[name] = tmp_path / f"{name}.jsonl.gz"
        staging.write_jsonl_gz(paths[name], envs)
    s = choose_sample(lambda name: staging.read_jsonl_gz(paths[name], index_decoder(name)) if name in paths else (),
                      seed=9, max_total=300)
    assert s.ids == choose_sample(firm, seed=9, max_total=300).ids and s.total


def test_stage_sample_reads_each_object_at_most_twice(firm, tmp_path, monkeypatch):
    """select_sample's work: one read per object for the choice, one to keep the records chosen; the
    closure is checked on the records kept, before anything is written."""
    from clio2sf import extract, staging
    from clio2sf.sample import Sample, stage_sample, staged_index

    for name, envs in firm.items():
        folder = tmp_path / "raw" / name
        entry = staging.write_jsonl_gz(folder / "batch-00001.jsonl.gz", envs)
        staging.write_json(folder / staging.MANIFEST, {"object": name, "batches": [entry], "complete": True})
    reads: dict[str, int] = {}
    real = extract.read_records

    def counting(mroot, name, decoder=None):
        reads[name] = reads.get(name, 0) + 1
        return real(mroot, name, decoder)

    monkeypatch.setattr(extract, "read_records", counting)
    s = choose_sample(staged_index(tmp_path, sorted(firm)), seed=7, max_total=200)
    stage_sample(tmp_path, sorted(firm), s)
    assert s.total <= 200 and max(reads.values()) <= 2, reads
    assert Sample.from_json(staging.read_json(tmp_path / "sample" / "selection.json")).ids == s.ids
    staged = {name: list(real(tmp_path / "sample", name)) for name in firm}
    assert {n: {e["clio_id"] for e in envs} for n, envs in staged.items() if envs and n not in s.passthrough} == s.ids
    assert staged["users"] == firm["users"]


def test_stage_sample_refuses_a_sample_that_is_not_closed(firm, tmp_path):
    """The closure is checked on the records as they are staged; an open sample writes no selection."""
    from clio2sf import staging
    from clio2sf.sample import stage_sample

    for name, envs in firm.items():
        folder = tmp_path / "raw" / name
        entry = staging.write_jsonl_gz(folder / "batch-00001.jsonl.gz", envs)
        staging.write_json(folder / staging.MANIFEST, {"object": name, "batches": [entry], "complete": True})
    activity = next(e for e in firm["activities"])
    open_sample = Sample(ids={"activities": {activity["clio_id"]}}, seed=0)  # its matter is not in it
    with pytest.raises(RuntimeError, match=f"not closed.*{activity['source_system_id']}: parent matters"):
        stage_sample(tmp_path, sorted(firm), open_sample)
    assert staging.read_json(tmp_path / "sample" / "selection.json") is None


def test_a_closure_chaining_the_firm_is_kept_within_max_total(firm):
    """Contact custom fields that reference each other chain most contacts into one closure (the sandbox
    firm: one pick closed over 4,088 contacts and matters, whatever the quotas). The sample stays
    closed and within max_total, the chain left out, the objects outside it still represented."""
    from clio2sf.extract import envelope

    chained = dict(firm)
    people = [e for e in firm["contacts"] if e["data"]["type"] == "Person"]
    contacts = [e for e in firm["contacts"] if e["data"]["type"] != "Person"]
    for i, env in enumerate(people):
        data = dict(env["data"])
        nxt = people[(i + 1) % len(people)]["clio_id"]  # each person references the next: one chain of all
        data["custom_field_values"] = [{"field_type": "contact", "value": str(nxt)}]
        contacts.append(envelope("contacts", data, env["extracted_at"]))
    chained["contacts"] = contacts
    s = choose_sample(chained, seed=7, max_total=250)
    assert s.total <= 250, s.counts()
    assert closure_violations(s, chained) == [] and not s.missing
    assert not s.ids["contacts"] & {e["clio_id"] for e in people}  # the chain is left out
    shuffled = {k: random.Random(3).sample(v, len(v)) for k, v in chained.items()}  # ids out of order
    assert choose_sample(shuffled, seed=7, max_total=250).ids == s.ids
    for obj in ("matters", "activities", "documents", "tasks"):  # bills and relationships name people here
        assert s.ids.get(obj), f"{obj} missing from the sample: {s.counts()}"


def test_ranks_past_the_kept_best_read_in_order(firm, monkeypatch):
    """A round that reads past the best ranks kept per stratum sorts the stratum: the same sample."""
    from clio2sf import sample as mod

    want = choose_sample(firm, seed=11, max_total=250)
    monkeypatch.setattr(mod, "RANKED", 2)
    assert choose_sample(firm, seed=11, max_total=250).ids == want.ids


def _columns_bytes(table) -> int:
    columns = [table.cids, table.strata, table.ref_obj, table.ref_id, table.ref_end,
               getattr(table, "__dict__", {}).get("matters")]  # before: a column of its own
    return sum(c.buffer_info()[1] * c.itemsize for c in columns if c is not None)


def test_the_choice_keeps_a_records_matter_once_and_its_stratum_in_a_byte():
    """The compact columns of the choice (``_Table``): a record's matter id is read from its first matter
    reference, not kept in a column of its own (8 bytes a record more before), and its stratum code is a
    byte (4 before), which held the 1M-record firm's ``select_sample`` over its 1.2× growth goal. The
    matters read back are those of the records, whatever their shape."""
    from clio2sf.sample import _NO_MATTER, _Table

    datas = [{"id": i, "type": "TimeEntry" if i % 3 else "ExpenseEntry", "matter": {"id": 100 + i % 7},
              "bill": {"id": 500 + i}} for i in range(1, 2001)]
    datas += [{"id": 3001, "type": "TimeEntry"},  # no matter
              {"id": 3002, "type": "TimeEntry", "matter": {"id": "7"}},  # not an id the matter column takes
              {"id": 3003, "type": "TimeEntry", "matter": {"id": 2 ** 63}},  # too large for 8 bytes
              {"id": 3004, "type": "TimeEntry", "matter": None, "custom_field_values": [
                  {"field_type": "matter", "value": "9"}]}]  # a matter reference that is not its matter
    table = _Table("activities", [{"clio_id": d["id"], "data": d} for d in datas], seed=7)
    expected = [100 + i % 7 for i in range(1, 2001)] + [_NO_MATTER] * 4
    assert list(table.matters) == expected
    plain = _Table("activities", [{"clio_id": d["id"], "data": d} for d in datas[:2000]], seed=7)
    assert _columns_bytes(plain) / 2000 < 36  # cids 8, stratum 1, refs 2 x 9, ref end 4; before 42
    bills = _Table("bills", [{"clio_id": 1, "data": {"id": 1, "matters": [{"id": 5}]}}], seed=7)
    assert bills.matters is None and not bills.matter_other  # its matters are references, not its matter
    many = _Table("contacts", [{"clio_id": i, "data": {"id": i, "type": f"t{i}"}} for i in range(1, 301)], seed=7)
    assert [many.values[c] for c in many.strata] == [f"t{i}" for i in range(1, 301)]  # past 256 values
