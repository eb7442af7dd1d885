"""Reconciliation: exact run, a missing record with its reason, a duplicate, money totals."""

from __future__ import annotations

import csv
import json
from decimal import Decimal

import pytest

from clio2sf.reconcile import (
    TargetTotals,
    count_duplicates,
    reconcile,
    source_totals,
    sum_field,
    write_reconciliation_csv,
    write_reconciliation_html,
    write_reconciliation_json,
)

from .clio_fixtures import small_firm

pytestmark = pytest.mark.unit
OBJECTS = ["contacts", "matters", "activities", "bills", "bank_accounts", "bank_transactions"]


def _target(firm, drop=(), dup=()) -> TargetTotals:
    ids = {o: [e["source_system_id"] for e in firm[o] if e["source_system_id"] not in drop] for o in OBJECTS}
    for ssid in dup:
        ids[ssid.split("-")[0] + "s" if not ssid.startswith("activity") else "activities"].append(ssid)
    sf_bills = [{"Id": "a01", "Total__c": 475.5}]
    time_rows = [{"Id": "a02", "Hours__c": 1.5, "Amount__c": 450.0}, {"Id": "a03", "Hours__c": 0.5, "Amount__c": 150}]
    ledger_rows = [{"Id": "a04", "Amount__c": 1000, "Trust_Account__c": "1", "Matter": "7"},
                   {"Id": "a05", "Amount__c": -250.25, "Trust_Account__c": "1", "Matter": "7"}]
    amounts = {**sum_field(sf_bills, "Total__c", prefix="bills.total"),
               **sum_field(time_rows, "Hours__c", prefix="time.hours"),
               **sum_field(time_rows, "Amount__c", prefix="time.amount"),
               "expenses.amount": Decimal("25.50"),
               **sum_field(ledger_rows, "Amount__c", "Trust_Account__c", prefix="trust.account."),
               **sum_field(ledger_rows, "Amount__c", "Matter", prefix="trust.matter.")}
    return TargetTotals(ids=ids, amounts=amounts)


def test_source_totals():
    src = source_totals(small_firm(), OBJECTS)
    assert src.counts == {"activities": 3, "bank_accounts": 2, "bank_transactions": 3, "bills": 1,
                          "contacts": 3, "matters": 2}
    assert src.amounts == {"bills.total": Decimal("475.5"), "time.hours": Decimal("2.0"),
                           "time.amount": Decimal("600.0"), "expenses.amount": Decimal("25.5"),
                           "trust.account.1": Decimal("749.75"), "trust.matter.7": Decimal("749.75")}


def test_exact_reconciliation(tmp_path):
    firm = small_firm()
    rec = reconcile(source_totals(firm, OBJECTS), _target(firm))
    assert rec.exact and rec.headline() == "0 lost, 0 duplicated"
    write_reconciliation_html(tmp_path / "r.html", rec)
    assert "0 lost, 0 duplicated" in (tmp_path / "r.html").read_text()


def test_missing_rejected_and_duplicate(tmp_path):
    firm = small_firm()
    rejects = [{"phase": "load", "object": "contacts", "source_system_id": "contact-9002", "field": "last_name",
                "rule": "REQUIRED_FIELD_MISSING", "message": "contact-9002: LastName missing", "repair": None},
               {"phase": "transform", "object": "matters", "source_system_id": "matter-7", "field": "description",
                "rule": "truncated", "message": "matter-7: description truncated", "repair": "truncated to 255"}]
    target = _target(firm, drop={"contact-9002", "activity-33"}, dup={"matter-8"})
    target.amounts["expenses.amount"] = Decimal("0")
    rec = reconcile(source_totals(firm, OBJECTS), target, rejects)
    by = {o.object: o for o in rec.objects}
    assert (by["contacts"].rejected, by["contacts"].missing, by["contacts"].ok) == (1, 0, True)
    assert by["contacts"].reject_reasons == {"REQUIRED_FIELD_MISSING": 1}
    assert (by["activities"].missing, by["activities"].missing_ids) == (1, ["activity-33"])
    assert (by["matters"].duplicates, by["matters"].duplicate_ids, by["matters"].rejected) == (1, {"matter-8": 2}, 0)
    assert not rec.exact
    assert rec.headline() == "1 lost, 1 duplicated, 1 amount figure(s) differ"
    bad = [a.figure for a in rec.amounts if not a.ok]
    assert bad == ["expenses.amount"]

    doc = json.loads(write_reconciliation_json(tmp_path / "r.json", rec).read_text())
    assert doc["lost"] == 1 and doc["duplicated"] == 1 and doc["exact"] is False
    rows = list(csv.DictReader(write_reconciliation_csv(tmp_path / "r.csv", rec).open()))
    assert {r["object"] for r in rows} >= {"contacts", "figure:expenses.amount"}
    html = write_reconciliation_html(tmp_path / "r.html", rec).read_text()
    assert "activity-33" in html and "REQUIRED_FIELD_MISSING" in html and "matter-8" in html


def test_counts_only_target_and_helpers():
    firm = small_firm()
    src = source_totals(firm, ["matters"])
    rec = reconcile(src, TargetTotals(counts={"matters": 3}, duplicates={"matters": {"matter-7": 2}}))
    [m] = rec.objects
    assert (m.loaded, m.missing, m.duplicates) == (2, 0, 1)
    assert count_duplicates(["a", "b", "a", "a"]) == {"a": 3}
    with pytest.raises(ValueError, match="bill-1: total"):
        source_totals({"bills": [{"source_system_id": "bill-1", "data": {"total": "x"}}]})


def test_overlap_restaged_record_counts_once():
    firm = small_firm()
    firm["bills"].append(firm["bills"][0])
    assert source_totals(firm, ["bills"]).amounts["bills.total"] == Decimal("475.5")


def test_restaged_record_counts_its_last_version_summed_in_first_staged_order():
    firm = small_firm()
    first = firm["bills"][0]
    firm["bills"].append({**first, "data": {**first["data"], "total": "100.25"}})
    src = source_totals(firm, ["bills"])
    assert src.amounts["bills.total"] == Decimal("100.25") and src.counts == {"bills": 1}
    calls: list[str] = []

    def index(name):
        calls.append(name)
        return iter(firm[name])

    assert source_totals(index, ["bills"]).amounts == src.amounts and calls == ["bills", "bills"]


def test_restaged_record_whose_last_version_has_no_figure_counts_none():
    """A trust transaction staged again on the operating account (or, a part's figures kept, on a matter of
    another part) has no trust figure in its last version: its first version's no longer counts (fails on
    e41918b: the first version's figures were kept when the last had none)."""
    accounts = [{"source_system_id": f"bank_account-{a}", "data": {"id": a, "type": t}}
                for a, t in ((1, "Trust"), (2, "Operating"))]

    def txn(account: int, matter: int, amount: str) -> dict:
        return {"source_system_id": "bank_transaction-5", "data": {
            "id": 5, "bank_account_id": account, "amount": amount, "matter": {"id": matter}}}

    other = {"source_system_id": "bank_transaction-6", "data": {"id": 6, "bank_account_id": 1, "amount": "1.00",
                                                                  "matter": {"id": 7}}}
    firm = {"bank_accounts": accounts, "bank_transactions": [txn(1, 7, "10.00"), other, txn(2, 7, "10.00")]}
    got = source_totals(firm, ["bank_accounts", "bank_transactions"]).amounts
    assert got == {"trust.account.1": Decimal("1.00"), "trust.matter.7": Decimal("1.00")}
    firm["bank_transactions"][2] = txn(1, 8, "10.00")  # moved to matter 8; the figures of matter 7 only
    got = source_totals(firm, ["bank_accounts", "bank_transactions"], figures=lambda k: k == "trust.matter.7").amounts
    assert got == {"trust.matter.7": Decimal("1.00")}


@pytest.mark.parametrize("on_disk", [False, True])
def test_id_set_answers_as_a_set_of_strings(monkeypatch, on_disk):
    """``IdSet`` (numbers per kind, other ids as text) gives a set of strings' answers: membership, size,
    common ids, the first missing in string order, union and difference, over ids that are not numbers
    (occurrences, leading zeros, other digits) and across sort runs; ``on_disk``: a kind of more than
    ``RUN`` ids kept in files (runs as added, a sorted file once read), the same answers."""
    import random

    from clio2sf import reconcile as mod
    from clio2sf import reports
    from clio2sf.reconcile import IdSet

    monkeypatch.setattr(mod, "RUN", 7)
    monkeypatch.setattr(mod, "BLOCK", 5)
    folder = reports.SpillFolder() if on_disk else None
    rnd = random.Random(5)
    pool = ([f"activity-{i}" for i in range(200)] + [f"matter-{i}" for i in range(0, 60, 3)]
            + ["activity-007", "activity-0", "activity-٣", "calendar_entry-4@20240101T150000Z", "odd", "-5",
               "activity-12345678901234567890", "a-b-9"])
    files = 0
    for _ in range(30):
        a = [rnd.choice(pool) for _ in range(rnd.randint(0, 150))]
        b = [rnd.choice(pool) for _ in range(rnd.randint(0, 150))]
        sa, sb, ia, ib = set(a), set(b), IdSet(a, folder), IdSet(sorted(b), folder)
        assert len(ia) == len(sa) and ia == sa and set(ia) == sa and all((x in ia) == (x in sa) for x in pool)
        assert ia.common(ib) == len(sa & sb) and ib.common(ia) == len(sa & sb)
        skip = set(rnd.sample(pool, 5))
        assert ia.first_missing(ib, 10, skip) == sorted(sa - sb - skip)[:10]
        assert (ia | ib) == sa | sb and (ia - ib) == sa - sb
        assert (ia == IdSet(a)) and (IdSet(a) == ia)
        files += sum(isinstance(n, mod.NumberFile) for n in ia.numbers.values())
    assert (files > 20) == on_disk  # the large kinds were on disk, never in memory whole
    more = IdSet(["matter-3"], folder)
    assert "matter-3" in more
    more.add("matter-1")  # added after a read: merged with the sorted numbers
    assert more == {"matter-1", "matter-3"} and 5 not in more
    big = IdSet([f"matter-{i}" for i in range(40, 0, -1)], folder)
    big.add_numbers("matter", mod.array("q", [3, 50]))
    big.add("matter-60")
    assert big == {f"matter-{i}" for i in [*range(1, 41), 50, 60]}
    big.add("matter-0")  # added after a read of a kind on disk
    assert len(big) == 43 and "matter-0" in big and "matter-45" not in big


def test_number_runs_merge_count_and_write_a_sorted_file(monkeypatch):
    """Numbers appended in any order come back merged, counted and as a sorted file; in increasing order
    their own file is the sorted one (no second file); fewer than ``RUN`` of them never touch the disk."""
    import os
    import random

    from clio2sf import reconcile as mod
    from clio2sf import reports

    monkeypatch.setattr(mod, "RUN", 8)
    monkeypatch.setattr(mod, "BLOCK", 3)
    folder = reports.SpillFolder()
    rnd = random.Random(3)
    for n in (0, 5, 8, 9, 50, 200):
        values = [rnd.randint(-20, 40) for _ in range(n)]
        runs = mod.NumberRuns(folder)
        for v in values:
            runs.append(v)
        assert list(runs.merged()) == sorted(values) and len(runs) == n
        assert list(runs.counted()) == sorted(__import__("collections").Counter(values).items())
        unique = runs.unique()
        assert list(unique) == sorted(set(values)) and len(unique) == len(set(values))
        assert isinstance(unique, mod.NumberFile) == (n >= 8)
        assert all((v in unique) == (v in set(values)) for v in range(-25, 45))
    ordered = mod.NumberRuns(folder)
    for v in range(0, 300, 3):
        ordered.append(v)
    assert ordered.strict and ordered.unique().file is ordered.file
    path = ordered.file.path
    del ordered
    assert not os.path.exists(path)  # a file goes with the last reader of it


def test_reconcile_compares_id_sets_as_sets():
    from clio2sf.reconcile import FoundRows, IdSet, SourceTotals

    expected = {f"matter-{i}" for i in range(1, 11)} | {"matter-x"}
    rows = [f"matter-{i}" for i in (1, 2, 3, 3, 4, 5, 6, 7, 8, 11)]
    rejects = [{"object": "matters", "source_system_id": "matter-9", "rule": "bad"},
               {"object": "matters", "source_system_id": "matter-2", "rule": "bad"}]  # loaded after all
    plain = reconcile(SourceTotals(ids={"matters": expected}), TargetTotals(ids={"matters": rows}), rejects)
    found = FoundRows(IdSet(r for r in rows), len(rows), count_duplicates(rows))
    compact = reconcile(SourceTotals(ids={"matters": IdSet(expected)}), TargetTotals(found={"matters": found}),
                        rejects)
    assert compact == plain
    [m] = compact.objects
    assert (m.loaded, m.rejected, m.missing, m.unexpected, m.missing_ids) == (8, 1, 2, 1, ["matter-10", "matter-x"])
