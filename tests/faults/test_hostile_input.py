"""Hostile input and bad configuration (issue 17): each finding, one test, at the function level.

Each test feeds the bundle the hostile value (an id, a config, a record, a connection extra) and
checks the documented outcome: refused with a message, or the record rejected with its reason while
the phase goes on.  docs/faults.md ("Hostile input") lists each class with its outcome.
"""

from __future__ import annotations

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
    hook._budget = type("B", (), {"acquire": lambda self: None, "observe": lambda self, h: None})()
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
