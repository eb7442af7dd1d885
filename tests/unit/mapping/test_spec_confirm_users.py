from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from clio2sf.mapping.confirm import UnconfirmedMappingError, confirm, read_confirmations, require_confirmed
from clio2sf.mapping.spec import DEFAULT_MAPPINGS_DIR, SpecError, load_spec, merge, spec_from_dict
from clio2sf.mapping.users import UserMap

pytestmark = pytest.mark.unit


def test_firm_override_merges_over_default():
    base, hv, opp = load_spec(None), load_spec("harlow_vance"), load_spec("example_opportunities")
    assert hv.firm == "harlow_vance" and hv.data["firm"] == "Harlow & Vance LLP"
    assert hv.value_map("practice_area_case_type").values["Estate Planning"] == "Wills and Estates"
    # the firm adds a role and keeps the defaults it did not mention
    roles = hv.value_map("relationship_role").values
    assert roles["Guardian ad litem"] == "Guardian" and roles["Judge"] == "Judge"
    assert len({base.content_hash, hv.content_hash, opp.content_hash}) == 3


def test_merge_semantics_lists_replace_none_removes():
    out = merge({"a": {"x": 1, "y": {"z": 2}}, "l": [1, 2]}, {"a": {"y": None, "w": 3}, "l": [9]})
    assert out == {"a": {"x": 1, "w": 3}, "l": [9]}


def test_matter_target_mixed_and_load_order():
    opp = load_spec("example_opportunities")
    assert opp.matter_target({"practice_area": {"name": "Litigation"}}) == "Case"
    assert opp.matter_target({"practice_area": {"name": "Corporate"}}) == "Opportunity"
    assert opp.matter_target({}) == "Opportunity"
    order = opp.load_order
    assert order.index("Account") < order.index("Contact") < order.index("Case") < order.index("CaseContactRole")
    assert order.index("Opportunity") < order.index("OpportunityContactRole") < order.index("Clio_Billing__c")
    assert order.index("Event") < order.index("EventRelation") and order.index("ContentVersion") < order.index("ContentDocumentLink")
    hv = load_spec("harlow_vance")
    assert "Opportunity" not in hv.load_order and "OpportunityContactRole" not in hv.load_order


def test_matter_target_by_custom_field():
    data = copy.deepcopy(load_spec(None).data)
    data["options"]["matter_object_field"] = "Salesforce Object"
    spec = spec_from_dict(data)
    matter = {"custom_field_values": [{"field_name": "Salesforce Object", "value": "Opportunity"}]}
    assert spec.matter_target(matter) == "Opportunity"
    assert set(spec.matter_objects) == {"Case", "Opportunity"}


def test_bad_spec_error_names_the_key(tmp_path):
    shutil.copytree(DEFAULT_MAPPINGS_DIR, tmp_path / "m", ignore=shutil.ignore_patterns("*.confirmations.yaml"))
    (tmp_path / "m" / "firms" / "broken.yaml").write_text(yaml.safe_dump(
        {"options": {"matter_object": "Lead"}, "objects": {"Contact": {"fields": {"Email": {"frm": "x"}}}}}))
    with pytest.raises(SpecError) as exc:
        load_spec("broken", tmp_path / "m")
    text = str(exc.value)
    assert "options.matter_object" in text and "objects.Contact.fields.Email" in text


def test_unknown_value_map_reference_is_reported():
    data = copy.deepcopy(load_spec(None).data)
    data["objects"]["Case"]["fields"]["Status"]["map"] = "no_such_map"
    with pytest.raises(SpecError, match="objects.Case.fields.Status.map"):
        spec_from_dict(data)


def test_unknown_firm():
    with pytest.raises(SpecError, match="known firms"):
        load_spec("nobody")


def test_confirm_and_require(tmp_path):
    spec = load_spec("harlow_vance")
    store = tmp_path / "harlow_vance.confirmations.yaml"
    with pytest.raises(UnconfirmedMappingError, match="has not been confirmed"):
        require_confirmed(spec, store)
    entry = confirm(spec, "admin@harlow-vance.example", "2026-11-28T09:00:00+00:00", store)
    assert entry["hash"] == spec.content_hash
    assert require_confirmed(spec, store)["by"] == "admin@harlow-vance.example"
    assert read_confirmations(store)[0]["at"] == "2026-11-28T09:00:00+00:00"
    changed_data = copy.deepcopy(spec.data)
    changed_data["value_maps"]["task_status"]["values"]["pending"] = "Deferred"
    changed = spec_from_dict(changed_data, firm="harlow_vance")
    with pytest.raises(UnconfirmedMappingError, match="changed since it was confirmed"):
        require_confirmed(changed, store)


def test_user_map_fallback_is_reported():
    users = UserMap({1001: "005000000000001AAA"}, "005000000000009AAA")
    assert users.resolve(1001, "matter-7") == "005000000000001AAA"
    assert users.resolve(4242, "matter-8") == "005000000000009AAA"
    assert users.fallback_records == ["matter-8"] and users.fallback_counts[4242] == 1
    with pytest.raises(ValueError, match="not a Salesforce user id"):
        UserMap({1: "bob"}, None)
    doc = UserMap.from_json({"users": {"1001": "005000000000001AAA"}, "fallback_owner": "005000000000009AAA"})
    assert doc.resolve(1001) == "005000000000001AAA" and doc.fallback == "005000000000009AAA"


def test_reject_revokes_an_earlier_approval_and_names_who_and_why(tmp_path):
    from clio2sf.mapping.confirm import confirmation_for, reject

    spec = load_spec("harlow_vance")
    store = tmp_path / "sample.yaml"
    confirm(spec, "ops@harlow-vance.example", None, store)
    assert confirmation_for(spec, store)["by"] == "ops@harlow-vance.example"
    reject(spec, "lead@harlow-vance.example", "trust balances differ", None, store)
    assert confirmation_for(spec, store) is None
    with pytest.raises(UnconfirmedMappingError, match="rejected by lead@harlow-vance.example.*trust balances differ"):
        require_confirmed(spec, store)
    assert [e.get("decision") for e in read_confirmations(store)] == [None, "rejected"]  # both kept, in order
    confirm(spec, "lead@harlow-vance.example", None, store)  # approved again after the fix
    assert require_confirmed(spec, store)["by"] == "lead@harlow-vance.example"
