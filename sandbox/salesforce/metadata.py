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
    "OpportunityContactRole": "OpportunityContactRole.cumulusci.json",
}
#: Objects real Salesforce refuses custom fields on (besides the non-customizable system ones).
NO_CUSTOM_FIELDS = {
    "CaseContactRole", "EventRelation", "ContentDocumentLink", "AccountContactRelation",
    "CaseTeamMember", "CaseTeamRole", "OpportunityTeamMember", "ContentDocument", "ContentNote",
    "RecordType", "Organization", "Profile", "PermissionSet", "FieldPermissions", "ObjectPermissions",
    "PermissionSetAssignment",
}
#: Standard objects whose access ObjectPermissions control (the SobjectType picklist), besides custom ones.
OBJECT_PERMISSIONABLE = ("Account", "Contact", "Case", "Opportunity", "Lead")
#: User permissions (``Permissions*`` fields on Profile and PermissionSet) the sandbox enforces.
USER_PERMISSIONS = (
    "PermissionsApiEnabled", "PermissionsViewSetup", "PermissionsCustomizeApplication", "PermissionsManageUsers",
    "PermissionsAssignPermissionSets", "PermissionsModifyAllData", "PermissionsViewAllData",
    "PermissionsBulkApiHardDelete", "PermissionsCreateAuditFields",
)
#: Setup objects holding the security model.
SECURITY_OBJECTS = ("Profile", "PermissionSet", "FieldPermissions", "ObjectPermissions", "PermissionSetAssignment")
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
#: A recorded custom object's describe: its top-level keys and its Name field.
_CUSTOM_RECORDING = _load("Custom__c.cumulusci.json")


def field(name: str, ftype: str, label: str | None = None, *, length: int | None = None,
          required: bool = False, createable: bool = True, updateable: bool = True,
          defaulted: bool = False, ref: list[str] | None = None, rel: str | None = None,
          picklist: list[str] | None = None, restricted: bool = False, default: str | None = None,
          id_lookup: bool = False, external_id: bool = False, unique: bool = False,
          case_sensitive: bool = False, precision: int = 0, scale: int = 0, digits: int = 0,
          name_field: bool = False, custom: bool = False, cascade: bool = False,
          extra_type: str | None = None, permissionable: bool | None = None, compound: str | None = None) -> dict:
    """A describe field dict with every key a real describe has.

    Optional fields a profile or permission set can hide are ``permissionable`` (custom fields that
    are not required, unless told otherwise).
    """
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
        aggregatable=True, calculated=False, autoNumber=False,
        extraTypeInfo=extra_type if extra_type is not None else ("plaintextarea" if ftype == "textarea" else None),
        compoundFieldName=compound, controllerName=None, dependentPicklist=False, inlineHelpText=None,
        permissionable=(not required and custom) if permissionable is None else permissionable,
    )
    if ftype == "address":
        f.update(createable=False, updateable=False, nillable=True, filterable=False, sortable=False,
                 groupable=False, defaultedOnCreate=False, soapType="urn:address")
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
        field("ProfileId", "reference", "Profile ID", ref=["Profile"], rel="Profile", required=True),
    ])
    perms = [field(p, "boolean", p.removeprefix("Permissions")) for p in USER_PERMISSIONS]
    objs["Profile"] = ({"createable": False, "updateable": False, "deletable": False, "label": "Profile",
                        "labelPlural": "Profiles"}, _system(False) + [
        _ro(field("Name", "string", "Name", length=255, name_field=True)),
        _ro(field("UserType", "picklist", "User Type", length=40, picklist=["Standard"])),
        _ro(field("Description", "string", "Description", length=255)),
    ] + [_ro(dict(p)) for p in perms])
    objs["PermissionSet"] = ({"label": "Permission Set", "labelPlural": "Permission Sets"}, _system(False) + [
        field("Name", "string", "Name", length=80, required=True, unique=True, id_lookup=True),
        field("Label", "string", "Label", length=80, required=True, name_field=True),
        field("Description", "string", "Description", length=255),
        _ro(field("IsOwnedByProfile", "boolean", "Is Owned by Profile")),
        _ro(field("ProfileId", "reference", "Profile ID", ref=["Profile"], rel="Profile")),
        _ro(field("NamespacePrefix", "string", "Namespace Prefix", length=15)),
        field("HasActivationRequired", "boolean", "Session Activation Required"),
    ] + perms)
    objs["FieldPermissions"] = ({"label": "Field Permissions", "labelPlural": "Field Permissions"}, [
        field("Id", "id", "Field Permissions ID", createable=False, updateable=False, defaulted=True),
        co(field("ParentId", "reference", "Parent ID", ref=["PermissionSet"], rel="Parent", required=True,
                 cascade=True)),
        co(field("SobjectType", "picklist", "SObject Type Name", length=40, required=True)),
        # The reference says 40, but real values ("Object__c.Field__c") are longer: not length-checked.
        co(field("Field", "picklist", "Field Name", length=255, required=True)),
        field("PermissionsRead", "boolean", "Read Field"),
        field("PermissionsEdit", "boolean", "Edit Field"),
        field("IsDeleted", "boolean", "Deleted", createable=False, updateable=False),
        field("SystemModstamp", "datetime", "System Modstamp", createable=False, updateable=False, defaulted=True,
              required=True),
    ])
    objs["ObjectPermissions"] = ({"label": "Object Permissions", "labelPlural": "Object Permissions"}, _system(False) + [
        co(field("ParentId", "reference", "Parent ID", ref=["PermissionSet"], rel="Parent", required=True,
                 cascade=True)),
        co(field("SobjectType", "picklist", "SObject Type Name", length=40, required=True)),
        field("PermissionsRead", "boolean", "Read Records"),
        field("PermissionsCreate", "boolean", "Create Records"),
        field("PermissionsEdit", "boolean", "Edit Records"),
        field("PermissionsDelete", "boolean", "Delete Records"),
        field("PermissionsViewAllRecords", "boolean", "Read All Records"),
        field("PermissionsModifyAllRecords", "boolean", "Edit All Records"),
    ])
    objs["PermissionSetAssignment"] = ({"updateable": False, "label": "Permission Set Assignment",
                                        "labelPlural": "Permission Set Assignments"}, [
        field("Id", "id", "Permission Set Assignment ID", createable=False, updateable=False, defaulted=True),
        co(field("AssigneeId", "reference", "Assignee ID", ref=["User"], rel="Assignee", required=True)),
        co(field("PermissionSetId", "reference", "Permission Set ID", ref=["PermissionSet"], rel="PermissionSet",
                 required=True, cascade=True)),
        field("IsDeleted", "boolean", "Deleted", createable=False, updateable=False),
        field("SystemModstamp", "datetime", "System Modstamp", createable=False, updateable=False, defaulted=True,
              required=True),
    ])
    # No recorded Lead describe: the standard fields a real org has, with the recorded objects' keys.
    objs["Lead"] = ({"label": "Lead", "labelPlural": "Leads"}, _system() + [
        _ro(field("MasterRecordId", "reference", "Master Record ID", ref=["Lead"], rel="MasterRecord")),
        field("LastName", "string", "Last Name", length=80, required=True),
        field("FirstName", "string", "First Name", length=40),
        field("Salutation", "picklist", "Salutation", length=40, picklist=["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."]),
        _ro(field("Name", "string", "Full Name", length=121, name_field=True)),
        field("Title", "string", "Title", length=128, permissionable=True),
        field("Company", "string", "Company", length=255, required=True),
        field("Street", "textarea", "Street", length=255, permissionable=True, compound="Address"),
        field("City", "string", "City", length=40, permissionable=True, compound="Address"),
        field("State", "string", "State/Province", length=80, permissionable=True, compound="Address"),
        field("PostalCode", "string", "Zip/Postal Code", length=20, permissionable=True, compound="Address"),
        field("Country", "string", "Country", length=80, permissionable=True, compound="Address"),
        field("Latitude", "double", "Latitude", precision=18, scale=15, permissionable=True, compound="Address"),
        field("Longitude", "double", "Longitude", precision=18, scale=15, permissionable=True, compound="Address"),
        field("GeocodeAccuracy", "picklist", "Geocode Accuracy", length=40, permissionable=True, compound="Address",
              picklist=["Address", "NearAddress", "Block", "Street", "ExtendedZip", "Zip", "Neighborhood", "City",
                        "County", "State", "Unknown"], restricted=True),
        field("Address", "address", "Address", permissionable=True),
        field("Phone", "phone", "Phone", permissionable=True),
        field("MobilePhone", "phone", "Mobile Phone", permissionable=True),
        field("Email", "email", "Email", id_lookup=True, permissionable=True),
        field("Website", "url", "Website", permissionable=True),
        field("Description", "textarea", "Description", permissionable=True),
        field("LeadSource", "picklist", "Lead Source", length=40, permissionable=True,
              picklist=["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]),
        field("Status", "picklist", "Status", length=40, required=True, defaulted=True, default="Open - Not Contacted",
              picklist=["Open - Not Contacted", "Working - Contacted", "Closed - Converted",
                        "Closed - Not Converted"]),
        field("Industry", "picklist", "Industry", length=40, permissionable=True, picklist=["Legal", "Other"]),
        field("Rating", "picklist", "Rating", length=40, permissionable=True, picklist=["Hot", "Warm", "Cold"]),
        field("AnnualRevenue", "currency", "Annual Revenue", precision=18, permissionable=True),
        field("NumberOfEmployees", "int", "Employees", digits=8, permissionable=True),
        _ro(field("IsConverted", "boolean", "Converted")),
        _ro(field("ConvertedDate", "date", "Converted Date")),
        _ro(field("ConvertedAccountId", "reference", "Converted Account ID", ref=["Account"], rel="ConvertedAccount")),
        _ro(field("ConvertedContactId", "reference", "Converted Contact ID", ref=["Contact"], rel="ConvertedContact")),
        _ro(field("ConvertedOpportunityId", "reference", "Converted Opportunity ID", ref=["Opportunity"],
                  rel="ConvertedOpportunity")),
        field("IsUnreadByOwner", "boolean", "Unread By Owner", default="true"),
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
    address_parts = ("Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude", "GeocodeAccuracy")
    for k, v in org.items():
        if k in ("attributes", "Id"):
            continue
        t = ("address" if k == "Address" else "boolean" if isinstance(v, bool) else "int" if isinstance(v, int) else
             "double" if isinstance(v, float) or k in ("Latitude", "Longitude") else
             "textarea" if k == "Street" else
             "datetime" if k.endswith("Date") or k == "SystemModstamp" else
             "reference" if k.endswith("ById") else "string")
        org_fields.append(_ro(field(k, t, k, ref=["User"] if t == "reference" else None,
                                    length=255 if t == "textarea" else None,
                                    compound="Address" if k in address_parts else None)))
    objs["Organization"] = ({"createable": False, "updateable": False, "deletable": False, "label": "Organization", "labelPlural": "Organizations"}, org_fields)
    return objs


def compound_address(obj: SObject, f: dict, rec: dict) -> dict | None:
    """A compound address (``MailingAddress``, ``Organization.Address``) built from its component fields."""
    prefix = f["name"][: -len("Address")] if f["name"].endswith("Address") else ""
    out = {}
    for part in obj.fields.values():
        if part.get("compoundFieldName") == f["name"]:
            key = part["name"][len(prefix):]
            out[key[:1].lower() + key[1:]] = rec.get(part["name"])
    return out if any(v is not None for v in out.values()) else None


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
        # As recorded (Custom__c): Name is nillable and defaulted (the record Id when left out), and an idLookup.
        name = field("Name", "string", name_field.get("label", "Name"), length=80, name_field=True,
                     createable=not auto, updateable=not auto, defaulted=True, id_lookup=True)
        name["autoNumber"] = auto
        fields = _system() + [name]
        top = copy.deepcopy({k: v for k, v in _CUSTOM_RECORDING.items() if k != "fields"})
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
        if md["type"] == "Html":
            kw["extra_type"] = "richtextarea"
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
    def describe(self, obj: SObject, *, audit_fields: bool, record_types: list[dict], access: Any = None) -> dict:
        """The describe of ``obj``; with ``access`` (a user's :class:`~sandbox.salesforce.access.Access`),
        as that user sees it: hidden fields left out, read-only ones neither createable nor updateable."""
        out = dict(obj.top)
        fields = []
        audit = access.audit if access is not None else audit_fields
        for f in obj.fields.values():
            if access is not None:
                read, edit = access.field(obj, f)
                if not read:
                    continue
                if not edit and (f["createable"] or f["updateable"]):
                    f = dict(f, createable=False, updateable=False)
            if audit and f["name"] in ("CreatedDate", "CreatedById", "LastModifiedDate",
                                       "LastModifiedById") and obj.top.get("createable"):
                f = dict(f, createable=True)
            if f["name"] == "SobjectType" and obj.name in ("ObjectPermissions", "FieldPermissions"):
                values = self.permissionable_objects(fields_too=obj.name == "FieldPermissions")
                f = dict(f, restrictedPicklist=True, picklistValues=[
                    {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v} for v in values])
            elif f["name"] == "Field" and obj.name == "FieldPermissions":
                f = dict(f, restrictedPicklist=True)
            fields.append(f)
        out["fields"] = fields
        if access is not None:
            acts = access.object(obj)
            out.update(createable=bool(obj.top.get("createable")) and "create" in acts,
                       updateable=bool(obj.top.get("updateable")) and "edit" in acts,
                       deletable=bool(obj.top.get("deletable")) and "delete" in acts)
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
            if access is not None and not access.can(other, "read"):
                continue
            for f in other.fields.values():
                if f["custom"] and obj.name in f["referenceTo"] and (access is None or access.readable(other, f)):
                    children.append({"cascadeDelete": f["cascadeDelete"], "childSObject": other.name,
                                     "deprecatedAndHidden": False, "field": f["name"],
                                     "junctionIdListNames": [], "junctionReferenceTo": [],
                                     "relationshipName": f["relationshipName"][:-3] + "s__r",
                                     "restrictedDelete": False})
        out["childRelationships"] = children
        return out

    def permissionable_objects(self, *, fields_too: bool = False) -> list[str]:
        """Values of ObjectPermissions.SobjectType (``fields_too``: of FieldPermissions.SobjectType)."""
        out = []
        for o in self.objects.values():
            if o.custom or o.name in OBJECT_PERMISSIONABLE or (
                    fields_too and any(f["permissionable"] for f in o.fields.values())):
                out.append(o.name)
        return sorted(out)

    def describe_global(self, access: Any = None) -> dict:
        sobjects = []
        for obj in self.objects.values():
            if access is not None and not access.can(obj, "read"):
                continue
            entry = {k: obj.top.get(k, v) for k, v in self._global_template.items()}
            entry["urls"] = {k: v for k, v in self._urls(obj.name).items() if k in ("sobject", "describe", "rowTemplate")}
            sobjects.append(entry)
        return {**self.global_top, "sobjects": sobjects}
