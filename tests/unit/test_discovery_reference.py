"""Reference exports for what does not migrate: content, grouping and no secrets."""

from __future__ import annotations

import json

import pytest

from clio2sf.discovery import reference_exports
from clio2sf.discovery.reference import SOURCE, item_counts, scrub

pytestmark = pytest.mark.unit

SECRET = "whsec_3f9a1c0b7d"

CONFIG = {
    "task_template_lists": [
        {"id": 1, "etag": '"a"', "name": "PI intake", "description": "New personal injury matter",
         "practice_area": {"id": 11, "name": "Personal Injury"}, "created_at": "2024-01-01T10:00:00Z",
         "updated_at": "2024-01-01T10:00:00Z"},
        {"id": 2, "etag": '"b"', "name": "Closing", "description": None, "practice_area": None,
         "created_at": "2024-01-01T10:00:00Z", "updated_at": "2024-01-01T10:00:00Z"},
    ],
    "task_templates": [
        {"id": 101, "name": "Request police report", "description": "", "priority": "High",
         "task_template_list": {"id": 1, "name": "PI intake"}},
        {"id": 102, "name": "Send engagement letter", "description": "", "priority": "Normal",
         "task_template_list": {"id": 1, "name": "PI intake"}},
        {"id": 103, "name": "Close file", "description": "", "priority": "Low",
         "task_template_list": {"id": 2, "name": "Closing"}},
        {"id": 104, "name": "Orphan", "description": "", "priority": "Low",
         "task_template_list": {"id": 99, "name": "Deleted list"}},
    ],
    "document_templates": [
        {"id": 7, "filename": "engagement_letter.docx", "size": 20480, "content_type": "application/msword",
         "document_category": {"id": 3, "name": "Letters"}},
    ],
    "settings/billing": {"data": {"invoice_number_format": "INV-{n}", "use_utbms_codes": False,
                                  "payment_gateway_api_key": "sk_live_abc"}},
    "activity_descriptions": [
        {"id": 31, "name": "Court appearance", "default": False, "category_type": "hourly",
         "rate": {"amount": 350.0, "non_billable_amount": 0, "type": "Custom", "hierarchy": "Activity"}},
    ],
    "activity_rates": [
        {"id": 41, "rate": 275.0, "flat_rate": False, "contact_id": 9001, "co_counsel_contact_id": None,
         "user": {"id": 1001, "name": "Ann Lee"}, "group": None},
    ],
    "expense_categories": [{"id": 51, "name": "Filing fee", "rate": 0, "entry_type": "hard_cost"}],
    "custom_actions": [
        {"id": 61, "label": "Open in DocuSign", "target_url": "https://example.com/open?matter={matter_id}&token=abc123",
         "ui_reference": "matters/show"},
    ],
    "bank_accounts": [
        {"id": 71, "type": "Trust", "name": "IOLTA", "institution": "First Bank", "currency": "USD",
         "balance": 10500.0, "default_account": True, "account_number": "000123456789", "controlled_account": True},
        {"id": 72, "type": "Operating", "name": "Operating", "institution": "First Bank", "currency": "USD",
         "balance": 200.0, "default_account": True},
    ],
    "webhooks": [
        {"id": 81, "url": "https://hooks.example.com/clio", "model": "matter", "events": ["created", "updated"],
         "status": "enabled", "shared_secret": SECRET, "expires_at": "2026-12-01T00:00:00Z"},
    ],
    "users": [{"id": 1001, "name": "Ann Lee", "rate": 300.0}, {"id": 1002, "name": "Bo Chan", "rate": None}],
    "matter_billing_methods": {"hourly": 80, "flat": 15, "contingency": 5},
}


@pytest.fixture(scope="module")
def refs():
    return reference_exports(CONFIG, generated_at="2026-11-28T09:00:00Z")


def test_every_file_has_the_envelope(refs):
    assert set(refs) == {"workflows.json", "document_templates.json", "billing_automation.json",
                         "trust_accounting_rules.json", "webhooks.json", "rate_hierarchy.json", "groups.json",
                         "custom_field_sets.json", "document_categories.json", "reminders.json"}
    for name, doc in refs.items():
        assert doc["generated_at"] == "2026-11-28T09:00:00Z", name
        assert doc["source"] == SOURCE == "Clio Manage API v4"
        assert len(doc["rebuild_hint"]) > 40
        assert isinstance(doc["items"], list)
        json.dumps(doc)


def test_no_secret_anywhere(refs):
    text = json.dumps(refs)
    assert SECRET not in text and "shared_secret" not in text
    assert "sk_live_abc" not in text and "payment_gateway_api_key" not in text
    assert "abc123" not in text  # custom action URL query value redacted
    assert "000123456789" not in text and "********6789" in text  # account number masked
    hook = refs["webhooks.json"]["items"][0]
    assert hook["url"] == "https://hooks.example.com/clio" and hook["events"] == ["created", "updated"]


def test_workflows_grouped_by_list(refs):
    items = refs["workflows.json"]["items"]
    by_name = {i["list"]["name"]: i for i in items}
    assert [t["name"] for t in by_name["PI intake"]["task_templates"]] == ["Request police report", "Send engagement letter"]
    assert by_name["PI intake"]["practice_area"] == "Personal Injury"
    assert "Flow" in by_name["PI intake"]["rebuild_in_salesforce_as"]
    assert [t["id"] for t in by_name["Closing"]["task_templates"]] == [103]
    orphan = next(i for i in items if i["list"]["id"] == 99)
    assert [t["id"] for t in orphan["task_templates"]] == [104]


def test_billing_trust_rates(refs):
    billing = refs["billing_automation.json"]
    kinds = [i["kind"] for i in billing["items"]]
    assert kinds.count("billing_settings") == 1 and "custom_action" in kinds and "activity_description_rate" in kinds
    assert billing["items"][0]["settings"]["invoice_number_format"] == "INV-{n}"
    assert billing["summary"]["matter_billing_methods"] == {"hourly": 80, "flat": 15, "contingency": 5}
    trust = refs["trust_accounting_rules.json"]
    assert [a["name"] for a in trust["items"]] == ["IOLTA"]  # operating account excluded
    assert any("negative" in s for s in trust["semantics"]["clio_enforces"])
    assert any("Ledger__c" in s for s in trust["semantics"]["rebuild_in_salesforce"])
    assert trust["bank_account_types"] == {"Trust": 1, "Operating": 1}
    levels = [(i["level"], i.get("rate")) for i in refs["rate_hierarchy.json"]["items"]]
    assert ("client", 275.0) in levels and ("user", 300.0) in levels
    assert not any(lvl == "user" and r is None for lvl, r in levels)
    assert item_counts(refs)["workflows.json"] == 3


def test_rate_document_from_the_engine_is_used():
    doc = {"items": [{"level": "matter", "rate": 1.0}]}
    refs = reference_exports({}, rate_document=doc)
    assert refs["rate_hierarchy.json"]["items"] == [{"level": "matter", "rate": 1.0}]
    assert refs["billing_automation.json"]["summary"]["matter_billing_methods"].startswith("not counted")


def test_bad_config_is_named():
    with pytest.raises(ValueError, match=r"clio_config\['webhooks'\]\[0\]"):
        reference_exports({"webhooks": ["oops"]})


def test_scrub_nested_keys():
    assert scrub({"a": [{"client_secret": "x", "ok": 1}], "access_token": "y"}) == {"a": [{"ok": 1}]}


def test_clio_resources_replace_invented_ones():
    """Billing configuration and trust rules come from resources Clio has: bill themes, evergreen retainers;
    groups, custom field sets, document categories and reminders are exported with a rebuild hint."""
    config = {
        "bill_themes": [{"id": 1, "name": "Default", "default": True}],
        "bank_accounts": [{"id": 602, "type": "Trust", "name": "IOLTA Trust"}],
        "matters": [{"id": 5001, "display_number": "00001-A", "evergreen_retainer": {"minimum_threshold": 1000.0}},
                    {"id": 5002, "display_number": "00002-B", "evergreen_retainer": None}],
        "groups": [{"id": 2, "name": "Litigation Team", "type": "TeamGroup", "users": [{"id": 1001}]}],
        "custom_field_sets": [{"id": 1, "name": "Intake", "parent_type": "Matter", "custom_fields": [{"id": 201}]}],
        "document_categories": [{"id": 3, "name": "Pleadings"}],
        "reminders": [{"id": 9, "duration": 30, "state": "scheduled", "notification_method": {"type": "Email"},
                       "subject": {"id": 40, "type": "CalendarEntry"}}],
    }
    refs = reference_exports(config, generated_at="2026-11-28T09:00:00Z")
    assert {"kind": "bill_theme", "id": 1, "name": "Default", "default": True} in refs["billing_automation.json"]["items"]
    trust = refs["trust_accounting_rules.json"]
    assert trust["evergreen_retainers"] == [{"matter_id": 5001, "display_number": "00001-A", "minimum_threshold": 1000.0}]
    assert reference_exports({})["trust_accounting_rules.json"]["evergreen_retainers"].startswith("not read at discovery (written")
    assert refs["groups.json"]["items"][0]["name"] == "Litigation Team"
    assert refs["custom_field_sets.json"]["items"][0]["custom_fields"] == [{"id": 201}]
    assert refs["document_categories.json"]["items"] == [{"id": 3, "name": "Pleadings"}]
    assert refs["reminders.json"]["items"][0] | {} == {"id": 9, "duration_minutes": 30, "state": "scheduled",
                                                       "next_delivery_at": None, "method": "Email",
                                                       "subject": {"id": 40, "type": "CalendarEntry"}}
    assert item_counts(refs)["reminders.json"] == 1
