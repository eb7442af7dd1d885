"""Sample diff and reconciliation against an in-memory org."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clio2sf import staging, verify
from clio2sf.load import write_rejects
from clio2sf.mapping.spec import load_spec
from tests.unit.sf_fake import FakeSF

pytestmark = pytest.mark.unit


def _raw(root: Path, obj: str, envs: list[dict]) -> None:
    info = staging.write_jsonl_gz(staging.batch_path(root, obj, 1), envs)
    staging.write_json(staging.raw_dir(root, obj) / staging.MANIFEST, {"object": obj, "batches": [info]})


def _env(obj: str, ssid: str, data: dict) -> dict:
    return {"object": obj, "source_system_id": ssid, "clio_id": data["id"], "data": data}


def _rows(root: Path, sobject: str, clio_object: str, rows: list[dict]) -> None:
    staging.write_jsonl_gz(root / "transformed" / sobject / f"{clio_object}-batch-00001.jsonl.gz",
                           [{"sobject": sobject, "source_system_id": r["Clio_Id__c"], "external_id_field": "Clio_Id__c",
                             "natural_key": None, "row": r} for r in rows])


@pytest.fixture
def spec():
    return load_spec(None)


def test_sample_diff_reports_match_mismatch_explained_and_missing(tmp_path: Path, spec):
    sample = tmp_path / "sample"
    _raw(sample, "contacts", [_env("contacts", f"contact-{i}", {"id": i, "first_name": f"F{i}", "last_name": f"L{i}",
                                                                  "title": "Partner"}) for i in (1, 2, 3, 4)])
    _rows(sample, "Contact", "contacts", [
        {"Clio_Id__c": f"contact-{i}", "FirstName": f"F{i}", "LastName": f"L{i}", "Title": "Partner",
         "Account.Clio_Id__c": "individual-client-account"} for i in (1, 2, 3, 4)])
    write_rejects(sample, "transform", "contacts", "batch-00001", [
        {"phase": "transform", "object": "contacts", "source_system_id": "contact-2", "field": "title",
         "rule": "truncated", "message": "contact-2: title truncated", "repair": "truncated to 128"}])
    org = FakeSF({"Contact": [
        {"Id": "003A", "Clio_Id__c": "contact-1", "FirstName": "F1", "LastName": "L1", "Title": "Partner",
         "Account.Clio_Id__c": "individual-client-account", "AccountId": "001A"},
        {"Id": "003B", "Clio_Id__c": "contact-2", "FirstName": "F2", "LastName": "L2", "Title": "Part",
         "Account.Clio_Id__c": "individual-client-account", "AccountId": "001A"},
        {"Id": "003C", "Clio_Id__c": "contact-9", "FirstName": "X", "LastName": "Y", "Title": None,
         "Account.Clio_Id__c": None, "AccountId": None}]})
    org.records["Contact"][2]["Clio_Id__c"] = "contact-3"
    org.records["Contact"][2]["LastName"] = "Wrong"
    out = verify.sample_diff(org, tmp_path, spec)
    assert out["records"] == 4 and out["fields_compared"] == 16
    assert out["mismatches"] == 4  # contact-3: FirstName, LastName, Title and the Account lookup
    assert out["explained"] == 1 and out["missing"] == 4  # contact-4 was never loaded
    text = (sample / "diff.csv").read_text()
    assert len(text.splitlines()) == 17 and "repair: truncated to 128" in text
    summary = json.loads((sample / "diff_summary.json").read_text())
    assert summary["matches"] == 16 - 4 - 1 - 4
    assert "L1" not in (sample / "diff_summary.json").read_text()
    assert any("IN (" in q and "Account.Clio_Id__c" in q for q in org.queries)


def _bills_case(tmp_path: Path, org_rows: list[dict]) -> dict:
    bills = [_env("bills", f"bill-{i}", {"id": i, "total": t}) for i, t in ((1, "100.50"), (2, "200.00"), (3, "7"))]
    _raw(tmp_path, "bills", bills)
    _rows(tmp_path, "Clio_Billing__c", "bills", [{"Clio_Id__c": f"bill-{i}", "Clio_Total__c": t}
                                                 for i, t in ((1, 100.5), (2, 200))])
    write_rejects(tmp_path, "transform", "bills", "batch-00001", [
        {"phase": "transform", "object": "bills", "source_system_id": "bill-3", "field": "state",
         "rule": "unknown_value", "message": "bill-3: state 'odd' is unknown", "repair": None}])
    org = FakeSF({"Clio_Billing__c": org_rows}, types={"Clio_Billing__c": {"Clio_Total__c": "currency"}})
    return verify.reconcile_migration(org, tmp_path, load_spec(None), run_label="final")


def test_reconcile_every_record_loaded_or_rejected_and_amounts_match(tmp_path: Path):
    out = _bills_case(tmp_path, [{"Id": "a01", "Clio_Id__c": "bill-1", "Clio_Total__c": 100.5},
                                 {"Id": "a02", "Clio_Id__c": "bill-2", "Clio_Total__c": 200.0}])
    assert out["lost"] == 0 and out["duplicated"] == 0 and out["amounts_ok"] and out["exact"]
    assert out["objects"]["bills"] == {"expected": 3, "loaded": 2, "rejected": 1, "missing": 0, "duplicates": 0,
                                       "unexpected": 0}
    assert any("rejected records are excluded" in n for n in out["notes"])
    doc = json.loads((tmp_path / "reports" / "final" / "reconciliation.json").read_text())
    assert doc["amounts"][0]["figure"] == "bills.total" and doc["amounts"][0]["source"] == "300.50"
    assert (tmp_path / "reports" / "final" / "reconciliation.csv").exists()


def test_reconcile_finds_lost_duplicated_and_wrong_amounts(tmp_path: Path):
    out = _bills_case(tmp_path, [{"Id": "a01", "Clio_Id__c": "bill-1", "Clio_Total__c": 100.5},
                                 {"Id": "a03", "Clio_Id__c": "bill-1", "Clio_Total__c": 100.5}])
    assert out["lost"] == 1 and out["duplicated"] == 1 and not out["amounts_ok"]
    assert out["objects"]["bills"]["missing"] == 1
    html = (tmp_path / "reports" / "final" / "reconciliation.html").read_text()
    assert "bill-2" in html and "EXCEPTION" in html


#: Clio object → (kind, sobject) of the firm below: one primary row per record.
_FIRM = {"matters": ("matter", "Case"), "contacts": ("contact", "Contact"), "tasks": ("task", "Task"),
         "bills": ("bill", "Clio_Billing__c"), "notes": ("note", "Note__c"), "communications": ("communication", "Email__c")}


def _reconcile_peak(root: Path, objects: list[str], n: int, batch: int | None = None) -> tuple[int, dict]:
    """tracemalloc's peak (bytes) of reconciling a firm of ``objects``, ``n`` records each, all loaded;
    ``batch``: records a staged file (default: one file an object)."""
    import tracemalloc

    org: dict[str, list[dict]] = {}
    step = batch or n
    for obj in objects:
        kind, sobject = _FIRM[obj]
        infos = []
        for b, start in enumerate(range(1, n + 1, step), 1):
            ids = range(start, min(n, start + step - 1) + 1)
            infos.append(staging.write_jsonl_gz(staging.batch_path(root, obj, b), [
                _env(obj, f"{kind}-{i}", {"id": i, "total": "1.00"}) for i in ids]))
            staging.write_jsonl_gz(root / "transformed" / sobject / f"{obj}-batch-{b:05d}.jsonl.gz", [
                {"sobject": sobject, "source_system_id": f"{kind}-{i}", "external_id_field": "Clio_Id__c",
                 "natural_key": None, "row": {"Clio_Id__c": f"{kind}-{i}", "Name": f"record number {i}"}}
                for i in ids])
        staging.write_json(staging.raw_dir(root, obj) / staging.MANIFEST, {"object": obj, "batches": infos})
        org[sobject] = [{"Id": f"a{i:014d}", "Clio_Id__c": f"{kind}-{i}", "Name": f"record number {i}"}
                        for i in range(1, n + 1)]
    client = FakeSF(org)
    spec = load_spec(None)
    tracemalloc.start()
    try:
        out = verify.reconcile_migration(client, root, spec, run_label="final")
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_reconcile_holds_one_object_at_a_time_not_the_firm(tmp_path: Path):
    """Six objects of 3,000 records reconcile within ~the memory of one such object (the firm's ids were held
    all at once: six times as much)."""
    n = 3000
    one, out_one = _reconcile_peak(tmp_path / "one", ["matters"], n)
    six, out_six = _reconcile_peak(tmp_path / "six", list(_FIRM), n)
    assert out_one["objects"]["matters"]["loaded"] == n and out_one["lost"] == 0
    assert set(out_six["objects"]) == set(_FIRM) and out_six["lost"] == 0 and out_six["duplicated"] == 0
    assert all(o["loaded"] == n and o["unexpected"] == 0 for o in out_six["objects"].values())
    assert six < 1.8 * one, (one, six)


def test_found_rows_streamed_equal_the_list_and_name_duplicates_exactly():
    from clio2sf import reconcile
    from clio2sf.verify.reconciliation import _found_rows

    rows = ["matter-1", "matter-2", "matter-1", "calendar_entry-3@20240101T150000Z",
            "calendar_entry-3@20240108T150000Z", "calendar_entry-3@20240101T150000Z", "matter-1"]
    reads: list[str] = []

    def read(label: str):
        reads.append(label)
        return iter(rows)

    got = _found_rows(lambda: read("first"), lambda: read("again"))
    assert got == reconcile.FoundRows.of(rows) and reads == ["first"]  # one run of calendar_entry-3's rows
    assert got.duplicates == {"calendar_entry-3@20240101T150000Z": 2, "matter-1": 3} and got.rows == 7
    reads.clear()
    unique = rows[:2] + rows[3:5]
    assert _found_rows(lambda: iter(unique), lambda: read("again")).duplicates == {} and reads == []
    # calendar_entry-3's rows in two runs: counted again over a second read (hashes) and a third (the values
    # whose hash repeats, by name); a name's repeats by their hash
    rows = ["calendar_entry-3@A", "calendar_entry-4@A", "calendar_entry-3@A", "calendar_entry-3@B",
            "calendar_entry-4@A", "calendar_entry-4@A", "x@1", "matter-1", "x@1", "calendar_entry-5@A"]
    got = _found_rows(lambda: read("first"), lambda: read("again"))
    assert got == reconcile.FoundRows.of(rows) and reads == ["first", "again", "again"]
    assert got.duplicates == {"calendar_entry-3@A": 2, "calendar_entry-4@A": 3, "x@1": 2}


@pytest.mark.parametrize("on_disk", [False, True])
def test_found_rows_of_interleaved_occurrences_count_only_repeated_hashes_by_name(monkeypatch, on_disk):
    """A real org's Id order interleaves a series' occurrences with other rows (Bulk API chunks processed in
    parallel): every series then has rows in several runs and is counted again. Only the values whose
    8-byte hash repeats are counted by name (before: every row of those series, ~28 MB at 1.1M Events)."""
    from clio2sf import reconcile, reports
    from clio2sf.verify.reconciliation import _found_rows

    monkeypatch.setattr(reconcile, "RUN", 8)
    folder = reports.SpillFolder() if on_disk else None
    series = [[f"calendar_entry-{e}@2024{m:02d}01T150000Z" for m in range(1, 7)] for e in range(1, 41)]
    rows = [occ for m in range(6) for s in series for occ in (s[m],)]  # each series' rows in 6 runs
    expect = reconcile.FoundRows.of(rows)
    dup = rows[:100] + [rows[7]] + rows[100:]  # a duplicate occurrence
    expect_dup = reconcile.FoundRows.of(dup)
    named: list[int] = []
    counter = reconcile.count_duplicates

    def counting(values):
        values = list(values)
        named.append(len(values))
        return counter(values)

    monkeypatch.setattr(reconcile, "count_duplicates", counting)
    reads: list[str] = []

    def again():
        reads.append("again")
        return iter(rows)

    got = _found_rows(lambda: iter(rows), again, folder)
    assert got == expect and got.duplicates == {} and got.rows == 240
    assert named == [] and reads == ["again"]  # nothing counted by name, one read of the hashes
    rows[:] = dup  # named exactly, only the duplicated value counted by name
    reads.clear()
    got = _found_rows(lambda: iter(rows), again, folder)
    assert got == expect_dup and got.duplicates == {dup[7]: 2}
    assert named == [2] and reads == ["again", "again"]


@pytest.mark.parametrize("on_disk", [False, True])
def test_found_rows_of_plain_ids_name_duplicates_without_reading_again(monkeypatch, on_disk):
    """``on_disk``: the numbers kept in files past ``RUN`` a kind (rows, runs, records found): the same."""
    from clio2sf import reconcile, reports
    from clio2sf.verify.reconciliation import _found_rows

    monkeypatch.setattr(reconcile, "RUN", 2)
    folder = reports.SpillFolder() if on_disk else None
    rows = ["matter-5", "matter-1", "contact-2", "matter-5", "matter-12", "matter-1", "matter-5", "odd"]

    def again():
        raise AssertionError("no occurrence: no second read")

    got = _found_rows(lambda: iter(rows), again, folder)
    assert got == reconcile.FoundRows.of(rows) and got.duplicates == {"matter-1": 2, "matter-5": 3}
    assert isinstance(got.found.numbers["matter"], reconcile.NumberFile) == on_disk
    many = [f"matter-{i}" for i in range(1, 30)] + ["matter-7"] + [f"matter-{i}" for i in range(40, 30, -1)]
    many += [f"calendar_entry-{i}@A" for i in (1, 1, 2, 3, 4, 5, 6, 1)]  # calendar_entry-1 in two runs
    got = _found_rows(lambda: iter(many), lambda: iter(many), folder)
    assert got == reconcile.FoundRows.of(many) and got.duplicates == {"calendar_entry-1@A": 3, "matter-7": 2}
    ordered = _found_rows(lambda: iter(["matter-1", "matter-2", "matter-9"]), again, folder)
    assert ordered.found == {"matter-1", "matter-2", "matter-9"} and ordered.rows == 3 and ordered.duplicates == {}
    assert list(reconcile.counted(reconcile.array("q", [4, 1, 4, 9, 1, 4]))) == [(1, 2), (4, 3), (9, 1)]


def test_repeated_hashes_found_across_sorted_runs(monkeypatch):
    from array import array

    from clio2sf import reconcile

    monkeypatch.setattr(reconcile, "RUN", 3)
    values = array("q", [9, -4, 7, 1, 9, 5, 3, -4, 8, 2, 11, 7])
    assert reconcile.repeated(values) == {9, -4, 7}
    assert reconcile.repeated(array("q")) == set() and reconcile.repeated(array("q", [5])) == set()
    assert list(reconcile.sorted_unique(values)) == [-4, 1, 2, 3, 5, 7, 8, 9, 11]


@pytest.mark.parametrize("run", [None, 4])
def test_reconcile_reports_what_clio_holds_not_what_the_transform_sent(tmp_path: Path, monkeypatch, run):
    """A seeded defect in the largest object: activity-50 is in Clio's raw records but the transform dropped
    it silently (no reject), activity-49 was sent but is not in the org, activity-3 is on two rows and the
    org holds an activity Clio does not: each is reported, against the raw records. ``run``: ids kept in
    files past that many a kind (staged, found): the same report, and no file left behind."""
    import tempfile

    from clio2sf import reconcile

    if run is not None:
        monkeypatch.setattr(reconcile, "RUN", run)
        monkeypatch.setattr(reconcile, "BLOCK", 3)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
        (tmp_path / "tmp").mkdir()
    made: list[str] = []
    init = reconcile._File.__init__

    def counting(self, folder):
        init(self, folder)
        made.append(self.path)

    monkeypatch.setattr(reconcile._File, "__init__", counting)
    n = 50
    _raw(tmp_path, "activities", [_env("activities", f"activity-{i}", {"id": i, "type": "TimeEntry"})
                                  for i in range(1, n + 1)])
    _rows(tmp_path, "Time_Entry__c", "activities", [{"Clio_Id__c": f"activity-{i}"} for i in range(1, n)])
    org = [{"Id": f"a{i:05d}", "Clio_Id__c": f"activity-{i}"} for i in [*range(1, n - 1), 3, 999]]
    out = verify.reconcile_migration(FakeSF({"Time_Entry__c": org}), tmp_path, load_spec(None), run_label="final")
    assert out["objects"]["activities"] == {"expected": 50, "loaded": 48, "rejected": 0, "missing": 2,
                                            "duplicates": 1, "unexpected": 1}
    assert out["lost"] == 2 and out["duplicated"] == 1 and not out["exact"]
    doc = json.loads((tmp_path / "reports" / "final" / "reconciliation.json").read_text())
    [acts] = [o for o in doc["objects"] if o["object"] == "activities"]
    assert acts["missing_ids"] == ["activity-49", "activity-50"] and acts["duplicate_ids"] == {"activity-3": 2}
    assert (len(made) >= 2) == (run is not None)  # the staged and the found ids were on disk
    if run is not None:
        import gc

        gc.collect()
        assert not list((tmp_path / "tmp").iterdir())  # the spill folder and its id files are removed


def test_reconcile_holds_ids_compactly_not_as_strings(tmp_path: Path):
    """One object of 40,000 records (staged 2,000 a file, as the extraction does) reconciles within ~40 bytes
    a record over one of 4,000: the staged ids and the found ones as numbers, 8 bytes each, sorted in runs
    (sets of strings, and their intersection: about 220 bytes a record)."""
    small, out_small = _reconcile_peak(tmp_path / "small", ["matters"], 4_000, batch=2_000)
    large, out_large = _reconcile_peak(tmp_path / "large", ["matters"], 40_000, batch=2_000)
    assert out_large["objects"]["matters"]["loaded"] == 40_000 and out_large["exact"] and out_small["exact"]
    assert (large - small) / 36_000 < 40, (small, large)


def test_staged_task_activities_are_the_last_sobject_in_staging_order(tmp_path: Path):
    """An activity is a Task when the last of its object's sobjects, in staging order, with its primary row
    is Task: a row in a sobject after Task takes it back, one before does not."""
    from clio2sf.verify.reconciliation import _Staged

    _raw(tmp_path, "activities", [_env("activities", f"activity-{i}", {"id": i}) for i in range(1, 6)])
    _rows(tmp_path, "Expense__c", "activities", [{"Clio_Id__c": "activity-3"}])
    _rows(tmp_path, "Task", "activities", [{"Clio_Id__c": f"activity-{i}"} for i in (1, 2, 3, 5)])
    _rows(tmp_path, "Time_Entry__c", "activities", [{"Clio_Id__c": f"activity-{i}"} for i in (2, 4)])
    staged = _Staged(tmp_path)
    assert staged.task_activities == {"activity-1", "activity-3", "activity-5"}
    assert len(staged.task_activities) == 3 and "activity-2" not in staged.task_activities
    assert staged.kinds == {"activities": "activity"}


def _trust_case(root: Path, label: str, moved: bool = False) -> dict:
    """Twelve matters with trust transactions, the org's Ledger__c rows seeded with differences: a changed
    amount (matter 5), a missing row (matter 7), a row of a matter Clio does not have (matter 13).
    ``moved``: bank transaction 30 (matter 7) is staged again later on matter 2 (a delta moved it)."""
    _raw(root, "bank_accounts", [_env("bank_accounts", f"bank_account-{a}", {"id": a, "type": t})
                                 for a, t in ((1, "Trust"), (2, "Operating"))])
    txns = [(i, 1 + i % 12, 2 if i % 7 == 0 else 1, f"{10 + i}.{i % 100:02d}") for i in range(1, 31)]
    again = [(30, 2, 1, "40.30")] if moved else []
    _raw(root, "bank_transactions", [_env("bank_transactions", f"bank_transaction-{i}", {
        "id": i, "bank_account_id": a, "date": f"2024-01-{i:02d}", "amount": amt, "matter": {"id": m}})
        for i, m, a, amt in txns + again])
    from decimal import Decimal
    balance = {m: sum((Decimal(amt) for _, mm, a, amt in txns if mm == m and a == 1), Decimal(0)) for m in range(1, 13)}
    _raw(root, "matters", [_env("matters", f"matter-{m}", {"id": m, "display_number": f"{m:05d}-T",
                                                           "account_balances": [{"id": 1, "balance": str(balance[m])}]})
                           for m in range(1, 13)])
    rows = [{"Clio_Id__c": f"bank_transaction-{i}", "Clio_Amount__c": float(amt), "Clio_Date__c": f"2024-01-{i:02d}",
             "Clio_Bank_Account_Id__c": str(a), "Case__r.Clio_Id__c": f"matter-{m}"} for i, m, a, amt in txns]
    _rows(root, "Ledger__c", "bank_transactions", rows)
    _rows(root, "Case", "matters", [{"Clio_Id__c": f"matter-{m}"} for m in range(1, 13)])
    org_rows = [dict(r, Id=f"a{n:04d}") for n, r in enumerate(rows)]
    org_rows[3]["Clio_Amount__c"] += 1  # bank_transaction-4, matter 5
    del org_rows[5]  # bank_transaction-6, matter 7
    org_rows.append({"Id": "a9999", "Clio_Id__c": "bank_transaction-99", "Clio_Amount__c": 3.0,
                     "Clio_Date__c": "2024-02-01", "Clio_Bank_Account_Id__c": "1", "Case__r.Clio_Id__c": "matter-13"})
    org = FakeSF({"Ledger__c": org_rows, "Case": [{"Id": f"c{m}", "Clio_Id__c": f"matter-{m}"} for m in range(1, 13)]},
                 types={"Ledger__c": {"Clio_Amount__c": "currency", "Case__c": "reference", "Clio_Date__c": "date"}})
    out = verify.reconcile_migration(org, root, load_spec(None), run_label=label)
    return {**out, "queries": org.queries}


def _bank_transaction_reads(monkeypatch) -> list[str]:
    """The staged bank transaction files read from now on (one entry a read of a file)."""
    read, real = [], staging.read_jsonl_gz

    def spy(path, *a, **k):
        if Path(str(path)).parent.name == "bank_transactions":
            read.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(staging, "read_jsonl_gz", spy)
    return read


def test_books_in_parts_read_the_staged_records_once(tmp_path: Path, monkeypatch):
    """A larger firm's books and per-matter trust figures are compared in parts (here 8), and the staged
    records of the books are read once for all the parts (sent to their parts as read), not again for each
    part's books and each part's figures: at most one read more than the books compared whole (fails on
    e41918b: 20 reads of the staged bank transactions against 5, two a part)."""
    from clio2sf.verify import reconciliation

    reads = _bank_transaction_reads(monkeypatch)
    _trust_case(tmp_path, "whole")
    whole = len(reads)
    monkeypatch.setattr(reconciliation, "BOOK_PART_RECORDS", 4)
    reads.clear()
    _trust_case(tmp_path, "parts")
    assert reconciliation._book_parts(tmp_path / "raw") == 8
    assert len(reads) <= whole + 1, (whole, len(reads))


def test_a_record_staged_twice_in_two_parts_counts_its_last_version(tmp_path: Path, monkeypatch):
    """A bank transaction staged again on another matter (another part): the per-matter trust figures in
    parts count its last version only, as compared whole (its parts' staged records are read whole for
    the figures), and the books in parts take each version as the books compared whole do."""
    import re

    from clio2sf.verify import reconciliation

    whole = _trust_case(tmp_path, "whole", moved=True)
    monkeypatch.setattr(reconciliation, "BOOK_PART_RECORDS", 4)
    parts = _trust_case(tmp_path, "parts", moved=True)
    parts.pop("queries"), whole.pop("queries")
    assert whole == {**parts, "report": whole["report"]}
    doc = json.loads((tmp_path / "reports" / "parts" / "reconciliation.json").read_text())
    figures = {a["figure"]: a for a in doc["amounts"]}
    assert not figures["trust.matter.2"]["ok"] and figures["trust.matter.7"]["ok"] is False  # 40.30 moved

    def text(label: str, name: str) -> str:
        body = (tmp_path / "reports" / label / name).read_text()
        body = body.replace(f'"run": "{label}"', '"run": ""').replace(f"<th>Run id</th><td>{label}<", "")
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "TIME", body)

    for name in ("books.csv", "reconciliation.csv", "reconciliation.json", "reconciliation.html"):
        assert text("parts", name) == text("whole", name), name


def test_per_matter_trust_figures_in_parts_are_those_compared_whole(tmp_path: Path, monkeypatch):
    """A larger firm's books and per-matter trust figures are compared in parts (here forced: 4 records a
    part): the same reports as compared whole, the seeded differences caught in both."""
    import re

    from clio2sf.verify import reconciliation

    whole = _trust_case(tmp_path, "whole")
    monkeypatch.setattr(reconciliation, "BOOK_PART_RECORDS", 4)
    held = []  # per-matter figures of each side compared at once
    compared = reconciliation._compared_amounts

    def spy(money, sums, measured):
        held.append(max(sum(k.startswith("trust.matter.") for k in side) for side in (money, sums)))
        return compared(money, sums, measured)

    monkeypatch.setattr(reconciliation, "_compared_amounts", spy)
    parts = _trust_case(tmp_path, "parts")
    assert len(held) == 9 and held[0] == 0 and 0 < max(held) < 12, held  # the others, then 8 parts
    # each part but the first asks the org for its matters' rows only (the first: also ids not ending in digits)
    ledger = [q for q in parts.pop("queries") if "FROM Ledger__c" in q]
    assert not any("LIKE" in q for q in whole.pop("queries"))
    assert sum("Case__r.Clio_Id__c LIKE '%7'" in q for q in ledger) == 2, ledger  # the books, the figures
    assert whole == {**parts, "report": whole["report"]}
    assert not whole["amounts_ok"] and not whole["books_ok"]
    doc = json.loads((tmp_path / "reports" / "parts" / "reconciliation.json").read_text())
    bad = {a["figure"] for a in doc["amounts"] if not a["ok"]}
    assert bad == {"trust.account.1", "trust.matter.5", "trust.matter.7", "trust.matter.13"}, bad
    assert [a["figure"] for a in doc["amounts"]] == sorted(a["figure"] for a in doc["amounts"])
    assert len([a for a in doc["amounts"] if a["figure"].startswith("trust.matter.")]) == 13
    assert len(doc["names"]) == 13 and doc["names"]["matter-5"] == "00005-T"  # matters and the missing entry

    def text(label: str, name: str) -> str:
        body = (tmp_path / "reports" / label / name).read_text()
        body = body.replace(f'"run": "{label}"', '"run": ""').replace(f"<th>Run id</th><td>{label}<", "")
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "TIME", body)

    for name in ("books.csv", "reconciliation.csv", "reconciliation.json", "reconciliation.html",
                 "reconciliation_notes.json"):
        assert text("parts", name) == text("whole", name), name
