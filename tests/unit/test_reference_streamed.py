"""The reference files' parts built from the extracted matters are streamed (``summarize_extraction``):
no matter is held beyond the one being written, and the files are what the whole lists would give."""

from __future__ import annotations

import json

import pytest

from clio2sf import staging
from clio2sf.discovery.reference import FROM_EXTRACTED, reference_exports
from clio2sf.mapping.rates import rate_hierarchy_document
from clio2sf.reports import Streamed, write_json

pytestmark = pytest.mark.unit


def test_a_streamed_list_is_written_byte_for_byte_as_the_whole_list(tmp_path):
    items = [{"b": 1, "a": [1, {"x": "é"}], "n": None}, {"z": []}, "plain"]
    doc = {"outer": [{"list": items, "empty": [], "k": "v"}], "top": items, "none": []}
    streamed = {"outer": [{"list": Streamed(lambda: iter(items)), "empty": Streamed(lambda: iter(())), "k": "v"}],
                "top": Streamed(lambda: (i for i in items)), "none": Streamed(list)}
    write_json(tmp_path / "whole.json", doc)
    write_json(tmp_path / "streamed.json", streamed)
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    assert json.loads((tmp_path / "streamed.json").read_text())["top"] == items


def test_a_streamed_object_is_written_byte_for_byte_as_the_whole_object(tmp_path):
    """``StreamedDict``: (key, value) pairs in key order written as the object ``sort_keys`` would write."""
    from clio2sf.reports import StreamedDict

    names = {"matter-10": "00010-Lopez", "matter-9": "Zoë \"Q\" <b>", "contact-1": {"n": [1, 2]}, "é": None}
    doc = {"names": names, "inner": [{"empty": {}, "k": names}], "z": 1}
    streamed = {"names": StreamedDict(lambda: iter(sorted(names.items()))),
                "inner": [{"empty": StreamedDict(list), "k": StreamedDict(lambda: sorted(names.items()))}], "z": 1}
    write_json(tmp_path / "whole.json", doc)
    write_json(tmp_path / "streamed.json", streamed)
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()


class Rate(dict):
    """A matter's custom rate that counts how many are alive (held by something) at once."""

    alive = 0
    peak = 0

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        Rate.alive += 1
        Rate.peak = max(Rate.peak, Rate.alive)

    def __del__(self):
        Rate.alive -= 1


CONFIG = {"users": [{"id": 1, "name": "Ann", "rate": 300.0, "enabled": True}],
          "activity_descriptions": [{"id": 31, "name": "Court", "category_type": "hourly", "rate": {"amount": 1.0}}],
          "bank_accounts": [{"id": 71, "type": "Trust", "name": "IOLTA"}]}
MATTERS = 300


def _matter(i: int) -> dict:
    rate = Rate({"type": "FlatRate", "on_invoice": False,
                 "rates": [{"rate": 100.0 + i, "activity_description": {"id": 31, "name": "Court"}}]})
    return {"id": i, "display_number": f"{i:05d}-X", "billing_method": ("flat", "hourly")[i % 2],
            "custom_rate": rate if i % 3 else None,
            "evergreen_retainer": {"minimum_threshold": 500.0} if i % 5 == 0 else None}


def test_the_extracted_matters_are_written_one_at_a_time_not_held(tmp_path, monkeypatch):
    """``complete_reference_files`` on 300 matters (200 with a custom rate, 60 with an evergreen retainer):
    at most a few custom rates are alive at once (before: every matter with a custom rate or a retainer
    was kept, then its rate item, then a scrubbed copy of both); the files hold what the whole lists give."""
    from clio2sf_airflow.phases import discover

    root = tmp_path / "m1"
    staging.write_json(root / "discover" / "clio_config.json", CONFIG)
    for name in ("matters", "activity_rates"):
        staging.write_json(staging.raw_dir(root, name) / staging.MANIFEST, {"object": name, "batches": [],
                                                                            "complete": True})
    rates = [{"id": 41, "rate": 275.0, "flat_rate": False, "contact_id": 9001, "user": {"id": 1, "name": "Ann"}}]

    def read_records(_root, name):  # as the staged batches are read: each record made as it is read
        if name == "activity_rates":
            yield from ({"data": dict(r)} for r in rates)
            return
        for i in range(1, MATTERS + 1):
            yield {"data": _matter(i)}

    monkeypatch.setattr(discover, "read_records", read_records)
    Rate.alive = Rate.peak = 0
    counts = discover.complete_reference_files(root)
    assert Rate.peak <= 3, Rate.peak  # before: 201 (every custom rate held at once)

    matters = [_matter(i) for i in range(1, MATTERS + 1)]
    methods = {"flat": 150, "hourly": 150}
    whole = reference_exports(
        {**CONFIG, "matter_billing_methods": methods,
         "matters": [m for m in matters if m["custom_rate"] or m["evergreen_retainer"]]},
        rate_document=rate_hierarchy_document(CONFIG["users"], [], matters, CONFIG["activity_descriptions"], rates))
    for name in FROM_EXTRACTED:
        got = staging.read_json(root / "discover" / "reference" / name)
        assert {**got, "generated_at": None} == json.loads(json.dumps({**whole[name], "generated_at": None})), name
    rate_doc = staging.read_json(root / "discover" / "reference" / "rate_hierarchy.json")["items"][0]
    assert len(rate_doc["matter"]) == 200 and counts["rate_hierarchy.json"] == 1
    trust = staging.read_json(root / "discover" / "reference" / "trust_accounting_rules.json")
    assert [e["matter_id"] for e in trust["evergreen_retainers"]] == list(range(5, MATTERS + 1, 5))


def test_the_client_rates_are_held_as_a_tuple_each_and_written_as_the_whole_list(tmp_path):
    """The extracted activity rates (one per contact here, as the sandbox firm's): the rate document holds a
    tuple per rate (bytes held measured with tracemalloc, deterministic), the dicts are made as the file is
    written (before: a dict per rate and one per contact); the file is the whole list's."""
    import tracemalloc

    n = 5_000

    def rates():
        for i in range(n):
            yield {"data": {"id": 50_000 + i, "rate": 200.0 + i, "flat_rate": False, "contact_id": 9_000 + i,
                            "co_counsel_contact_id": None, "user": {"id": 1, "name": "Ann Lee"}, "group": None}}

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        doc = rate_hierarchy_document(CONFIG["users"], [], Streamed(list), [], rates())
        held = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert held < 400, held  # about 300; before: a dict per rate and per contact, about 720
    write_json(tmp_path / "streamed.json", {"items": [doc]})
    whole = rate_hierarchy_document(CONFIG["users"], [], [], [], rates())
    write_json(tmp_path / "whole.json", {"items": [whole]})
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    assert json.loads((tmp_path / "whole.json").read_text())["items"][0]["client"][1] == {
        "contact_id": 9_001, "source_system_id": "contact-9001", "name": None, "rates": [
            {"rate_id": 50_001, "rate": 201.0, "flat_rate": False, "applies_to": "user", "applies_to_id": 1,
             "applies_to_name": "Ann Lee", "co_counsel_contact_id": None}]}
