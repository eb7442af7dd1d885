"""The reconciliation and sample diff pages: header, money, readable names, problems first, filters,
a bounded size on a large firm, and strict escaping of hostile values."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from clio2sf import books, diff, labels, reconcile, reports
from clio2sf.diff import EXPLAINED, MATCH, MISMATCH, FieldDiff

pytestmark = pytest.mark.unit

CONTEXT = reports.report_context(Path("/stage/harlow_vance/m1"), "Harlow & Vance LLP",
                                 "manual__2026-12-03T04:27:22.614038+00:00",
                                 generated_at=datetime(2026, 12, 3, 5, 0, tzinfo=UTC))
HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>"\''


def _rows(table_html: str) -> list[str]:
    return re.findall(r"<tr[^>]*>(.*?)</tr>", table_html)


def _detail_rows(page: str) -> list[str]:
    """The rows of the diff page's detail table (the last table: its header names 'Clio value')."""
    detail = page[page.rindex("<table><thead><tr><th>Object</th><th>Record</th>"):]
    return _rows(detail.split("</thead>", 1)[1].split("</table>", 1)[0])


def test_money_is_formatted_with_currency_and_two_decimals() -> None:
    assert reports.money(1234567.5, "USD") == "1,234,567.50 USD"
    assert reports.money("-0.014") == "-0.01"
    assert reports.money(Decimal("12")) == "12.00"
    assert reports.money(None) == "–"
    assert reports.money("n/a") == "n/a"


def test_context_names_firm_migration_run_and_its_date() -> None:
    assert CONTEXT["firm"] == "Harlow & Vance LLP (harlow_vance)" and CONTEXT["migration"] == "m1"
    assert CONTEXT["run_date"] == "2026-12-03 04:27 UTC"
    html = reports.report_header(CONTEXT)
    assert "Harlow &amp; Vance LLP" in html and "manual__2026-12-03T04:27:22.614038+00:00" in html
    shuffled = reports.report_header(dict(sorted(CONTEXT.items())))  # as read back from a sort_keys JSON
    assert shuffled == html and html.index("Firm") < html.index("Migration") < html.index("Run id") < html.index(
        "Run date") < html.index("Report written")
    assert reports.run_date("scheduled__2026-12-03T00:00:00+00:00") == "2026-12-03 00:00 UTC"
    assert reports.run_date("promise") is None


def test_record_names_are_what_the_firm_recognises() -> None:
    assert labels.record_name({"display_number": "00007-Lopez", "id": 7}) == "00007-Lopez"
    assert labels.record_name({"first_name": "Jane", "last_name": "Doe"}) == "Jane Doe"
    assert labels.record_name({"number": 1001}) == "Invoice 1001"
    assert labels.record_name({"id": 3}) is None
    assert len(labels.record_name({"name": "x" * 500})) == labels.MAX_LABEL
    assert labels.readable("matter-7", {"matter-7": "00007-Lopez"}) == "00007-Lopez (matter-7)"
    assert labels.readable("matter-8", {}) == "matter-8"


def _diffs() -> list[FieldDiff]:
    rows = [FieldDiff("Contact", f"contact-{i}", f"003{i:015d}", "LastName", "last_name", "Doe", "Doe", "Doe", MATCH,
                      label=f"Jane Doe {i}") for i in range(5)]
    rows.append(FieldDiff("Case", "matter-7", "500x", "Subject", "description", "A", "A", "A", MATCH))
    rows.append(FieldDiff("Case", "matter-7", "500x", "Clio_Total__c", "total", "10.00", "10.00", "9.00", MISMATCH,
                          "sent currency value differs from Salesforce", label="00007-Lopez"))
    rows.append(FieldDiff("Contact", "contact-3", "003x", "Title", "title", "Dr", "Dr", "D", EXPLAINED,
                          "truncated by Salesforce to 1 characters"))
    return rows


def test_diff_page_has_header_lists_differences_only_and_unexplained_first() -> None:
    page = diff.diff_html(_diffs(), context=CONTEXT)
    assert "Harlow &amp; Vance LLP (harlow_vance)" in page and "manual__2026-12-03T04:27:22.614038+00:00" in page
    rows = _detail_rows(page)
    assert len(rows) == 2  # the mismatch and the explained difference; never the 6 matching fields
    assert "Clio_Total__c" in rows[0] and "00007-Lopez (matter-7)" in rows[0]
    assert "Title" in rows[1]
    assert "rows 1–2 of 2 (of 8 compared fields)" in page
    every = _detail_rows(diff.diff_html(_diffs(), view="all"))
    assert len(every) == 8 and "mismatch" in every[0] and "explained" in every[1] and "match" in every[-1]
    assert len(_detail_rows(diff.diff_html(_diffs(), view="unexplained"))) == 1


def test_diff_filters_by_object_and_field_and_links_them() -> None:
    page = diff.diff_html(_diffs(), view="all", sobject="Contact", field="LastName")
    rows = _detail_rows(page)
    assert len(rows) == 5 and all("LastName" in r and "Contact" in r for r in rows)
    summary = diff.diff_html(_diffs())
    assert 'href="../../diff?object=Case"' in summary  # the plugin's filterable view, relative to files/sample/
    assert 'href="../../diff?object=Case&amp;field=Clio_Total__c"' in summary
    assert 'href="diff.csv"' in summary


def _large(n_records: int = 20_000, fields: int = 10) -> list[FieldDiff]:
    out = []
    for i in range(n_records):
        for f in range(fields):
            status = MISMATCH if (i * fields + f) % 97 == 0 else MATCH
            out.append(FieldDiff("Contact", f"contact-{i}", None, f"Field_{f}__c", f"custom.{f}", "x" * 20, "x" * 20,
                                 "y" * 20 if status == MISMATCH else "x" * 20, status, None, f"Client {i}"))
    return out


def test_diff_page_stays_small_on_a_large_firm_and_pages_through_the_rest() -> None:
    rows = _large()
    page = diff.diff_html(rows, context=CONTEXT)
    mismatches = sum(1 for d in rows if d.status == MISMATCH)
    assert mismatches > diff.PAGE_ROWS
    assert len(page.encode()) < 250_000, len(page.encode())
    assert len(_detail_rows(page)) == diff.PAGE_ROWS
    assert f"rows 1–{diff.PAGE_ROWS} of {mismatches} (of {len(rows)} compared fields)" in page
    assert 'href="../../diff?page=2"' in page
    last = -(-mismatches // diff.PAGE_ROWS)
    end = diff.diff_html(rows, page=last)
    assert len(_detail_rows(end)) == mismatches - (last - 1) * diff.PAGE_ROWS
    assert len(diff.diff_html(rows, view="all", page=10**6).encode()) < 250_000  # clamped to the last page


def test_diff_page_escapes_hostile_values_labels_names_and_filters() -> None:
    rows = [FieldDiff(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, MISMATCH, HOSTILE,
                      label=HOSTILE)]
    for page in (diff.diff_html(rows, context={"firm": HOSTILE, "migration": HOSTILE, "run": HOSTILE}),
                 diff.diff_html(rows, view="all", sobject=HOSTILE, field=HOSTILE)):
        assert "<script>" not in page and "<img" not in page and "onerror=alert(2)>" not in page
        assert "&lt;script&gt;" in page
        for href in re.findall(r'href="([^"]*)"', page):
            assert "<" not in href and '"' not in href and "'" not in href


def test_diff_csv_round_trips_for_the_plugin_view(tmp_path) -> None:
    path = diff.write_diff_csv(tmp_path / "diff.csv", _diffs())
    back = diff.read_diff_csv(path.open(encoding="utf-8", newline=""))
    assert [(d.source_system_id, d.field, d.status, d.label) for d in back] == [
        (d.source_system_id, d.field, d.status, d.label) for d in _diffs()]


# ------------------------------------------------------------------ reconciliation


def _rec(trust_matters: int = 3, bad_matter: int | None = 2, every_other_bad: bool = False) -> reconcile.Reconciliation:
    source = reconcile.SourceTotals(
        ids={"contacts": {"contact-1", "contact-2"}, "matters": {"matter-1", "matter-2"}},
        amounts={"bills.total": Decimal("1234567.5"), "time.hours": Decimal("1234.25"),
                 **{f"trust.matter.{i}": Decimal("100.10") for i in range(trust_matters)}})
    target = reconcile.TargetTotals(
        ids={"contacts": ["contact-1", "contact-2"], "matters": ["matter-1"]},
        amounts={"bills.total": Decimal("1234567.5"), "time.hours": Decimal("1234.25"),
                 **{f"trust.matter.{i}": Decimal("90") if i == bad_matter or (every_other_bad and i % 2)
                    else Decimal("100.10") for i in range(trust_matters)}})
    return reconcile.reconcile(source, target)


NAMES = {"matter-2": "00002-Lopez", "matter-1": "00001-Hayes", "contact-1": "Hayes and Sons"}


def test_reconciliation_page_header_money_names_and_exceptions_first() -> None:
    page = reconcile.reconciliation_html(_rec(), context=CONTEXT, currency="USD", labels=NAMES)
    assert "Harlow &amp; Vance LLP (harlow_vance)" in page and ">m1<" in page and "2026-12-03 04:27 UTC" in page
    assert "1,234,567.50 USD" in page and "1234567.5<" not in page
    assert "1,234.25<" in page and "1,234.25 USD" not in page  # hours are not money
    assert "Trust: 00002-Lopez (matter-2)" in page
    assert "00002-Lopez (matter-2)" in page.split("<h2>Exceptions</h2>")[1]  # the missing matter, by its number
    records = _rows(page.split("<h2>Records</h2>")[1].split("</table>")[0])
    assert "matters" in records[1] and "EXCEPTION" in records[1]  # header row, then the exception first
    amounts = _rows(page.split("<h2>Amounts</h2>")[1].split("</table>")[0])
    assert "DIFFERS" in amounts[1] and "matter-2" in amounts[1] and "-10.10 USD" in amounts[1]


def test_reconciliation_page_is_bounded_on_a_large_firm() -> None:
    agree = reconcile.reconciliation_html(_rec(trust_matters=20_000, bad_matter=19_999), currency="USD")
    assert len(agree.encode()) < 20_000, len(agree.encode())
    amounts = _rows(agree.split("<h2>Amounts</h2>")[1].split("</table>")[0])
    assert "Trust: matter-19999<" in amounts[1] and "DIFFERS" in amounts[1]  # the one difference first
    assert "Trust per matter: 19999 matter(s) agree" in amounts[-1] and "2,001,899.90 USD" in amounts[-1]
    rec = _rec(trust_matters=20_000, bad_matter=None, every_other_bad=True)
    page = reconcile.reconciliation_html(rec, currency="USD")
    assert len(page.encode()) < 150_000, len(page.encode())
    amounts = _rows(page.split("<h2>Amounts</h2>")[1].split("</table>")[0])
    differing = sum(1 for a in rec.amounts if not a.ok)
    assert len(amounts) == 1 + reconcile.TABLE_ROWS + 1 and all("DIFFERS" in r for r in amounts[1:-1])
    assert f"first {reconcile.TABLE_ROWS} of {differing + 2} amount figures listed" in page  # + time.hours, bills
    assert "reconciliation.csv" in page


def test_reconciliation_page_escapes_hostile_names() -> None:
    source = reconcile.SourceTotals(ids={"matters": {"matter-1"}}, amounts={"trust.matter.1": Decimal(1)})
    rec = reconcile.reconcile(source, reconcile.TargetTotals(ids={"matters": []}, amounts={}),
                              [{"object": "matters", "source_system_id": "matter-9", "rule": HOSTILE}])
    page = reconcile.reconciliation_html(rec, context={"firm": HOSTILE, "run": HOSTILE}, currency=HOSTILE,
                                         labels={"matter-1": HOSTILE})
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page


def _book(n: int, bad: int) -> books.BooksReconciliation:
    trust = [books.TrustRow(f"matter-{i}", Decimal("5"), Decimal("5"), Decimal(0), Decimal("5") if i != bad else
                            Decimal("4"), Decimal(0), "ok" if i != bad else "differs") for i in range(n)]
    clients = [books.ClientRow("contact-1", Decimal("1500.5"), Decimal("1500.5"), Decimal("1500.5"),
                               Decimal("1500.5"), "ok")]
    bills = [books.BillRow("bill-1", "1001", {"total": Decimal("2500")}, {"total": Decimal("2500")}, "ok")]
    return books.BooksReconciliation(bills, trust, clients)


def test_books_name_matters_and_clients_format_money_and_put_exceptions_first() -> None:
    html = books.books_html(_book(3, bad=2), labels=NAMES, currency="USD")
    trust = _rows(html.split("<h2>Trust per matter</h2>")[1].split("</table>")[0])
    assert "00002-Lopez (matter-2)" in trust[1] and "DIFFERS" in trust[1]
    assert "Hayes and Sons (contact-1)" in html and "1,500.50 USD" in html and "1001 (bill-1)" in html
    big = books.books_html(_book(10_000, bad=9_999), limit=100)
    assert len(big.encode()) < 60_000 and "first 100 of 10000 matters listed (1 exception(s)" in big
    assert "matter-9999" in _rows(big.split("<h2>Trust per matter</h2>")[1].split("</table>")[0])[1]
    rows = books.books_rows(_book(2, bad=1), NAMES)
    assert ["trust", "matter-1", "00001-Hayes", "differs", "ledger", Decimal("5"), Decimal("4")] in rows


def test_summary_amounts_name_the_differing_matter_and_fold_the_agreeing_ones() -> None:
    from clio2sf.migration_summary import summary_html

    rec = _rec(trust_matters=50, bad_matter=2).to_json()
    data = {"firm": "harlow_vance", "firm_name": "Harlow & Vance LLP", "migration_id": "m1", "full_load_run": "r",
            "last_delta": None, "exact": rec["exact"], "headline": rec["headline"], "objects": rec["objects"],
            "amounts": rec["amounts"], "currency": "USD", "names": NAMES, "rejects": [], "left_behind": [],
            "signoffs": []}
    page = summary_html(data)
    amounts = _rows(page.split("<h2>Amounts</h2>")[1].split("</table>")[0])
    assert "Trust: 00002-Lopez (matter-2)" in amounts[1] and "DIFFERS" in amounts[1]
    assert "Trust per matter: 49 matter(s) agree" in amounts[-1] and "4,904.90 USD" in amounts[-1]
    assert "1,234,567.50 USD" in page and len(amounts) == 1 + 3 + 1  # header, 2 figures + the difference, the fold


def test_report_rows_are_written_one_at_a_time_as_the_whole_list_would_be(tmp_path: Path) -> None:
    """The reconciliation's rows (``to_json(lazy=True)``: :class:`reports.Streamed`) are written one by one
    (a 1M-record firm's books and trust figures are ~80,000 rows; json.dumps of the whole document at once
    held 158 MB more at the reconcile's peak), the same text as the lists; ``write_csv`` streams a generator."""
    rec, book = _rec(trust_matters=50), _book(30, bad=3)
    made: list[int] = []

    def rows():
        for n, row in enumerate(book.to_json()["trust"]):
            made.append(n)
            yield row

    lazy = rec.to_json(lazy=True) | {"books": book.to_json(lazy=True) | {"trust": reports.Streamed(rows)},
                                     "names": NAMES, "empty": reports.Streamed(lambda: iter(()))}
    whole = rec.to_json() | {"books": book.to_json(), "names": NAMES, "empty": []}
    assert isinstance(lazy["amounts"], reports.Streamed) and isinstance(whole["amounts"], list)
    reports.write_json(tmp_path / "lazy.json", lazy)
    assert made == list(range(30))
    expected = json.dumps(whole, indent=2, sort_keys=True, default=reports.json_default) + "\n"
    assert (tmp_path / "lazy.json").read_text(encoding="utf-8") == expected
    reports.write_csv(tmp_path / "books.csv", books.BOOKS_CSV_HEADERS, books.iter_books_rows(book, NAMES))
    assert (tmp_path / "books.csv").read_bytes().decode() == reports.csv_text(books.BOOKS_CSV_HEADERS,
                                                                             books.books_rows(book, NAMES))
