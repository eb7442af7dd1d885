"""The books, computed from Clio's raw records and from Salesforce rows: they tie out, agree, and say so
when they do not (every kind of difference is a negative control)."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from clio2sf import books, reports

pytestmark = pytest.mark.unit


def env(obj: str, kind: str, data: dict) -> dict:
    return {"object": obj, "source_system_id": f"{kind}-{data['id']}", "data": data}


CLIO = {
    "bills": [
        env("bills", "bill", {"id": 1, "number": "1001", "state": "paid", "total": 1000.0, "balance": 0.0,
                              "client": {"id": 9}}),
        env("bills", "bill", {"id": 2, "number": "1002", "state": "awaiting_payment", "total": 515.0, "balance": 265.0,
                              "client": {"id": 9}}),
        env("bills", "bill", {"id": 3, "number": "1003", "state": "draft", "total": 80.0, "balance": 80.0,
                              "client": {"id": 9}}),
    ],
    "allocations": [
        env("allocations", "allocation", {"id": 11, "amount": 600.0, "bill": {"id": 1}, "voided_at": None,
                                          "parent": {"type": "Payment"}, "source_bank_account": {"type": "Trust"}}),
        env("allocations", "allocation", {"id": 12, "amount": 300.0, "bill": {"id": 1}, "voided_at": None,
                                          "parent": {"type": "Payment"}, "source_bank_account": None}),
        env("allocations", "allocation", {"id": 13, "amount": 100.0, "bill": {"id": 1}, "voided_at": None,
                                          "parent": {"type": "CreditMemo"}, "source_bank_account": None}),
        env("allocations", "allocation", {"id": 14, "amount": 250.0, "bill": {"id": 2}, "voided_at": None,
                                          "parent": {"type": "Payment"}, "source_bank_account": None}),
        env("allocations", "allocation", {"id": 15, "amount": 250.0, "bill": {"id": 2},
                                          "voided_at": "2024-02-01T00:00:00-05:00",
                                          "parent": {"type": "Payment"}, "source_bank_account": None}),
    ],
    "bank_accounts": [env("bank_accounts", "bank_account", {"id": 601, "type": "Operating"}),
                      env("bank_accounts", "bank_account", {"id": 602, "type": "Trust"})],
    "bank_transactions": [
        env("bank_transactions", "bank_transaction", {"id": 21, "bank_account_id": 602, "date": "2024-01-01",
                                                      "amount": 1000.0, "matter": {"id": 7}}),
        env("bank_transactions", "bank_transaction", {"id": 22, "bank_account_id": 602, "date": "2024-01-20",
                                                      "amount": -600.0, "matter": {"id": 7}}),
        env("bank_transactions", "bank_transaction", {"id": 23, "bank_account_id": 601, "date": "2024-01-20",
                                                      "amount": 600.0, "matter": {"id": 7}}),
    ],
    "matters": [env("matters", "matter", {"id": 7, "account_balances": [{"id": 602, "balance": 400.0}]}),
                env("matters", "matter", {"id": 8, "account_balances": []})],
    "outstanding_client_balances": [env("outstanding_client_balances", "outstanding_client_balance",
                                        {"id": 9, "contact": {"id": 9}, "total_outstanding_balance": 265.0})],
}
SF = {
    "Clio_Billing__c": [
        {"Clio_Id__c": "bill-1", "Clio_Invoice_Number__c": "1001", "Clio_Status__c": "Paid", "Clio_Total__c": 1000.0,
         "Clio_Balance__c": 0.0, "Contact__r.Clio_Id__c": "contact-9"},
        {"Clio_Id__c": "bill-2", "Clio_Invoice_Number__c": "1002", "Clio_Status__c": "Awaiting Payment",
         "Clio_Total__c": 515.0, "Clio_Balance__c": 265.0, "Contact__r.Clio_Id__c": "contact-9"},
        {"Clio_Id__c": "bill-3", "Clio_Status__c": "Draft", "Clio_Total__c": 80.0, "Clio_Balance__c": 80.0},
    ],
    "Clio_Payment__c": [
        {"Clio_Id__c": "allocation-11", "Clio_Amount__c": 600.0, "Clio_Kind__c": "Payment",
         "Clio_Source_Account_Type__c": "Trust", "Clio_Billing__r.Clio_Id__c": "bill-1"},
        {"Clio_Id__c": "allocation-12", "Clio_Amount__c": 300.0, "Clio_Kind__c": "Payment",
         "Clio_Billing__r.Clio_Id__c": "bill-1"},
        {"Clio_Id__c": "allocation-13", "Clio_Amount__c": 100.0, "Clio_Kind__c": "Credit Memo",
         "Clio_Billing__r.Clio_Id__c": "bill-1"},
        {"Clio_Id__c": "allocation-14", "Clio_Amount__c": 250.0, "Clio_Kind__c": "Payment",
         "Clio_Billing__r.Clio_Id__c": "bill-2"},
        {"Clio_Id__c": "allocation-15", "Clio_Amount__c": 250.0, "Clio_Kind__c": "Payment",
         "Clio_Voided_At__c": "2024-02-01T05:00:00.000+0000", "Clio_Billing__r.Clio_Id__c": "bill-2"},
    ],
    "Ledger__c": [
        {"Clio_Id__c": "bank_transaction-21", "Clio_Date__c": "2024-01-01", "Clio_Amount__c": 1000.0,
         "Clio_Bank_Account_Id__c": "602", "Case__r.Clio_Id__c": "matter-7"},
        {"Clio_Id__c": "bank_transaction-22", "Clio_Date__c": "2024-01-20", "Clio_Amount__c": -600.0,
         "Clio_Bank_Account_Id__c": "602", "Case__r.Clio_Id__c": "matter-7"},
        {"Clio_Id__c": "bank_transaction-23", "Clio_Date__c": "2024-01-20", "Clio_Amount__c": 600.0,
         "Clio_Bank_Account_Id__c": "601", "Case__r.Clio_Id__c": "matter-7"},
    ],
    "Clio_Client_Balance__c": [{"Clio_Id__c": "outstanding_client_balance-9", "Clio_Total_Outstanding__c": 265.0,
                                "Contact__r.Clio_Id__c": "contact-9"}],
}


def run(clio: dict | None = None, sf: dict | None = None, rejected=()) -> books.BooksReconciliation:
    clio, sf = clio or CLIO, sf or SF
    c = books.clio_books(lambda name: iter(clio.get(name, [])), clio)
    s = books.salesforce_books(lambda sobject, cols: iter(sf.get(sobject, [])), {"602"}, set(sf))
    return books.compare_books(c, s, rejected)


def test_books_tie_out_and_agree() -> None:
    rec = run()
    assert rec.exact, rec.to_json()
    bill1 = next(r for r in rec.bills if r.bill == "bill-1")
    assert bill1.clio == {"total": Decimal("1000.0"), "paid": Decimal("900.0"), "credited": Decimal("100.0"),
                          "outstanding": Decimal("0.0"), "paid_from_trust": Decimal("600.0"), "ties_out": True}
    assert [r.bill for r in rec.bills] == ["bill-1", "bill-2"]  # the draft owes nothing yet
    bill2 = next(r for r in rec.bills if r.bill == "bill-2")
    assert bill2.clio["paid"] == Decimal("250.0")  # the voided payment counts for nothing
    (trust,) = rec.trust
    assert (trust.matter, trust.clio_reported, trust.clio_ledger, trust.salesforce_ledger) == (
        "matter-7", Decimal("400.0"), Decimal("400.0"), Decimal("400.0"))
    assert rec.headline() == ("books: 2/2 bills tie out and agree, 1/1 matter trust ledgers balance, "
                              "1/1 client balances agree")
    html = books.books_html(rec)
    assert "1001" in html and "Trust per matter" in html and "Outstanding per client" in html


def _sf(change) -> dict:
    sf = copy.deepcopy(SF)
    change(sf)
    return sf


def _clio(change) -> dict:
    clio = copy.deepcopy(CLIO)
    change(clio)
    return clio


@pytest.mark.parametrize("change, where, status", [
    (lambda sf: sf["Clio_Payment__c"][1].update(Clio_Amount__c=310.0), "bill-1", "does not tie out"),
    (lambda sf: sf["Clio_Payment__c"][4].update(Clio_Voided_At__c=None), "bill-2", "does not tie out"),
    (lambda sf: (sf["Clio_Payment__c"][1].update(Clio_Amount__c=310.0),
                 sf["Clio_Billing__c"][0].update(Clio_Total__c=1010.0)), "bill-1", "differs"),
    (lambda sf: sf["Clio_Payment__c"][0].update(Clio_Source_Account_Type__c=None), "bill-1", "differs"),
    (lambda sf: sf["Clio_Billing__c"].pop(1), "bill-2", "missing in Salesforce"),
    (lambda sf: sf["Ledger__c"].pop(0), "matter-7", "goes below zero in Salesforce"),
    (lambda sf: sf["Ledger__c"][1].update(Clio_Amount__c=-500.0), "matter-7", "differs"),
    (lambda sf: sf["Clio_Client_Balance__c"][0].update(Clio_Total_Outstanding__c=0.0), "contact-9", "differs"),
])
def test_a_difference_in_salesforce_is_named(change, where, status) -> None:
    rec = run(sf=_sf(change))
    assert not rec.exact
    bad = [r for r in rec.bills + rec.trust + rec.clients if not r.ok]
    assert [(getattr(r, "bill", None) or getattr(r, "matter", None) or r.contact, r.status) for r in bad] == [
        (where, status)]


@pytest.mark.parametrize("change, where, status", [
    (lambda c: c["matters"][0]["data"]["account_balances"][0].update(balance=450.0), "matter-7",
     "Clio's ledger does not balance"),
    (lambda c: c["bank_transactions"][0]["data"].update(date="2024-02-01"), "matter-7",
     "Clio's ledger does not balance"),  # the withdrawal came before the deposit: below zero
    (lambda c: c["bills"][0]["data"].update(balance=5.0), "bill-1", "does not tie out"),  # and the client:
    (lambda c: c["outstanding_client_balances"][0]["data"].update(total_outstanding_balance=300.0), "contact-9",
     "Clio's balance is not its bills'"),
])
def test_clio_books_that_do_not_tie_out_are_named(change, where, status) -> None:
    rec = run(clio=_clio(change))
    bad = [(getattr(r, "bill", None) or getattr(r, "matter", None) or r.contact, r.status)
           for r in rec.bills + rec.trust + rec.clients if not r.ok]
    assert bad[0] == (where, status)
    assert bad[1:] in ([], [("contact-9", "Clio's balance is not its bills'")])  # a bill's balance is the client's too


def test_a_rejected_bill_is_explained_not_silent() -> None:
    rec = run(sf=_sf(lambda sf: sf["Clio_Billing__c"].pop(1)), rejected={"bill-2"})
    assert [(r.bill, r.status) for r in rec.bills if not r.ok] == [("bill-2", "rejected")]


def test_running_balance_of_packed_entries_is_that_of_the_tuples() -> None:
    """Entries are kept as one string each (``_entry``); the sum and lowest running balance are those of
    the (date, tiebreak, amount) tuples sorted, ties on date and id ordered by amount, dates of any length."""
    import random

    from clio2sf.books import _entry, _running

    rnd = random.Random(3)
    for _ in range(50):
        rows = [(rnd.choice(["2024-01-02", "2024-01-10", "2024-01-1", "None", "2023-12-31T23:00:00Z"]),
                 rnd.choice([f"{i:012d}" for i in (1, 2, 10)] + ["x-9", "x"]),
                 Decimal(rnd.choice(["-10", "9", "10.50", "-0.01", "1E+2", "-250.25"]))) for _ in range(rnd.randint(1, 12))]
        total, lowest = Decimal(0), Decimal(0)
        for _, _, amount in sorted(rows):
            total += amount
            lowest = min(lowest, total)
        assert _running([_entry(*r) for r in rows]) == (total, lowest)


def test_the_trust_ledger_is_held_one_string_an_entry() -> None:
    """20,000 Ledger__c rows of 10 matters read back within ~150 bytes an entry (tuples of two strings and a
    Decimal: about 300)."""
    import tracemalloc

    def stream(sobject, columns):
        for i in range(1, 20_001):
            yield {"Clio_Id__c": f"bank_transaction-{i}", "Clio_Date__c": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                   "Clio_Amount__c": f"{i % 500 - 120}.{i % 100:02d}", "Clio_Bank_Account_Id__c": "1",
                   "Case__r.Clio_Id__c": f"matter-{i % 10}"}

    tracemalloc.start()
    try:
        got = books.salesforce_books(stream, {"1"}, {"Ledger__c"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(got.trust) == 10 and sum(t.transactions for t in got.trust.values()) == 20_000
    assert peak / 20_000 < 150, peak


def run_in_parts(clio: dict, sf: dict, rejected=(), count: int = 3) -> books.BooksReconciliation:
    from clio2sf.verify.source import Part

    def clio_side(part, by_client):
        return books.clio_books(lambda name: iter(clio.get(name, [])), clio, part, by_client)

    def sf_side(part, by_client):
        return books.salesforce_books(lambda sobject, cols: iter(sf.get(sobject, [])), {"602"}, set(sf), part,
                                      by_client)

    return books.compare_books_in_parts(clio_side, sf_side, [Part(i, count) for i in range(count)], rejected,
                                        "outstanding_client_balances" in clio or "Clio_Client_Balance__c" in sf)


def _bigger() -> tuple[dict, dict]:
    """The fixture's firm copied to 23 bills, matters and clients (ids 1..230 step 10 plus the originals),
    with differences on both sides spread over the parts, and a bill only in Salesforce."""
    clio, sf = copy.deepcopy(CLIO), copy.deepcopy(SF)
    for k in range(1, 24):
        b, m, c = 100 + k, 200 + 3 * k, 300 + k % 7
        clio["bills"].append(env("bills", "bill", {"id": b, "number": str(b), "state": "awaiting_payment",
                                                   "total": 10.0 * k, "balance": 10.0 * k - (k % 4), "client": {"id": c}}))
        clio["allocations"].append(env("allocations", "allocation", {"id": 1000 + k, "amount": float(k % 4),
                                                                      "bill": {"id": b}, "parent": {"type": "Payment"}}))
        clio["bank_transactions"].append(env("bank_transactions", "bank_transaction", {
            "id": 2000 + k, "bank_account_id": 602, "date": "2024-03-01", "amount": 5.0 * k, "matter": {"id": m}}))
        clio["matters"].append(env("matters", "matter", {"id": m, "account_balances": [{"id": 602, "balance": 5.0 * k}]}))
        sf["Clio_Billing__c"].append({"Clio_Id__c": f"bill-{b}", "Clio_Invoice_Number__c": str(b),
                                      "Clio_Status__c": "Awaiting Payment", "Clio_Total__c": 10.0 * k,
                                      "Clio_Balance__c": 10.0 * k - (k % 4) + (k % 5 == 0),
                                      "Contact__r.Clio_Id__c": f"contact-{c}"})
        sf["Clio_Payment__c"].append({"Clio_Id__c": f"allocation-{1000 + k}", "Clio_Amount__c": float(k % 4),
                                      "Clio_Kind__c": "Payment", "Clio_Billing__r.Clio_Id__c": f"bill-{b}"})
        if k % 6:
            sf["Ledger__c"].append({"Clio_Id__c": f"bank_transaction-{2000 + k}", "Clio_Date__c": "2024-03-01",
                                    "Clio_Amount__c": 5.0 * k + (k % 7 == 0), "Clio_Bank_Account_Id__c": "602",
                                    "Case__r.Clio_Id__c": f"matter-{m}"})
    for c in range(300, 307):
        owed = sum(10.0 * k - (k % 4) for k in range(1, 24) if 300 + k % 7 == c)
        clio["outstanding_client_balances"].append(env("outstanding_client_balances", "outstanding_client_balance",
                                                       {"id": c, "contact": {"id": c}, "total_outstanding_balance": owed}))
        if c % 3:
            sf["Clio_Client_Balance__c"].append({"Clio_Id__c": f"outstanding_client_balance-{c}",
                                                 "Clio_Total_Outstanding__c": owed, "Contact__r.Clio_Id__c": f"contact-{c}"})
    sf["Clio_Billing__c"].append({"Clio_Id__c": "bill-99", "Clio_Status__c": "Paid", "Clio_Total__c": 1.0,
                                  "Clio_Balance__c": 0.0, "Contact__r.Clio_Id__c": "contact-301"})
    sf["Clio_Billing__c"].append({"Clio_Id__c": "bill-x", "Clio_Status__c": "Paid", "Clio_Total__c": 1.0,
                                  "Clio_Balance__c": 0.0})
    return clio, sf


@pytest.mark.parametrize("count", [2, 3, 10, 13])
@pytest.mark.parametrize("case", ["fixture", "bigger", "sf change", "clio change", "rejected"])
def test_books_in_parts_are_the_books_whole(case, count) -> None:
    """Compared in parts (rows spilled to disk and merged), the books are those compared whole: the same
    rows in the same order, the same exceptions, headline, JSON, CSV rows and page."""
    clio, sf, rejected = CLIO, SF, ()
    if case == "bigger":
        clio, sf = _bigger()
    elif case == "sf change":
        sf = _sf(lambda sf: (sf["Clio_Payment__c"][1].update(Clio_Amount__c=310.0), sf["Ledger__c"].pop(0),
                             sf["Clio_Client_Balance__c"][0].update(Clio_Total_Outstanding__c=0.0)))
    elif case == "clio change":
        clio = _clio(lambda c: (c["bills"][0]["data"].update(balance=5.0),
                                c["matters"][0]["data"]["account_balances"][0].update(balance=450.0)))
    elif case == "rejected":
        sf, rejected = _sf(lambda sf: sf["Clio_Billing__c"].pop(1)), {"bill-2"}
    whole, parts = run(clio, sf, rejected), run_in_parts(clio, sf, rejected, count)
    assert isinstance(parts.bills, reports.Spilled)
    assert parts.to_json() == whole.to_json()
    assert list(books.iter_books_rows(parts)) == list(books.iter_books_rows(whole))
    assert books.books_html(parts, limit=3) == books.books_html(whole, limit=3)
    assert books.books_html(parts, exceptions_only=True) == books.books_html(whole, exceptions_only=True)
    assert (parts.exact, parts.headline()) == (whole.exact, whole.headline())
    if case != "fixture":
        assert not whole.exact
    if case == "bigger":
        assert len(whole.bills) == 27 and len(whole.trust) == 24 and len(whole.clients) == 8


def test_books_in_parts_hold_one_part_at_a_time() -> None:
    """Each part's books hold only that part's bills and matters (the rows go to disk)."""
    from clio2sf.verify.source import Part

    clio, sf = _bigger()
    held = []

    def clio_side(part, by_client):
        got = books.clio_books(lambda name: iter(clio.get(name, [])), clio, part, by_client)
        held.append(len(got.bills) + len(got.trust))
        return got

    rec = books.compare_books_in_parts(
        clio_side, lambda part, by_client: books.salesforce_books(lambda s, c: iter(sf.get(s, [])), {"602"}, set(sf),
                                                                   part, by_client),
        [Part(i, 10) for i in range(10)])
    assert sum(held[:10]) == 25 + 24 and max(held[:10]) < 12, held
    assert len(rec.bills) == 27
    import gc
    import os

    folder = rec.folder.path
    assert os.listdir(folder)
    del rec
    gc.collect()
    assert not os.path.exists(folder)  # the spilled rows go with the reconciliation
