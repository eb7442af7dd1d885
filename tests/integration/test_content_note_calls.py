"""ContentNote creates and title updates through ``/composite``: five sObject Collections a call,
counted by the Salesforce sandbox's own request log."""

from __future__ import annotations

import pytest

from clio2sf.load import NOTE_MARKER, Envelope, load_content_notes

pytestmark = pytest.mark.integration


@pytest.fixture
def sf(sf_sandbox):
    from clio2sf_airflow.hooks.salesforce import ClioSalesforceHook

    return sf_sandbox, ClioSalesforceHook(sleep=lambda s: None)


def _notes(n: int) -> list[Envelope]:
    return [Envelope("ContentNote", f"note-{k}", {"Title": f"Note {k}", "Content": f"<p>body {k}</p>"}, None, ("Title",))
            for k in range(n)]


def _writes(sb) -> list[tuple[str, str]]:
    return [(e["method"], e["path"].split("/v59.0/", 1)[-1]) for e in sb.request_log()["requests"]
            if e["api"] and e["kind"] == "composite"]


def test_notes_are_created_and_titled_a_thousand_a_call(sf):
    """1,100 notes without an original time (marker titles): 2 create calls and 2 title calls, not 6 + 6."""
    sb, hook = sf
    hook.describe("ContentNote")
    before = len(_writes(sb))
    res = load_content_notes(hook, _notes(1_100), {}, sleep=lambda s: None)
    assert len(res.outcomes) == 1_100 and all(o.success and o.created for o in res.outcomes)
    writes = _writes(sb)[before:]
    # one /composite of five collections, then the last 100 notes as a plain collection; the same for titles
    assert writes == [("POST", "composite"), ("POST", "composite/sobjects"),
                      ("POST", "composite"), ("PATCH", "composite/sobjects")], writes
    got = {r["Id"]: r["Title"] for r in hook.query_all("SELECT Id, Title FROM ContentNote")}
    assert len(got) == 1_100
    assert sorted(got.values()) == sorted(f"Note {k}" for k in range(1_100))
    assert not [t for t in got.values() if t.startswith(NOTE_MARKER.split("{")[0])]
    assert {o.sf_id for o in res.outcomes} == set(got)
    # a second load finds every note by its ledger Id: nothing written
    again = load_content_notes(hook, _notes(1_100), {o.source_system_id: o.sf_id for o in res.outcomes},
                               sleep=lambda s: None)
    assert all(o.status == "skipped" for o in again.outcomes)
    assert _writes(sb)[before + 4:] == []


def test_a_subrequest_refused_whole_fails_its_records_only(sf):
    """A collection of the call Salesforce refuses whole (here: a record that is not a JSON object) fails
    its own records; the other collections of the same call are written."""
    sb, hook = sf
    good = [{"attributes": {"type": "ContentNote"}, "Title": f"n{k}", "Content": "PHA+eDwvcD4="} for k in range(400)]
    bad = [{"attributes": {"type": "ContentNote"}, "Title": f"b{k}", "Content": "PHA+eDwvcD4="} for k in range(200)]
    bad[0] = "not a record"  # the whole collection is refused (JSON_PARSER_ERROR)
    out = hook.composite_collections("POST", good[:200] + bad + good[200:])
    assert len(out) == 600
    assert all(r["success"] for r in out[:200] + out[400:])
    assert not any(r["success"] for r in out[200:400])
    assert out[200]["errors"][0]["statusCode"] == "JSON_PARSER_ERROR"
    assert len(hook.query_all("SELECT Id FROM ContentNote")) == 400
