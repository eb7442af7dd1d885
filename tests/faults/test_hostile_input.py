"""Hostile input and bad configuration (issue 17): each finding, one test, at the function level.

Each test feeds the bundle the hostile value (an id, a config, a record, a connection extra) and
checks the documented outcome: refused with a message, or the record rejected with its reason while
the phase goes on.  docs/faults.md ("Hostile input") lists each class with its outcome.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import time

import pytest
from upath import UPath

from clio2sf import staging

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- ids that become paths


@pytest.mark.parametrize("bad", [".", "..", "a/b", "a\\b", "raw", "ledger", "", "-x", "x" * 65])
def test_migration_id_that_is_not_one_segment_is_refused_everywhere(tmp_path, bad):
    with pytest.raises(ValueError, match="migration_id"):
        staging.migration_root(tmp_path, "acme", bad)
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError

    from clio2sf_airflow.dag_defaults import migration_params

    with pytest.raises(ParamValidationError):
        Param(bad, **{k: v for k, v in migration_params()["migration_id"].dump().items()
                      if k in ("schema",)}).resolve()
    from scripts import approve

    with pytest.raises(SystemExit):
        approve.main(["mapping", "--firm", "harlow_vance", "--migration-id", bad, "--by", "x",
                      "--staging-root", str(tmp_path)])
    assert not any(tmp_path.rglob("*.yaml"))


@pytest.mark.parametrize("bad", ["..", "../harlow_vance", "raw", "Acme"])
def test_firm_name_that_is_not_one_segment_is_refused_by_config_and_staging(tmp_path, bad):
    from clio2sf.mapping.spec import SpecError, load_spec

    with pytest.raises(SpecError, match="firm"):
        load_spec(bad)
    with pytest.raises(ValueError, match="firm"):
        staging.migration_root(tmp_path, bad, "m1")


def test_two_firms_never_share_a_staging_folder_and_purge_skips_layout_folders(tmp_path):
    root = UPath(f"file://{tmp_path}")
    a = staging.migration_root(root, "firm_a", "m1")
    b = staging.migration_root(root, "firm_b", "m1")
    assert str(a) != str(b)
    # stray folders that are not <firm>/<migration> (what a '..' id used to create) are never purged
    staging.write_json(root / "raw" / "contacts" / "_progress.json", {})
    staging.write_json(root / "firm_a" / "ledger" / "x.json", {})
    staging.write_json(a / "raw" / "x.json", {})
    old = time.time() - 90 * 86400
    for p in tmp_path.rglob("*.json"):
        os.utime(p, (old, old))
    purged = staging.purge_older_than(root, 7)
    assert [p.rsplit("/", 2)[-2:] for p in purged] == [["firm_a", "m1"]]
    assert (tmp_path / "raw" / "contacts" / "_progress.json").exists()
    assert (tmp_path / "firm_a" / "ledger" / "x.json").exists()


# --------------------------------------------------------------------------- reports that attack their reader

FORMULAS = ["=HYPERLINK(\"https://evil.example\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
            "\tx", "\rx", "\uff1dcmd()"]


def test_diff_csv_neutralises_formula_cells_from_client_data(tmp_path):
    import csv

    from clio2sf import diff

    rows = [diff.FieldDiff("Contact", f"contact-{i}", "003x", "LastName", "last_name", v, v, v, "match")
            for i, v in enumerate(FORMULAS)]
    rows.append(diff.FieldDiff("Contact", "contact-n", "003x", "Amount__c", "amount", "-12.5", -12.5, "-12.5", "match"))
    path = diff.write_diff_csv(tmp_path / "diff.csv", rows)
    cells = list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))
    for row, value in zip(cells, FORMULAS, strict=False):
        for col in ("clio_value", "sent_value", "sf_value"):
            assert row[col] == "'" + value, (col, row[col])
    assert cells[-1]["clio_value"] == "-12.5" and cells[-1]["sent_value"] == "-12.5"  # plain numbers untouched


def test_report_pages_carry_no_markup_from_client_data():
    """Record names, values, reasons, currencies and firm names in the reconciliation, books and diff
    pages are text: no tag, no attribute, no link from data (the plugin's CSP forbids scripts too)."""
    import re
    from decimal import Decimal

    from clio2sf import books, diff, reconcile

    evil = '"><script>alert(1)</script><a href="javascript:alert(2)">x</a>'
    names = {"matter-1": evil, "contact-1": evil}
    rec = reconcile.reconcile(
        reconcile.SourceTotals(ids={"matters": {"matter-1", "matter-2"}}, amounts={"trust.matter.1": Decimal(5)}),
        reconcile.TargetTotals(ids={"matters": []}, amounts={"trust.matter.1": Decimal(4)}),
        [{"object": "matters", "source_system_id": "matter-2", "rule": evil}])
    book = books.BooksReconciliation(
        [books.BillRow("bill-1", evil, {"total": evil}, None, "missing in Salesforce")],
        [books.TrustRow("matter-1", None, Decimal(5), Decimal(0), None, None, "missing in Salesforce")],
        [books.ClientRow("contact-1", Decimal(1), Decimal(1), None, None, "missing in Salesforce")])
    pages = [reconcile.reconciliation_html(rec, extra_html=books.books_html(book, labels=names, currency=evil),
                                           context={"firm": evil, "run": evil}, currency=evil, labels=names),
             diff.diff_html([diff.FieldDiff(evil, evil, evil, evil, evil, evil, evil, evil, diff.MISMATCH, evil,
                                            label=evil)], context={"firm": evil}, sobject=evil, field=evil)]
    for page in pages:
        body = page.split("</style>", 1)[1]
        assert "<script" not in body and "javascript:alert(2)\">" not in body
        assert not re.search(r"<a [^>]*href=\"javascript", body)
        assert "&lt;script&gt;" in body


def test_every_csv_report_writer_goes_through_the_neutraliser():
    from clio2sf import user_resolution
    from clio2sf.user_resolution import Resolution

    text = user_resolution.report_csv([Resolution(1, "=cmd()", "@x.example", True, "matched", None, "005x", "-n")])
    assert "'=cmd()" in text and "'@x.example" in text and "'-n" in text
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    writers = [p for d in ("clio2sf", "plugins", "scripts") for p in (root / d).rglob("*.py")
               if re.search(r"csv\.(writer|DictWriter)\(", p.read_text())]
    # reports.csv_text is the one report writer; load.py builds the Bulk API upload (data, not a report)
    assert sorted(p.relative_to(root).as_posix() for p in writers) == ["clio2sf/load.py", "clio2sf/reports.py"]


def test_markdown_reports_keep_links_and_images_from_data_inert():
    from markdown_it import MarkdownIt

    from clio2sf import reports
    from clio2sf.discovery.document import mapping_document
    from tests.unit import test_discovery_document as tdd

    evil_link, evil_img = "[click](javascript:alert(1))", "![x](https://evil.example/track.png)"
    schema = {**tdd.CLIO_SCHEMA, "firm_name": evil_img,
              "custom_fields": [*tdd.CLIO_SCHEMA["custom_fields"], tdd._cf(9, evil_link, "Contact", "text_line")],
              "practice_areas": [*tdd.CLIO_SCHEMA["practice_areas"], {"id": 19, "name": evil_link}]}
    spec, describes, proposals, plan, est = tdd._inputs(None)
    md, _ = mapping_document(spec, schema, describes, proposals, plan, est)
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "javascript:" not in "".join(re.findall(r'href="[^"]*"', rendered))
    assert "<img" not in rendered and "evil.example/track.png" in rendered  # shown as text
    assert "<script" not in MarkdownIt("commonmark").render(reports.md_text("<script>alert(1)</script>"))





# --------------------------------------------------------------------------- TLS and plain HTTP


def _clio_conn(monkeypatch, host="https://app.clio.example", **extra):
    import json

    monkeypatch.setenv("AIRFLOW_CONN_CLIO_DEFAULT", json.dumps({
        "conn_type": "http", "host": host, "login": "id", "password": "secret",
        "extra": {"refresh_token": "r", **extra}}))
    from clio2sf_airflow.hooks.clio import ClioHook

    return ClioHook()


@pytest.mark.parametrize("off", ["false", "False", 0, "0", False, "no"])
def test_a_connection_extra_cannot_switch_tls_verification_off_without_the_opt_in(monkeypatch, off, caplog, capsys):
    from clio2sf_airflow.hooks.clio import ClioAuthError

    with pytest.raises(ClioAuthError, match="verification off; refused.*insecure_skip_tls_verify"):
        _ = _clio_conn(monkeypatch, verify=off).verify
    caplog.clear()
    capsys.readouterr()
    hook = _clio_conn(monkeypatch, verify=off, insecure_skip_tls_verify=True)
    assert hook.verify is False
    logged = caplog.text + capsys.readouterr().out  # Airflow's structlog writes task logs to stdout
    assert "TLS CERTIFICATE VERIFICATION IS OFF" in logged and "warning" in logged.lower()  # loudly logged


@pytest.mark.parametrize("host", ["http://app.clio.example", "http://10.0.0.5:8701", "ftp://app.clio.example"])
def test_plain_http_is_refused_except_on_the_loopback(monkeypatch, host):
    from clio2sf_airflow.hooks.clio import ClioAuthError

    with pytest.raises(ClioAuthError, match="https"):
        _ = _clio_conn(monkeypatch, host=host).base_url
    with pytest.raises(ClioAuthError, match="https"):
        _ = _clio_conn(monkeypatch, token_url=host + "/oauth/token").token_url
    for ok in ("http://127.0.0.1:8701", "http://localhost:8701", "http://[::1]:8701"):
        assert _clio_conn(monkeypatch, host=ok).base_url == ok


def test_document_downloads_use_the_hook_session_not_bare_requests(monkeypatch, requests_mock):
    import pathlib

    hook = _clio_conn(monkeypatch)
    hook._access_token, hook._expires_at = "tok", time.time() + 3600
    from clio2sf.ratebudget import RateBudget

    hook._budget = RateBudget("t", None)  # in memory: no shared state for this test
    requests_mock.get("https://app.clio.example/api/v4/documents/5/download.json", status_code=303,
                      headers={"Location": "https://storage.example/5?sig=x"})
    requests_mock.get("https://storage.example/5?sig=x", content=b"pdf")
    monkeypatch.setenv("NETRC", "/nonexistent")
    used = []
    real = hook.session.get
    monkeypatch.setattr(hook.session, "get", lambda *a, **k: used.append(a[0]) or real(*a, **k))
    assert b"".join(hook.download_document(5)) == b"pdf"
    assert used == ["https://storage.example/5?sig=x"] and hook.session.trust_env is False
    assert "Authorization" not in requests_mock.request_history[-1].headers
    # a 303 to plain HTTP storage is refused, and no module of the bundle calls requests.get/post directly
    requests_mock.get("https://app.clio.example/api/v4/documents/6/download.json", status_code=303,
                      headers={"Location": "http://storage.example/6"})
    from clio2sf_airflow.hooks.clio import ClioAuthError

    with pytest.raises(ClioAuthError, match="plain HTTP"):
        b"".join(hook.download_document(6))
    root = pathlib.Path(__file__).resolve().parents[2]
    bare = [str(p.relative_to(root)) for d in ("clio2sf", "plugins", "dags") for p in (root / d).rglob("*.py")
            if re.search(r"\brequests\.(get|post|put|patch|delete|request|head)\(", p.read_text())]
    assert bare == []


def test_a_paging_link_to_another_host_never_gets_the_token(monkeypatch, requests_mock):
    from clio2sf_airflow.hooks.clio import ClioBadRequest

    hook = _clio_conn(monkeypatch)
    with pytest.raises(ClioBadRequest, match="refusing to send the Clio token"):
        hook._url("https://evil.example/api/v4/contacts.json?page_token=x")
    assert hook._url("https://APP.clio.example:443/api/v4/contacts.json?x=1").endswith("x=1")


# --------------------------------------------------------------------------- one bad record, never the phase


@pytest.fixture(scope="module")
def sf(tmp_path_factory):
    from sandbox.salesforce.testing import run_sf_sandbox

    with run_sf_sandbox(tmp_path_factory.mktemp("sf-hostile"), seed=42) as sb:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sb.connection_json())
            mp.setenv("REQUESTS_CA_BUNDLE", str(sb.ca_bundle))
            from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

            hook = ClioSalesforceHook(sleep=lambda s: None, poll_interval=0.05, max_poll_interval=0.5)
            hook.ensure_external_id_field("Account")
            yield sb, hook


def _accounts(prefix: str, n: int, **bad: dict) -> list:
    from clio2sf.load import Envelope

    return [Envelope("Account", f"contact-{prefix}{i}",
                     {"Clio_Id__c": f"contact-{prefix}{i}", "Name": f"N{i}", "AnnualRevenue": 10.5,
                      **bad.get(str(i), {})}, "Clio_Id__c") for i in range(n)]


@pytest.mark.parametrize("mode", ["composite", "bulk"])
def test_nan_or_infinity_in_a_number_field_rejects_that_row_and_the_batch_goes_on(sf, mode):
    from clio2sf.load import load_rows, reject_line

    sb, hook = sf
    rows = _accounts(f"nan{mode}", 6, **{"1": {"AnnualRevenue": float("nan")}, "4": {"AnnualRevenue": float("-inf")}})
    result = load_rows(hook, rows, mode=mode)
    failed = {o.source_system_id: o for o in result.outcomes if not o.success}
    assert set(failed) == {f"contact-nan{mode}1", f"contact-nan{mode}4"}
    line = reject_line(failed[f"contact-nan{mode}1"], "full_load", "Account")
    assert "AnnualRevenue" in line["message"] and "NaN/Infinity" in line["message"], line
    got = sb.sf().query_all(f"SELECT Clio_Id__c, AnnualRevenue FROM Account WHERE Clio_Id__c LIKE 'contact-nan{mode}%'")
    assert sorted(r["Clio_Id__c"] for r in got["records"]) == [f"contact-nan{mode}{i}" for i in (0, 2, 3, 5)]


def test_nan_infinity_and_locale_ambiguous_numbers_are_rejected_at_transform_with_reason():
    from clio2sf.mapping.values import BadValue, to_number

    for text in ("NaN", "Infinity", "-inf", float("nan"), float("inf"), "1,5", "1.234,56", "1,234", "12,34.5"):
        with pytest.raises(BadValue) as err:
            to_number(text)
        assert err.value.rule == "bad_number" and repr(text) in str(err.value)
    assert "locale-ambiguous" in str(pytest.raises(BadValue, to_number, "1,5").value)
    assert to_number("1,234.56") == 1234.56 and to_number("-12.5") == -12.5 and to_number("7") == 7


def test_hash_na_text_is_loaded_as_text_never_as_bulk_null(sf):
    from clio2sf.load import Envelope, load_rows

    sb, hook = sf
    rows = [Envelope("Account", f"contact-na{i}", {"Clio_Id__c": f"contact-na{i}", "Name": "#N/A" if i == 2 else f"N{i}",
                                                  "Description": "#N/A" if i == 3 else "d"}, "Clio_Id__c")
            for i in range(5)]
    result = load_rows(hook, rows, mode="bulk")
    assert result.failed == 0, [o.errors for o in result.outcomes if not o.success]
    got = {r["Clio_Id__c"]: r for r in sb.sf().query_all(
        "SELECT Clio_Id__c, Name, Description FROM Account WHERE Clio_Id__c LIKE 'contact-na%'")["records"]}
    assert got["contact-na2"]["Name"] == "#N/A" and got["contact-na3"]["Description"] == "#N/A"
    assert got["contact-na0"]["Description"] == "d"


def _calendar(**over):
    import copy

    from tests.unit.mapping.conftest import envelopes

    env = copy.deepcopy(envelopes("calendar_entries")[0])
    env["data"].update(over)
    return env


def _transform_calendar(items, horizon=None):
    from datetime import UTC, datetime

    from clio2sf.mapping.spec import load_spec
    from clio2sf.mapping.transform import split, transform_object
    from clio2sf.mapping.users import UserMap
    from tests.unit.mapping.conftest import ANN, BO, FALLBACK, lookup_all

    users = UserMap({1001: ANN, 1002: BO}, FALLBACK, calendars={801: 1001, 802: 1002})
    return split(transform_object("calendar_entries", items, load_spec("harlow_vance"), users, lookup=lookup_all(),
                                  horizon=horizon or datetime(2025, 1, 1, tzinfo=UTC)))


def test_a_calendar_entry_in_year_9999_is_rejected_and_the_others_transform():
    far = _calendar(id=90001, start_at="9999-12-30T10:00:00+00:00", end_at="9999-12-31T10:00:00+00:00",
                    recurrence_rule="FREQ=DAILY")
    far_single = _calendar(id=90002, start_at="9999-12-30T10:00:00+00:00", end_at="9999-12-30T11:00:00+00:00",
                           recurrence_rule=None)
    fine = _calendar(id=90003, recurrence_rule=None)
    for e in (far, far_single, fine):
        e["source_system_id"] = f"calendar_entry-{e['data']['id']}"
    rows, rejects = _transform_calendar([far, far_single, fine])
    rejected = {r["source_system_id"]: r for r in rejects if r.get("repair") is None}
    assert set(rejected) == {"calendar_entry-90001", "calendar_entry-90002"}
    assert all("outside Salesforce's date range" in r["message"] for r in rejected.values())
    assert any(r["source_system_id"].startswith("calendar_entry-90003") for r in rows)


def test_unknown_time_zone_rejects_a_series_and_notes_a_single_event():
    series = _calendar(id=90011, start_at="2024-03-01T10:00:00-05:00", end_at="2024-03-01T11:00:00-05:00",
                       recurrence_rule="FREQ=WEEKLY;COUNT=3", start_at_time_zone="America/Atlantis")
    single = _calendar(id=90012, start_at="2024-03-01T10:00:00-05:00", end_at="2024-03-01T11:00:00-05:00",
                       recurrence_rule=None, start_at_time_zone="America/Atlantis")
    for e in (series, single):
        e["source_system_id"] = f"calendar_entry-{e['data']['id']}"
    rows, rejects = _transform_calendar([series, single])
    by = {(r["source_system_id"], r["repair"] is None): r for r in rejects}
    assert by[("calendar_entry-90011", True)]["rule"] == "unknown_time_zone"
    assert "America/Atlantis" in by[("calendar_entry-90011", True)]["message"]
    note = by[("calendar_entry-90012", False)]
    assert note["rule"] == "unknown_time_zone" and "UTC offset" in note["repair"]
    single_row = next(r for r in rows if r["source_system_id"] == "calendar_entry-90012")
    assert single_row["row"]["StartDateTime"] == "2024-03-01T10:00:00-05:00"
    assert not any(r["source_system_id"].startswith("calendar_entry-90011") for r in rows)


def test_a_truncated_minutely_series_says_so():
    from clio2sf.mapping.spec import load_spec

    cap = load_spec("harlow_vance").options.get("recurrence_max_occurrences", 1000)
    minutely = _calendar(id=90021, start_at="2024-03-01T10:00:00-05:00", end_at="2024-03-01T10:00:30-05:00",
                         recurrence_rule="FREQ=MINUTELY", start_at_time_zone="America/New_York")
    minutely["source_system_id"] = "calendar_entry-90021"
    rows, rejects = _transform_calendar([minutely])
    events = [r for r in rows if r["sobject"] == "Event"]
    assert len(events) == cap
    notes = [r for r in rejects if r["rule"] == "recurrence_truncated"]
    assert len(notes) == 1 and f"more than {cap} occurrences" in notes[0]["message"] and notes[0]["repair"]


def test_a_document_listed_but_gone_on_download_is_rejected_and_the_extract_goes_on(tmp_path):
    from clio2sf import extract
    from clio2sf.catalog import get
    from clio2sf.mapping.transform import split, transform_object
    from clio2sf_airflow.hooks.clio import ClioBadRequest

    docs = [{"id": i, "name": f"d{i}.pdf", "latest_document_version": {"id": 100 + i, "size": 3}}
            for i in (1, 2, 3)]

    def fetch(path, params):
        return {"data": docs, "meta": {"paging": {}, "records": 3}}, {}

    def download(doc_id, version_id):
        if doc_id == 2:
            raise ClioBadRequest("document 2: GET /api/v4/documents/2/download.json: HTTP 404", 404)
        yield b"pdf"

    mroot = staging.migration_root(tmp_path, "acme", "m1")
    extract.extract_object(get("documents"), fetch, mroot, download=download)
    envs = list(extract.read_records(mroot, "documents"))
    assert [e["blob"] is not None for e in envs] == [True, False, True]
    assert "404" in envs[1]["blob_error"]
    from clio2sf.mapping.spec import load_spec
    from clio2sf.mapping.users import UserMap

    _, rejects = split(transform_object("documents", envs, load_spec("harlow_vance"), UserMap({}, "005000000000009AAA")))
    gone = [r for r in rejects if r["source_system_id"] == "document-2"]
    assert gone and gone[0]["rule"] == "document_gone" and "HTTP 404" in gone[0]["message"]
    # any other download error still fails the batch (and is retried), never silently skipped
    with pytest.raises(ClioBadRequest):
        extract._attach_blob({"data": docs[1], "source_system_id": "document-2"}, mroot,
                             lambda d, v: (_ for _ in ()).throw(ClioBadRequest("HTTP 403", 403)))



def test_a_document_purged_in_clio_between_listing_and_download_is_recorded_through_the_real_hook(tmp_path, monkeypatch):
    """The real ClioHook against the Clio sandbox: the document is deleted after its page was listed."""
    import json as _json

    from clio2sf import extract
    from clio2sf.catalog import get
    from sandbox.clio.testing import run_clio_sandbox

    with run_clio_sandbox(tmp_path / "clio", preset="tiny", rate_limit=None) as clio:
        monkeypatch.setenv("AIRFLOW_CONN_CLIO_DEFAULT", _json.dumps({
            "conn_type": "http", "host": clio.base_url, "login": clio.client_id, "password": clio.client_secret,
            "extra": {"refresh_token": clio.refresh_token, "rate_state_dir": str(tmp_path / "rate")}}))
        from clio2sf_airflow.hooks.clio import ClioHook

        hook = ClioHook()
        gone: list[int] = []

        def fetch(path, params):
            body, headers = hook.get_page(path, params)
            with_bytes = [d for d in body["data"] if d.get("latest_document_version")]
            if with_bytes and not gone:  # deleted for good in Clio after this page was listed
                gone.append(with_bytes[0]["id"])
                clio.mutate("documents", "purge", gone[0])
            return body, headers

        mroot = staging.migration_root(tmp_path / "stage", "acme", "m1")
        out = extract.extract_object(get("documents"), fetch, mroot, download=hook.download_document)
        envs = {e["clio_id"]: e for e in extract.read_records(mroot, "documents")}
    assert out["complete"] and gone and envs[gone[0]]["blob"] is None
    assert "HTTP 404" in envs[gone[0]]["blob_error"]
    assert sum(e["blob"] is not None for e in envs.values()) >= 1  # the others downloaded

def test_delta_load_rejects_never_overwrite_the_full_load_rejects_of_the_same_batch_name(sf, tmp_path):
    from clio2sf.pipeline import load_batch

    _, hook = sf
    mroot = staging.migration_root(tmp_path, "acme", "m1")
    written = {}
    for phase, base, bad in (("full_load", mroot, "1"), ("delta", mroot / "delta" / "w1", "2")):
        rows = [dataclasses.asdict(e) for e in _accounts(f"dl{phase}", 3, **{bad: {"AnnualRevenue": float("nan")}})]
        tpath = base / "transformed" / "Account" / "contacts-batch-00001.jsonl.gz"
        staging.write_jsonl_gz(tpath, [{"sobject": r["sobject"], "source_system_id": r["source_system_id"],
                                        "external_id_field": "Clio_Id__c", "natural_key": None, "row": r["row"]}
                                       for r in rows])
        summary = load_batch(hook, tpath, mroot, migration_id="m1", run_id=f"run-{phase}", phase=phase, mode="composite")
        written[phase] = summary["rejects_path"]
    full = mroot / "rejects" / "load" / "Account" / "contacts-batch-00001.jsonl"
    delta = mroot / "delta" / "w1" / "rejects" / "load" / "Account" / "contacts-batch-00001.jsonl"
    assert str(written["full_load"]) == str(full) and str(written["delta"]) == str(delta)
    assert [r["source_system_id"] for r in staging.read_jsonl(full)] == ["contact-dlfull_load1"]
    assert [r["source_system_id"] for r in staging.read_jsonl(delta)] == ["contact-dldelta2"]


# --------------------------------------------------------------------------- firm configs: what they may change


@pytest.fixture
def mappings(tmp_path):
    import shutil

    from clio2sf.mapping.spec import DEFAULT_MAPPINGS_DIR

    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, target)
    return target


def _firm(mappings, text: str):
    from clio2sf.mapping.spec import SpecError, load_spec

    path = mappings / "firms" / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec("hostile", mappings)
    return str(err.value), path


def test_a_firm_config_cannot_override_the_external_id(mappings):
    msg, _ = _firm(mappings, "objects:\n  Contact:\n    fields:\n      Clio_Id__c: {const: same-for-all}\n")
    assert "objects.Contact.fields.Clio_Id__c" in msg and "external id the migration sets itself" in msg
    msg, _ = _firm(mappings, "objects:\n  Contact:\n    fields:\n      clio_id__C: {from: email}\n")
    assert "objects.Contact.fields.clio_id__C" in msg


@pytest.mark.parametrize("owner", ["{const: 005000000000001AAA}", "{from: id}", "{template: '{id}'}"])
def test_owners_come_only_from_the_user_map(mappings, owner):
    # Contact has no OwnerId in spec.yaml, so a firm file can add one (the base Case one merges with it)
    msg, _ = _firm(mappings, f"objects:\n  Contact:\n    fields:\n      OwnerId: {owner}\n")
    assert "objects.Contact.fields.OwnerId" in msg and "user map" in msg and "fallback_owner" in msg


def test_the_individual_client_account_cannot_name_a_real_record(mappings):
    msg, _ = _firm(mappings, "options:\n  individual_account: {clio_id: contact-9000, name: Individual Client}\n")
    assert "options.individual_account.clio_id" in msg and "would overwrite that record" in msg


def test_duplicate_yaml_keys_are_an_error_naming_file_and_line(mappings):
    text = ("options:\n  fallback_owner: a@x.example\n  matter_object: Case\n"
            "  fallback_owner: b@x.example\n")
    msg, path = _firm(mappings, text)
    assert f"{path}:4: duplicate key 'fallback_owner' (first at line 2)" in msg


def test_targets_differing_only_in_case_are_an_error_naming_file_and_line(mappings):
    msg, path = _firm(mappings, "objects:\n  Contact:\n    fields:\n      title: {from: title}\n")
    assert "objects.Contact.fields" in msg and f"'title' at {path}:4" in msg and "spec.yaml:" in msg
    assert "case-insensitive" in msg


def test_a_constant_id_must_point_at_a_record_of_the_right_kind(mappings):
    import json as _json

    from clio2sf.mapping.spec import load_spec
    from clio2sf.mapping.validation import validate_spec_against_describes

    root = __import__("pathlib").Path(__file__).resolve().parents[2] / "sandbox" / "salesforce" / "describes"
    describes = {n: _json.loads((root / f"{n}.cumulusci.json").read_text()) for n in ("Account", "Contact", "Case")}
    fields = {f["name"] for f in describes["Contact"]["fields"]}
    assert "AccountId" in fields and "ReportsToId" in fields
    (mappings / "firms" / "constids.yaml").write_text(
        "objects:\n  Contact:\n    fields:\n      ReportsToId: {const: 001000000000001AAA}\n")
    spec = load_spec("constids", mappings)
    bad = [p for p in validate_spec_against_describes(spec, describes) if p.field == "ReportsToId"]
    assert bad and bad[0].rule == "bad_reference" and "another kind of record" in bad[0].message
    (mappings / "firms" / "constids.yaml").write_text(
        "objects:\n  Contact:\n    fields:\n      ReportsToId: {const: 003000000000001AAA}\n")
    spec = load_spec("constids", mappings)
    assert not [p for p in validate_spec_against_describes(spec, describes) if p.field == "ReportsToId"]
