"""Object metadata: recorded real describes, hand-built describes, and Tooling-created customs.

Recorded describes (``describes/*.json``) are the source for the objects they cover; their
org-specific custom fields are dropped so the org starts without any custom field. Objects
without a recording are built here with the same keys as the recorded ones.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sandbox.salesforce.ids import MASTER_RECORD_TYPE_ID, PREFIXES

DESCRIBES = Path(__file__).parent / "describes"
RECORDED = {
    "Account": "Account.cumulusci.json",
    "Contact": "Contact.cumulusci.json",
    "Case": "Case.cumulusci.json",
    "Opportunity": "Opportunity.cumulusci.json",
    "Event": "Event.cumulusci.json",
    "Task": "Task.amaxa.json",
}
#: Objects real Salesforce refuses custom fields on (besides the non-customizable system ones).
NO_CUSTOM_FIELDS = {
    "CaseContactRole", "EventRelation", "ContentDocumentLink", "AccountContactRelation",
    "CaseTeamMember", "CaseTeamRole", "OpportunityTeamMember", "ContentDocument", "ContentNote",
    "RecordType", "Organization",
}
#: Audit and owner lookups are not put in the key index (nothing looks records up by them).
UNINDEXED_REFS = {"CreatedById", "LastModifiedById", "OwnerId", "MasterRecordId"}
SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "string": "xsd:string", "textarea": "xsd:string",
    "picklist": "xsd:string", "multipicklist": "xsd:string", "combobox": "xsd:string",
    "email": "xsd:string", "phone": "xsd:string", "url": "xsd:string", "boolean": "xsd:boolean",
    "int": "xsd:int", "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double",
    "date": "xsd:date", "datetime": "xsd:dateTime", "base64": "xsd:base64Binary",
    "address": "urn:address",
}
TOOLING_TYPES = {
    "Text": "string", "TextArea": "textarea", "LongTextArea": "textarea", "Html": "textarea",
    "Number": "double", "Currency": "currency", "Percent": "percent", "Date": "date",
    "DateTime": "datetime", "Checkbox": "boolean", "Email": "email", "Url": "url", "Phone": "phone",
    "Picklist": "picklist", "MultiselectPicklist": "multipicklist", "Lookup": "reference",
    "MasterDetail": "reference",
}


def _load(name: str) -> dict:
    return json.loads((DESCRIBES / name).read_text())


_TEMPLATE_FIELD = {k: v for k, v in _load("Case.cumulusci.json")["fields"][0].items()}
_TEMPLATE_OBJECT = {k: v for k, v in _load("Case.cumulusci.json").items()}


def field(name: str, ftype: str, label: str | None = None, *, length: int | None = None,
          required: bool = False, createable: bool = True, updateable: bool = True,
          defaulted: bool = False, ref: list[str] | None = None, rel: str | None = None,
          picklist: list[str] | None = None, restricted: bool = False, default: str | None = None,
          id_lookup: bool = False, external_id: bool = False, unique: bool = False,
          case_sensitive: bool = False, precision: int = 0, scale: int = 0, digits: int = 0,
          name_field: bool = False, custom: bool = False, cascade: bool = False) -> dict:
    """A describe field dict with every key a real describe has."""
    f = copy.deepcopy(_TEMPLATE_FIELD)
    if length is None:
        length = {"id": 18, "reference": 18, "string": 255, "textarea": 32000, "email": 80,
                  "phone": 40, "url": 255, "picklist": 255, "multipicklist": 4099,
                  "combobox": 255}.get(ftype, 0)
    f.update(
        name=name, label=label or name, type=ftype, soapType=SOAP_TYPES[ftype], length=length,
        byteLength=length * 3 if ftype not in ("id", "reference") else length,
        nillable=not required and ftype not in ("id", "boolean"), createable=createable,
        updateable=updateable, defaultedOnCreate=defaulted or ftype == "boolean",
        referenceTo=list(ref or []), relationshipName=rel, idLookup=id_lookup or ftype == "id",
        externalId=external_id, unique=unique, caseSensitive=case_sensitive, precision=precision,
        scale=scale, digits=digits, nameField=name_field, custom=custom,
        restrictedPicklist=restricted, polymorphicForeignKey=bool(ref and len(ref) > 1),
        namePointing=bool(ref and len(ref) > 1), cascadeDelete=cascade,
        defaultValue=(default == "true") if ftype == "boolean" and default is not None else default,
        picklistValues=[
            {"active": True, "defaultValue": v == default, "label": v, "validFor": None, "value": v}
            for v in (picklist or [])
        ],
        filterable=ftype not in ("textarea",) or length <= 255, sortable=ftype != "textarea",
        groupable=ftype not in ("textarea", "double", "currency", "percent", "datetime"),
        aggregatable=True, calculated=False, autoNumber=False, extraTypeInfo=None,
        compoundFieldName=None, controllerName=None, dependentPicklist=False, inlineHelpText=None,
        permissionable=not required and custom,
    )
    return f


def _system(owner: bool = True, audit: bool = True) -> list[dict]:
    out = [field("Id", "id", "Record ID", createable=False, updateable=False, defaulted=True),
           field("IsDeleted", "boolean", "Deleted", createable=False, updateable=False)]
    if owner:
        out.append(field("OwnerId", "reference", "Owner ID", ref=["User"], rel="Owner", defaulted=True,
                         required=True))
    if audit:
        out += [
            field("CreatedDate", "datetime", "Created Date", createable=False, updateable=False,
                  defaulted=True, required=True),
            field("CreatedById", "reference", "Created By ID", ref=["User"], rel="CreatedBy",
                  createable=False, updateable=False, defaulted=True, required=True),
            field("LastModifiedDate", "datetime", "Last Modified Date", createable=False,
                  updateable=False, defaulted=True, required=True),
            field("LastModifiedById", "reference", "Last Modified By ID", ref=["User"],
                  rel="LastModifiedBy", createable=False, updateable=False, defaulted=True,
                  required=True),
        ]
    out.append(field("SystemModstamp", "datetime", "System Modstamp", createable=False, updateable=False,
                     defaulted=True, required=True))
    return out


def _ro(f: dict) -> dict:
    f["createable"] = f["updateable"] = False
    return f


def _create_only(f: dict) -> dict:
    f["updateable"] = False
    return f


def _hand_built() -> dict[str, tuple[dict, list[dict]]]:
    """Objects without a recorded describe: (object overrides, fields)."""
    co = _create_only
    whats = ["Account", "Opportunity", "Case"]
    objs: dict[str, tuple[dict, list[dict]]] = {}
    objs["User"] = ({"createable": True, "deletable": False, "label": "User", "labelPlural": "Users"}, _system(False) + [
        field("Username", "string", "Username", length=80, required=True, id_lookup=True, unique=True),
        field("LastName", "string", "Last Name", length=80, required=True),
        field("FirstName", "string", "First Name", length=40),
        _ro(field("Name", "string", "Full Name", length=121, name_field=True, id_lookup=True)),
        field("Email", "email", "Email", length=128, required=True, id_lookup=True),
        field("Alias", "string", "Alias", length=8, required=True),
        field("IsActive", "boolean", "Active", default="true"),
        field("Title", "string", "Title", length=80),
        field("TimeZoneSidKey", "picklist", "Time Zone", length=40, picklist=["America/New_York", "America/Los_Angeles", "GMT"], restricted=True, required=True),
        field("FederationIdentifier", "string", "SAML Federation ID", length=512, id_lookup=True),
    ])
    objs["RecordType"] = ({"createable": False, "updateable": False, "deletable": False, "label": "Record Type", "labelPlural": "Record Types"}, _system(False) + [
        _ro(field("Name", "string", "Name", length=80, name_field=True)),
        _ro(field("DeveloperName", "string", "Record Type Name", length=80)),
        _ro(field("NamespacePrefix", "string", "Namespace Prefix", length=15)),
        _ro(field("Description", "string", "Description", length=255)),
        _ro(field("SobjectType", "picklist", "SObject Type Name", length=40)),
        _ro(field("IsActive", "boolean", "Active")),
        _ro(field("BusinessProcessId", "reference", "Business Process ID", ref=["BusinessProcess"])),
    ])
    objs["EventRelation"] = ({"label": "Event Relation", "labelPlural": "Event Relations"}, _system(False) + [
        co(field("RelationId", "reference", "Relation ID", ref=["Contact", "Lead", "User", "Calendar"], rel="Relation", required=True)),
        co(field("EventId", "reference", "Event ID", ref=["Event"], rel="Event", required=True)),
        field("IsParent", "boolean", "Parent"), field("IsInvitee", "boolean", "Invitee", default="true"),
        _ro(field("IsWhat", "boolean", "Is What")),
        field("Status", "picklist", "Status", length=40, picklist=["New", "Declined", "Accepted", "Uninvited"], restricted=True, default="New", defaulted=True),
        field("RespondedDate", "datetime", "Response Date"),
        field("Response", "string", "Response", length=255),
    ])
    objs["CaseContactRole"] = ({"label": "Case Contact Role", "labelPlural": "Case Contact Roles"}, _system(False) + [
        co(field("CasesId", "reference", "Case ID", ref=["Case"], rel="Cases", required=True, cascade=True)),
        field("ContactId", "reference", "Contact ID", ref=["Contact"], rel="Contact", required=True),
        field("Role", "picklist", "Role", length=40, picklist=["Technical Contact", "Business Contact", "Decision Maker", "Other"]),
    ])
    objs["ContentDocument"] = ({"createable": False, "label": "Content Document", "labelPlural": "Content Documents"}, _system() + [
        field("Title", "string", "Title", length=255, required=True),
        _ro(field("PublishStatus", "picklist", "Publish Status", length=40, picklist=["U", "P", "R"])),
        _ro(field("LatestPublishedVersionId", "reference", "Latest Published Version ID", ref=["ContentVersion"], rel="LatestPublishedVersion")),
        _ro(field("ParentId", "reference", "Parent ID", ref=["ContentWorkspace"])),
        _ro(field("ContentSize", "int", "Size")),
        _ro(field("FileType", "string", "File Type", length=20)),
        _ro(field("FileExtension", "string", "File Extension", length=40)),
        field("Description", "textarea", "Description", length=1000),
        _ro(field("IsArchived", "boolean", "Is Archived")),
        _ro(field("ArchivedDate", "date", "Archived Date")),
        _ro(field("ContentModifiedDate", "datetime", "Content Modified Date")),
        field("SharingOption", "picklist", "File Sharing Option", length=40, picklist=["A", "R"], restricted=True, default="A", defaulted=True),
        field("SharingPrivacy", "picklist", "File Privacy on Records", length=40, picklist=["N", "P"], restricted=True, default="N", defaulted=True),
    ])
    objs["ContentVersion"] = ({"deletable": False, "label": "Content Version", "labelPlural": "Content Versions"}, _system() + [
        co(field("ContentDocumentId", "reference", "ContentDocument ID", ref=["ContentDocument"], rel="ContentDocument", defaulted=True)),
        _ro(field("IsLatest", "boolean", "Is Latest")),
        _ro(field("ContentUrl", "url", "Content URL", length=1300)),
        _ro(field("VersionNumber", "string", "Version Number", length=20)),
        field("Title", "string", "Title", length=255, required=True),
        field("Description", "textarea", "Description", length=1000),
        field("ReasonForChange", "string", "Reason For Change", length=1000),
        co(field("PathOnClient", "string", "Path On Client", length=500, required=True)),
        co(field("VersionData", "base64", "Version Data")),
        _ro(field("ContentSize", "int", "Size")),
        _ro(field("FileType", "string", "File Type", length=20)),
        _ro(field("FileExtension", "string", "File Extension", length=40)),
        _ro(field("Checksum", "string", "Checksum", length=50)),
        co(field("ContentLocation", "picklist", "Content Location", length=40, picklist=["S", "E", "L"], restricted=True, default="S", defaulted=True)),
        co(field("FirstPublishLocationId", "reference", "First Publish Location ID", ref=whats + ["Contact", "User", "ContentWorkspace"], rel="FirstPublishLocation")),
        co(field("Origin", "picklist", "Content Origin", length=40, picklist=["C", "H"], restricted=True, default="C", defaulted=True)),
        field("SharingPrivacy", "picklist", "File Privacy on Records", length=40, picklist=["N", "P"], restricted=True, default="N", defaulted=True),
        field("SharingOption", "picklist", "File Sharing Option", length=40, picklist=["A", "R"], restricted=True, default="A", defaulted=True),
        field("IsMajorVersion", "boolean", "Major Version", default="true"),
        field("ContentModifiedDate", "datetime", "Content Modified Date", defaulted=True),
    ])
    objs["ContentDocumentLink"] = ({"label": "Content Document Link", "labelPlural": "Content Document Link"}, [
        field("Id", "id", "ContentDocumentLink ID", createable=False, updateable=False, defaulted=True),
        co(field("LinkedEntityId", "reference", "Linked Entity ID", ref=whats + ["Contact", "User", "ContentWorkspace", "Event", "Task"], rel="LinkedEntity", required=True)),
        co(field("ContentDocumentId", "reference", "ContentDocument ID", ref=["ContentDocument"], rel="ContentDocument", required=True)),
        field("IsDeleted", "boolean", "Deleted", createable=False, updateable=False),
        field("SystemModstamp", "datetime", "System Modstamp", createable=False, updateable=False, defaulted=True, required=True),
        field("ShareType", "picklist", "Share Type", length=40, picklist=["V", "C", "I"], restricted=True, defaulted=True, default="V"),
        field("Visibility", "picklist", "Visibility", length=40, picklist=["AllUsers", "InternalUsers", "SharedUsers"], restricted=True, defaulted=True, default="AllUsers"),
    ])
    objs["ContentNote"] = ({"label": "Note", "labelPlural": "Notes"}, _system() + [
        field("Title", "string", "Title", length=255, required=True),
        field("Content", "base64", "Content"),
        _ro(field("TextPreview", "string", "Text Preview", length=300)),
        _ro(field("FileType", "string", "File Type", length=20)),
        _ro(field("FileExtension", "string", "File Extension", length=40)),
        _ro(field("ContentSize", "int", "Size")),
        _ro(field("LatestPublishedVersionId", "reference", "Latest Published Version ID", ref=["ContentVersion"], rel="LatestPublishedVersion")),
        field("SharingPrivacy", "picklist", "File Privacy on Records", length=40, picklist=["N", "P"], restricted=True, default="N", defaulted=True),
    ])
    objs["AccountContactRelation"] = ({"label": "Account Contact Relationship", "labelPlural": "Account Contact Relationships"}, _system(False) + [
        co(field("AccountId", "reference", "Account ID", ref=["Account"], rel="Account", required=True, cascade=True)),
        co(field("ContactId", "reference", "Contact ID", ref=["Contact"], rel="Contact", required=True, cascade=True)),
        field("Roles", "multipicklist", "Roles", picklist=["Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator", "Executive Sponsor", "Influencer", "Technical Buyer", "Other"], restricted=True),
        _ro(field("IsDirect", "boolean", "Direct")),
        field("IsActive", "boolean", "Active", default="true"),
        field("StartDate", "date", "Start Date"), field("EndDate", "date", "End Date"),
    ])
    objs["CaseTeamRole"] = ({"label": "Case Team Member Role", "labelPlural": "Case Team Member Roles"}, _system(False) + [
        field("Name", "string", "Member Role Name", length=80, required=True, name_field=True),
        field("AccessLevel", "picklist", "Case Access", length=40, picklist=["None", "Read", "Edit"], restricted=True, required=True),
        field("PreferencesVisibleInCSP", "boolean", "Visible in Customer Portal"),
    ])
    objs["CaseTeamMember"] = ({"label": "Case Team Member", "labelPlural": "Case Team Members"}, _system(False) + [
        co(field("ParentId", "reference", "Case ID", ref=["Case"], rel="Parent", required=True, cascade=True)),
        co(field("MemberId", "reference", "Member ID", ref=["User", "Contact"], rel="Member", required=True)),
        field("TeamRoleId", "reference", "Team Role ID", ref=["CaseTeamRole"], rel="TeamRole", required=True),
        _ro(field("TeamTemplateMemberId", "reference", "Team Template Member ID", ref=["CaseTeamTemplateMember"])),
    ])
    objs["OpportunityTeamMember"] = ({"label": "Opportunity Team Member", "labelPlural": "Opportunity Team Members"}, _system(False) + [
        co(field("OpportunityId", "reference", "Opportunity ID", ref=["Opportunity"], rel="Opportunity", required=True, cascade=True)),
        co(field("UserId", "reference", "User ID", ref=["User"], rel="User", required=True)),
        _ro(field("Name", "string", "Name", length=121, name_field=True)),
        field("TeamMemberRole", "picklist", "Team Role", length=40, picklist=["Account Manager", "Channel Manager", "Executive Sponsor", "Lead Qualifier", "Pre-Sales Consultant", "Sales Manager", "Sales Rep", "Other"]),
        field("OpportunityAccessLevel", "picklist", "Opportunity Access", length=40, picklist=["Read", "Edit", "All"], restricted=True, defaulted=True, default="Read"),
        _ro(field("Title", "string", "Title", length=80)),
    ])
    org = _load("Organization.cumulusci.json")
    org_fields = [field("Id", "id", "Organization ID", createable=False, updateable=False)]
    for k, v in org.items():
        if k in ("attributes", "Id", "Address"):
            continue
        t = ("boolean" if isinstance(v, bool) else "int" if isinstance(v, int) else
             "double" if isinstance(v, float) else
             "datetime" if k.endswith("Date") or k == "SystemModstamp" else
             "reference" if k.endswith("ById") else "string")
        org_fields.append(_ro(field(k, t, k, ref=["User"] if t == "reference" else None)))
    objs["Organization"] = ({"createable": False, "updateable": False, "deletable": False, "label": "Organization", "labelPlural": "Organizations"}, org_fields)
    return objs


class SObject:
    """One object's metadata with case-insensitive field and relationship access."""

    def __init__(self, name: str, top: dict, fields: list[dict]):
        self.name = name
        self.top = top
        self.fields: dict[str, dict] = {}
        self._ci: dict[str, str] = {}
        self._rel: dict[str, str] = {}
        self._plan: dict | None = None
        for f in fields:
            self.add_field(f)

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @property
    def key_prefix(self) -> str:
        return self.top["keyPrefix"]

    def add_field(self, f: dict) -> None:
        self._plan = None
        self.fields[f["name"]] = f
        self._ci[f["name"].lower()] = f["name"]
        if f.get("relationshipName"):
            self._rel[f["relationshipName"].lower()] = f["name"]

    def field(self, name: str) -> dict | None:
        real = self._ci.get(name.lower())
        return self.fields[real] if real else None

    def rel_field(self, rel_name: str) -> dict | None:
        """The reference field whose relationshipName is ``rel_name``."""
        real = self._rel.get(rel_name.lower())
        return self.fields[real] if real else None

    @property
    def plan(self) -> dict:
        """Precomputed per-object write facts: defaults, required and indexed fields."""
        if self._plan is None:
            defaults: dict[str, Any] = {}
            for f in self.fields.values():
                if f["type"] == "boolean":
                    defaults[f["name"]] = bool(f["defaultValue"])
                elif f["type"] in ("picklist", "multipicklist") and f["defaultedOnCreate"]:
                    v = next((p["value"] for p in f["picklistValues"] if p["defaultValue"]), None)
                    if v is not None:
                        defaults[f["name"]] = v
            required = [f["name"] for f in self.fields.values()
                        if not f["nillable"] and f["createable"] and not f["defaultedOnCreate"]
                        and f["type"] not in ("boolean", "base64")]
            keys = {f["name"] for f in self.fields.values()
                    if (f["type"] == "reference" and f["name"] not in UNINDEXED_REFS)
                    or (f["type"] not in ("id", "reference") and (f["externalId"] or f["unique"] or f["idLookup"]))}
            refs = {f["name"] for f in self.fields.values() if f["type"] == "reference"}
            self._plan = {"defaults": defaults, "required": required, "keys": keys, "refs": refs}
        return self._plan

    @property
    def allows_custom_fields(self) -> bool:
        return self.custom or self.name not in NO_CUSTOM_FIELDS


class Schema:
    """All objects of the org."""

    def __init__(self) -> None:
        self.objects: dict[str, SObject] = {}
        self._ci: dict[str, str] = {}
        global_desc = _load("Global.cumulusci.json")
        self._global_template = global_desc["sobjects"][0]
        self.global_top = {k: v for k, v in global_desc.items() if k != "sobjects"}
        for name, fname in RECORDED.items():
            d = _load(fname)
            fields = [f for f in d.pop("fields") if not f["name"].endswith("__c")]
            d["childRelationships"] = [c for c in d["childRelationships"]
                                       if not c["childSObject"].endswith("__c")]
            self._add(SObject(name, d, fields))
        task = self.objects["Task"]
        if not task.field("Type"):
            # The recorded org lacks it; every real org has the standard Task.Type picklist.
            task.add_field(field("Type", "picklist", "Type", picklist=["Call", "Email", "Meeting", "Other"]))
        if task.field("TaskSubtype"):
            ts = task.field("TaskSubtype")
            ts["picklistValues"] = [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                for v in ("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")]
        for name, (over, fields) in _hand_built().items():
            top = copy.deepcopy(_TEMPLATE_OBJECT)
            top.pop("fields")
            top.update(name=name, keyPrefix=PREFIXES[name], custom=False, childRelationships=[],
                       recordTypeInfos=[self._master_rti(name)], urls=self._urls(name))
            top.update(createable=True, updateable=True, deletable=True, queryable=True)
            top.update(over)
            self._add(SObject(name, top, fields))
        self._next_custom = 0

    @staticmethod
    def _urls(name: str) -> dict:
        base = f"/services/data/v59.0/sobjects/{name}"
        return {"compactLayouts": f"{base}/describe/compactLayouts", "rowTemplate": f"{base}/{{ID}}",
                "describe": f"{base}/describe", "layouts": f"{base}/describe/layouts", "sobject": base}

    @staticmethod
    def _master_rti(name: str) -> dict:
        return {"active": True, "available": True, "defaultRecordTypeMapping": True,
                "developerName": "Master", "master": True, "name": "Master",
                "recordTypeId": MASTER_RECORD_TYPE_ID,
                "urls": {"layout": f"/services/data/v59.0/sobjects/{name}/describe/layouts/{MASTER_RECORD_TYPE_ID}"}}

    def _add(self, obj: SObject) -> None:
        self._prefix_cache = {}
        self.objects[obj.name] = obj
        self._ci[obj.name.lower()] = obj.name

    def get(self, name: str) -> SObject | None:
        real = self._ci.get(name.lower())
        return self.objects[real] if real else None

    def by_prefix(self, prefix: str) -> SObject | None:
        if prefix not in self._prefix_cache:
            self._prefix_cache[prefix] = next(
                (o for o in self.objects.values() if o.key_prefix == prefix and o.name != "ContentNote"), None)
        return self._prefix_cache[prefix]

    # -- customs ---------------------------------------------------------------------------
    def add_custom_object(self, full_name: str, md: dict, prefix: str) -> SObject:
        name_field = md.get("nameField") or {"type": "Text", "label": "Name"}
        auto = name_field.get("type") == "AutoNumber"
        fields = _system() + [
            field("Name", "string", name_field.get("label", "Name"), length=80, name_field=True,
                  required=not auto, createable=not auto, updateable=not auto, defaulted=auto),
        ]
        top = copy.deepcopy(_TEMPLATE_OBJECT)
        top.pop("fields")
        top.update(name=full_name, label=md.get("label", full_name), labelPlural=md.get("pluralLabel", full_name),
                   keyPrefix=prefix, custom=True, childRelationships=[],
                   recordTypeInfos=[self._master_rti(full_name)], urls=self._urls(full_name),
                   createable=True, updateable=True, deletable=True, queryable=True)
        obj = SObject(full_name, top, fields)
        self._add(obj)
        return obj

    def add_custom_field(self, obj: SObject, api_name: str, md: dict) -> dict:
        ftype = TOOLING_TYPES[md["type"]]
        kw: dict[str, Any] = {}
        length = None
        if md["type"] == "Text":
            length = int(md.get("length", 255))
        elif md["type"] in ("LongTextArea", "Html"):
            length = int(md.get("length", 32768))
        elif md["type"] == "TextArea":
            length = 255
        elif md["type"] in ("Number", "Currency", "Percent"):
            kw.update(precision=int(md.get("precision", 18)), scale=int(md.get("scale", 0)))
        elif md["type"] in ("Picklist", "MultiselectPicklist"):
            vs = md.get("valueSet") or {}
            values = (vs.get("valueSetDefinition") or {}).get("value") or []
            kw.update(picklist=[v["fullName"] for v in values], restricted=bool(vs.get("restricted")))
            defaults = [v["fullName"] for v in values if v.get("default")]
            if defaults:
                kw.update(default=defaults[0], defaulted=True)
        elif md["type"] in ("Lookup", "MasterDetail"):
            kw.update(ref=[md["referenceTo"]], rel=md.get("relationshipName") or api_name[:-3] + "__r")
            if md["type"] == "MasterDetail":
                kw.update(required=True, cascade=True)
        elif md["type"] == "Checkbox":
            kw.update(default=str(md.get("defaultValue", "false")).lower())
        if md["type"] in ("Lookup", "MasterDetail") and not kw["rel"].endswith("__r"):
            kw["rel"] = kw["rel"] + "__r"
        f = field(api_name, ftype, md.get("label", api_name), length=length, custom=True,
                  external_id=bool(md.get("externalId")), unique=bool(md.get("unique")),
                  id_lookup=bool(md.get("externalId")) or bool(md.get("unique")),
                  case_sensitive=bool(md.get("caseSensitive")),
                  required=kw.pop("required", False) or bool(md.get("required")), **kw)
        if ftype == "double" or ftype in ("currency", "percent"):
            f["length"] = f["byteLength"] = 0
        obj.add_field(f)
        return f

    def ensure_record_type_field(self, obj: SObject) -> None:
        if not obj.field("RecordTypeId"):
            obj.add_field(field("RecordTypeId", "reference", "Record Type ID", ref=["RecordType"],
                                rel="RecordType", defaulted=True))

    # -- describe output -------------------------------------------------------------------
    def describe(self, obj: SObject, *, audit_fields: bool, record_types: list[dict]) -> dict:
        out = dict(obj.top)
        fields = []
        for f in obj.fields.values():
            if audit_fields and f["name"] in ("CreatedDate", "CreatedById", "LastModifiedDate",
                                              "LastModifiedById") and obj.top.get("createable"):
                f = dict(f, createable=True)
            fields.append(f)
        out["fields"] = fields
        rtis = [self._master_rti(obj.name)]
        actives = [rt for rt in record_types if rt.get("SobjectType") == obj.name]
        if actives:
            rtis[0]["defaultRecordTypeMapping"] = False
            for i, rt in enumerate(actives):
                rtis.insert(i, {"active": rt["IsActive"], "available": rt["IsActive"],
                                "defaultRecordTypeMapping": i == 0, "developerName": rt["DeveloperName"],
                                "master": False, "name": rt["Name"], "recordTypeId": rt["Id"],
                                "urls": {"layout": f"/services/data/v59.0/sobjects/{obj.name}/describe/layouts/{rt['Id']}"}})
        out["recordTypeInfos"] = rtis
        children = list(obj.top.get("childRelationships", []))
        for other in self.objects.values():
            for f in other.fields.values():
                if f["custom"] and obj.name in f["referenceTo"]:
                    children.append({"cascadeDelete": f["cascadeDelete"], "childSObject": other.name,
                                     "deprecatedAndHidden": False, "field": f["name"],
                                     "junctionIdListNames": [], "junctionReferenceTo": [],
                                     "relationshipName": f["relationshipName"][:-3] + "s__r",
                                     "restrictedDelete": False})
        out["childRelationships"] = children
        return out

    def describe_global(self) -> dict:
        sobjects = []
        for obj in self.objects.values():
            entry = {k: obj.top.get(k, v) for k, v in self._global_template.items()}
            entry["urls"] = {k: v for k, v in self._urls(obj.name).items() if k in ("sobject", "describe", "rowTemplate")}
            sobjects.append(entry)
        return {**self.global_top, "sobjects": sobjects}
