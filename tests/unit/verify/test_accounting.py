"""Field accounting: every Clio field with data is migrated, left behind for an approved reason, or a failure."""

from __future__ import annotations

import copy

from clio2sf import catalog
from clio2sf.mapping.spec import _top_level_fields, spec_from_dict
from clio2sf.verify import accounting
from tests.unit.verify import good_data as g


def _acct(raw, spec=None, listed=None):
    return accounting.account(lambda name: raw.get(name, []), raw, spec or g.spec(), listed)


def _spec_with(not_migrated=None, decisions=None, base=None):
    data = copy.deepcopy((base or g.spec()).data)
    for key, fields in (not_migrated or {}).items():
        data.setdefault("not_migrated", {}).setdefault(key, {}).update(fields)
    if decisions:
        data["options"]["custom_fields"]["decisions"].update(decisions)
    return spec_from_dict(data)


def _dropping(*heads):
    """The default spec without any field fed by these Clio fields: the pipeline as it was before issue 14."""
    data = copy.deepcopy(g.spec().data)
    for ospec in data["objects"].values():
        for target in list(ospec.get("fields") or {}):
            src = (ospec["fields"][target] or {}).get("from")
            paths = [src] if isinstance(src, str) else list(src or [])
            if any(p.split(".")[0].split("[")[0] in heads for p in paths):
                del ospec["fields"][target]
    return spec_from_dict(data)


def test_a_field_with_data_that_goes_nowhere_fails_naming_it():
    raw = g.raw()
    raw["tasks"][0]["data"]["escalation_level"] = "urgent"  # a field no spec has ever seen
    spec = _dropping("assigner", "last_sent_at")
    failures = accounting.failures(_acct(raw, spec))
    assert "tasks:Task.escalation_level (1 values)" in failures, failures
    assert "tasks:Task.assigner (1 values)" in failures, failures
    assert "bills:Clio_Billing__c.last_sent_at (1 values)" in failures, failures
    # the task's private flag is a documented derivation (Clio_Private__c), not a silence
    assert _acct(raw, spec)["tasks:Task.permission"]["status"] == "migrated"


def test_an_approved_not_migrated_reason_counts_the_values_left_behind():
    raw = g.raw()
    spec = _spec_with({"tasks": {"assigner": "the admin keeps who assigned a task in Clio only"},
                       "bills": {"last_sent_at": "sending history stays in Clio"}}, base=_dropping("assigner", "last_sent_at"))
    acct = _acct(raw, spec)
    assert not any(f.startswith(("tasks:", "bills:")) for f in accounting.failures(acct))
    row = acct["tasks:Task.assigner"]
    assert (row["status"], row["values"], row["left_behind"], row["migrated"]) == ("not_migrated", 1, 1, 0)
    assert acct["contacts:Contact.primary_email_address"]["migrated"] == 1
    assert accounting.summary(acct)["values_left_behind"] >= 2


def test_a_company_secondary_email_is_accounted_per_route():
    """The person route maps secondary emails, the company route does not: only the company's are named."""
    raw = g.raw()
    for env in raw["contacts"]:
        env["data"]["secondary_email_address"] = "second@acme.example"
    data = copy.deepcopy(g.spec().data)
    data["objects"]["Account"]["fields"].pop("Clio_Secondary_Email__c", None)  # as before issue 14
    acct = _acct(raw, spec_from_dict(data))
    assert acct["contacts:Contact.secondary_email_address"]["status"] == "migrated"
    assert "contacts:Account.secondary_email_address (1 values)" in accounting.failures(acct)


def test_a_custom_field_discover_did_not_list_is_unaccounted_until_the_admin_decides():
    raw = g.raw()
    raw["contacts"][1]["data"]["custom_field_values"] = [{"field_name": "Referral Code", "value": "R-17",
                                                          "custom_field": {"id": 999}}]
    listed = [{"parent_type": "Contact", "name": "Preferred Language"}]
    assert "contacts:Contact.custom_field_values[Referral Code] (1 values)" in accounting.failures(_acct(raw, None, listed))
    # discover lists it (the admin saw it when approving): the automatic <Name>__c counts as migrated
    acct = _acct(raw, None, [*listed, {"parent_type": "Contact", "name": "Referral Code"}])
    assert acct["contacts:Contact.custom_field_values[Referral Code]"]["destination"] == "Contact.Referral_Code__c"
    # or the admin decides: skip with a reason
    spec = _spec_with(decisions={"Contact:Referral Code": {"skip": True}})
    row = _acct(raw, spec, listed)["contacts:Contact.custom_field_values[Referral Code]"]
    assert (row["status"], row["left_behind"]) == ("not_migrated", 1)


def test_discover_plan_lists_every_field_the_extraction_returns():
    spec = g.spec()
    rows = accounting.plan(spec, [{"parent_type": "Matter", "name": "Court", "field_type": "text_line"}])
    listed = {(r["object"], r["field"]) for r in rows}
    for obj in accounting.ACCOUNTED:
        for fname in _top_level_fields(catalog.get(obj).fields):
            assert (obj, fname) in listed, (obj, fname)
    court = next(r for r in rows if r["field"] == "custom_field_values[Court]")
    assert court["destination"] == "Case.Court__c" and court["status"] == "migrated"
    assert {r["status"] for r in rows} == {"migrated", "not_migrated", "unaccounted"}
    md = accounting.plan_markdown(accounting.plan(_dropping("assigner")))
    assert "| tasks | Task | assigner |  | unaccounted |" in md
