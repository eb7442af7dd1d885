"""The mapping specification document and the discover outputs on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clio2sf.discovery import (
    capacity_check,
    estimates,
    mapping_document,
    reference_exports,
    write_discovery_outputs,
)
from clio2sf.mapping.proposer import SourceField, propose
from clio2sf.mapping.schema_plan import build_schema_plan
from clio2sf.mapping.spec import load_spec

pytestmark = pytest.mark.unit

DESCRIBES_DIR = Path(__file__).resolve().parents[2] / "sandbox" / "salesforce" / "describes"
EVIL = "<script>alert(1)</script>"


def _describes() -> dict[str, dict]:
    out = {}
    for name in ("Account", "Contact", "Case", "Opportunity", "Event", "Task"):
        for tag in ("cumulusci", "amaxa"):
            path = DESCRIBES_DIR / f"{name}.{tag}.json"
            if path.is_file():
                out[name] = json.loads(path.read_text(encoding="utf-8"))
                break
    return out


def _cf(cid, name, parent, ftype, options=(), deleted=False):
    return {"id": cid, "etag": '"x"', "name": name, "parent_type": parent, "field_type": ftype, "displayed": True,
            "required": False, "deleted": deleted, "display_order": cid,
            "picklist_options": [{"id": cid * 10 + i, "option": o, "deleted_at": None} for i, o in enumerate(options)],
            "created_at": "2024-01-01T10:00:00Z", "updated_at": "2024-01-01T10:00:00Z"}


CLIO_SCHEMA = {
    "firm_name": "Harlow & Vance LLP",
    "counts": {"contacts": 401, "matters": 120, "relationships": 300, "activities": 2500, "bills": 90,
               "bank_transactions": 150, "documents": 40, "calendar_entries": 10, "tasks": 50,
               "users": 3, "practice_areas": 3, "custom_fields": 4},
    "custom_fields": [
        _cf(1, "Mobile", "Contact", "text_line"),
        _cf(2, EVIL, "Contact", "text_line"),
        _cf(3, "Referral Channel", "Matter", "picklist", ("Web", "Friend")),
        _cf(4, "Old field", "Matter", "text_line", deleted=True),
    ],
    "practice_areas": [
        {"id": 11, "name": "Litigation", "code": "LIT", "category": None},
        {"id": 12, "name": "Corporate", "code": "CORP", "category": None},
        {"id": 13, "name": "Wills & Estates", "code": "WE", "category": None},
    ],
    "matter_stages": [{"id": 21, "name": "Intake", "order": 1, "practice_area_id": 11}],
    "users": [
        {"id": 1001, "name": "Ann Lee", "enabled": True, "subscription_type": "Attorney", "roles": ["admin", "billing"]},
        {"id": 1002, "name": "Bo Chan", "enabled": True, "subscription_type": "Attorney", "roles": ["billing"]},
        {"id": 1003, "name": "Cy Doe", "enabled": False, "subscription_type": "NonAttorney", "roles": []},
    ],
    "matter_counts_by_practice_area": {"Litigation": 70, "Corporate": 45, "Wills & Estates": 5},
    "observed_values": {"task_status": ["pending", "waiting_on_client"]},
}


def _inputs(firm: str | None):
    spec = load_spec(firm)
    describes = _describes()
    cfs = [cf for cf in CLIO_SCHEMA["custom_fields"] if not cf["deleted"]]
    proposals = {
        "Contact": propose([SourceField(cf["name"], cf["field_type"], "Contact") for cf in cfs if cf["parent_type"] == "Contact"],
                           describes["Contact"]),
        spec.options["matter_object"]: propose(
            [SourceField(cf["name"], cf["field_type"], "Matter", options=tuple(o["option"] for o in cf["picklist_options"]))
             for cf in cfs if cf["parent_type"] == "Matter"], describes[spec.options["matter_object"]]),
    }
    plan = build_schema_plan(spec, describes, clio_custom_fields=CLIO_SCHEMA["custom_fields"],
                             practice_areas=CLIO_SCHEMA["practice_areas"])
    split = None
    if spec.matter_objects == ("Case", "Opportunity"):
        split = {"Case": 70, "Opportunity": 50}
    est = estimates(CLIO_SCHEMA["counts"], offpeak_limit=200, matter_split=split, matter_object=spec.options["matter_object"])
    return spec, describes, proposals, plan, est


@pytest.fixture(scope="module")
def default_doc():
    spec, describes, proposals, plan, est = _inputs(None)
    md, html = mapping_document(spec, CLIO_SCHEMA, describes, proposals, plan, est,
                                reference_counts={"workflows.json": 3}, generated_at="2026-11-28T09:00:00Z")
    return spec, proposals, plan, est, md, html


def test_header_and_matter_decision(default_doc):
    spec, _, _, _, md, html = default_doc
    for text in (spec.content_hash, "2026-11-28T09:00:00Z", "awaiting approval"):
        assert text in md and text in html
    assert "Harlow & Vance LLP" in md and "Harlow &amp; Vance LLP" in html
    assert "120 Clio matters. By default matters become Case records" in md
    assert "| Case | 120 |" in md
    assert "| Wills & Estates | Case | default | 5 |" in md


def test_object_table_counts_and_methods(default_doc):
    _, _, _, _, md, _ = default_doc
    assert re.search(r"\| Client \| contacts \| 401 \| Contact, Account \| 402 \| composite \|", md)
    assert re.search(r"\| Time Entry \| activities \| 2,500 \| Time_Entry__c, Task \| 2,500 \| bulk \|", md)
    objects = md.split("## Objects")[1].split("## Field mappings")[0]
    assert "Opportunity" not in objects  # Case-only firm
    assert "| Matter Type | practice_areas | 3 | Case Type |" in objects
    assert "### matter_status_opportunity" not in md and "### practice_area_record_type" not in md


def test_field_mappings_and_value_maps(default_doc):
    _, _, _, _, md, _ = default_doc
    assert "| Status | status |  | matter_status_case | yes |" in md
    assert "| LastName | first non-empty of last_name, name | max 80 chars (full value kept in Clio_Full_Name__c); required, else rejected |  | yes |" in md
    assert "| Clio_Matter_Number__c | display_number | max 80 chars |  | to create |" in md
    assert "| Case__r.Clio_Id__c | matters\\[0\\].id (matter link) | lookup by Clio_Id__c to Case |  | to create |" in md
    # value maps: mapped values, the default, and a seen value not in the map flagged
    assert "| Open | Working |  |" in md
    assert "| waiting_on_client |  | NOT IN MAP: becomes 'Not Started' with a repair note |" in md
    assert "| Corporate |  | NOT IN MAP: the Clio value is copied as is |" in md  # practice_area_case_type keep
    assert md.count("| pending | Not Started |  |") == 1  # observed but mapped: not flagged


def test_custom_fields_proposals_users_estimates(default_doc):
    spec, proposals, plan, est, md, html = default_doc
    assert "| Contact | Clio_Id__c | Clio Id | Text | 80 | yes | yes | to create |" in md
    assert "| Case | Clio_Matter_Type__c | Clio Matter Type | Picklist | 3 values |" in md
    flat = [p for items in proposals.values() for p in items]
    assert len(flat) == 3
    for p in flat:
        assert f"{p.confidence:.0%}" in md
    low = [p for p in flat if p.confidence < 0.6]
    assert md.count("| needs a decision |") == len(low)
    mobile = next(p for p in flat if p.source.name == "Mobile")
    assert mobile.target and f"| Contact: Mobile | text_line | Contact | {mobile.target} | {mobile.confidence:.0%} |" in md
    assert "1 deleted Clio custom field(s) are not migrated: Matter: Old field" in md
    assert "3 Clio users (2 enabled)" in md
    assert "| subscription: Attorney | 2 |" in md and "| role: billing | 2 |" in md
    assert f"| Clio requests (total) | {est['clio']['total_requests']:,} |" in md
    assert f"Extraction off-peak (200/min) | {est['clio']['offpeak']['human']} |" in md
    assert "19:00-04:00 Pacific" in md
    assert "[workflows.json: task template lists and their task templates; rebuild as Flow / Task templates (3 item(s))]" in md and "(reference/workflows.json)" in md
    assert 'href="reference/trust_accounting_rules.json"' in html


def test_everything_is_escaped(default_doc):
    _, _, _, _, md, html = default_doc
    assert EVIL not in html and "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL not in md and "&lt;script&gt;" in md
    assert html.startswith("<!DOCTYPE html>") and "<link" not in html and "src=" not in html


def test_mixed_mapping_by_practice_area():
    spec, describes, proposals, plan, est = _inputs("example_opportunities")
    md, _ = mapping_document(spec, CLIO_SCHEMA, describes, proposals, plan, est)
    assert "By default matters become Opportunity records; practice areas are carried as Record Types" in md
    assert "| Litigation | Case | configured | 70 |" in md
    assert "| Corporate | Opportunity | default | 45 |" in md
    assert "| Case | 70 |" in md and "| Opportunity | 50 |" in md
    assert "| Opportunity | Corporate | Corporate | to create |" in md  # record type
    assert "| Wills & Estates |  | NOT IN MAP: field left empty with a repair note |" in md
    assert "| Matter Type | practice_areas | 3 | Case Record Type / Opportunity Record Type |" in md
    assert "### matter_status_opportunity" in md and "### practice_area_case_type" not in md


def test_write_discovery_outputs(tmp_path):
    spec, describes, proposals, plan, est = _inputs(None)
    config = {**CLIO_SCHEMA, "webhooks": [{"id": 1, "url": "https://h.example.com", "model": "matter",
                                           "events": ["updated"], "status": "enabled", "shared_secret": "s3cr3t"}]}
    limits = {"DataStorageMB": {"Max": 20, "Remaining": 5}, "FileStorageMB": {"Max": 1e6, "Remaining": 1e6},
              "DailyApiRequests": {"Max": 1e6, "Remaining": 1e6}, "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
              "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000}}
    findings = capacity_check(est, limits)
    root = tmp_path / "harlow_vance" / "m1"
    result = write_discovery_outputs(root, spec=spec, clio_schema=CLIO_SCHEMA, describes=describes, proposals=proposals,
                                     schema_plan=plan, estimate=est, clio_config=config, findings=findings,
                                     generated_at="2026-11-28T09:00:00Z")
    expected = {"mapping_spec.md", "mapping_spec.html", "schema_plan.md", "schema_plan.csv", "schema_plan.json",
                "estimates.json", "field_accounting.json", *(f"reference/{n}" for n in reference_exports({}))}
    assert set(result["files"]) == expected
    # the field accounting table: in the document and as JSON, every catalog field of a data object
    md = (root / "discover" / "mapping_spec.md").read_text()
    assert "## Field accounting" in md and "| tasks | Task | assignee |" in md
    acct = json.loads((root / "discover" / "field_accounting.json").read_text())
    assert acct["spec_hash"] == spec.content_hash
    rows = {(r["object"], r["route"], r["field"]): r for r in acct["fields"]}
    assert rows[("contacts", "Contact", "primary_email_address")]["destination"] == "Contact.Email"
    assert rows[("bills", "Clio_Billing__c", "etag")]["status"] == "not_migrated"
    assert "Field accounting" in (root / "discover" / "mapping_spec.html").read_text()
    for rel in result["files"].values():
        assert (root / rel).is_file() and (root / rel).stat().st_size > 0
    assert result["mapping_hash"] == spec.content_hash
    counts = result["counts"]
    assert counts["fields_to_create"] == sum(1 for f in plan.fields if not f.exists) > 0
    assert counts["clio_requests"] == est["clio"]["total_requests"]
    assert counts["capacity_errors"] == 1
    assert counts["reference_items"]["webhooks.json"] == 1
    saved = json.loads((root / "discover" / "estimates.json").read_text())
    assert "the org has 5 MB remaining" in saved["capacity"][0]["message"]
    assert "s3cr3t" not in (root / "discover" / "reference" / "webhooks.json").read_text()
    sp = json.loads((root / "discover" / "schema_plan.json").read_text())
    assert sp["spec_hash"] == spec.content_hash and sp["tooling_payloads"][0]["sobject"] == "CustomObject"
    assert len(json.dumps(result)) < 4000  # small enough for XCom


def test_minimal_inputs_and_bad_records():
    spec = load_spec(None)
    plan = build_schema_plan(spec, {})
    md, html = mapping_document(spec, {"counts": {}}, {}, [], plan, estimates({}))
    assert "0 Clio matters" in md and "0 Clio users (0 enabled)" in md
    assert "| Status | status |  | matter_status_case | to create |" not in md  # no describe: unknown, not "to create"
    assert "| Status | status |  | matter_status_case | ? |" in md
    assert 'class="warn"' in html  # fields to create are highlighted
    with pytest.raises(ValueError, match=r"clio_schema\['users'\]"):
        mapping_document(spec, {"counts": {}, "users": [1]}, {}, [], plan, estimates({}))


def test_mapping_document_lists_the_spec_problems_discover_found(tmp_path):
    from clio2sf.mapping.validation import Problem, validate_spec_against_describes

    spec, describes, proposals, plan, est = _inputs(None)
    problems = validate_spec_against_describes(spec, describes)
    assert problems  # the describes lack objects the spec maps: the check can fail
    problems.append(Problem("Contact", EVIL, "bad_type", f"{EVIL} | [x](javascript:alert(1))", "objects.Contact"))
    root = tmp_path / "harlow_vance" / "m1"
    write_discovery_outputs(root, spec=spec, clio_schema=CLIO_SCHEMA, describes=describes, proposals=proposals,
                            schema_plan=plan, estimate=est, spec_problems=problems, generated_at="2026-11-28T09:00:00Z")
    md = (root / "discover" / "mapping_spec.md").read_text()
    html = (root / "discover" / "mapping_spec.html").read_text()
    assert f"## Spec problems found against the org\n\n{len(problems)} problem(s) from checking" in md
    assert md.index("## Spec problems found against the org") < md.index("## Objects")  # before anything else
    assert html.index("<h2>Spec problems found against the org</h2>") < html.index("<h2>Objects</h2>")
    first = problems[0]
    assert first.message in html.replace("&#x27;", "'") and f"| {first.rule} |" in md
    assert EVIL not in html and "&lt;script&gt;" in html and "[x](javascript:" not in md and "\\[x\\]" in md
    write_discovery_outputs(root, spec=spec, clio_schema=CLIO_SCHEMA, describes=describes, proposals=proposals,
                            schema_plan=plan, estimate=est, generated_at="2026-11-28T09:00:00Z")
    assert "None: every mapped field exists" in (root / "discover" / "mapping_spec.md").read_text()
