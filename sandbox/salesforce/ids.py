"""Salesforce record ids: key prefixes, 15/18-character forms and the case-safe checksum."""

from __future__ import annotations

import functools
import re
import string

_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHK = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")

#: Key prefixes of the standard objects the sandbox knows.
PREFIXES: dict[str, str] = {
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "Case": "500",
    "User": "005",
    "Task": "00T",
    "Event": "00U",
    "Organization": "00D",
    "RecordType": "012",
    "EventRelation": "0RE",
    "CaseContactRole": "03j",
    "ContentVersion": "068",
    "ContentDocument": "069",
    "ContentDocumentLink": "06A",
    "ContentNote": "069",
    "AccountContactRelation": "07k",
    "CaseTeamMember": "0B6",
    "CaseTeamRole": "0B7",
    "OpportunityTeamMember": "00q",
    "OpportunityContactRole": "00K",
    "Group": "00G",
    "Lead": "00Q",
    "Profile": "00e",
    "PermissionSet": "0PS",
    "FieldPermissions": "01k",
    "ObjectPermissions": "110",
    "PermissionSetAssignment": "0Pa",
    "CustomField": "00N",
    "CustomObject": "01I",
    "BulkJob": "750",
    "BulkBatch": "751",
    "QueryLocator": "01g",
}
MASTER_RECORD_TYPE_ID = "012000000000000AAA"


_UP = frozenset(string.ascii_uppercase)


def checksum(id15: str) -> str:
    """The three case-safe suffix characters of a 15-character id."""
    u, c = _UP, id15
    return (_CHK[(c[0] in u) | (c[1] in u) << 1 | (c[2] in u) << 2 | (c[3] in u) << 3 | (c[4] in u) << 4]
            + _CHK[(c[5] in u) | (c[6] in u) << 1 | (c[7] in u) << 2 | (c[8] in u) << 3 | (c[9] in u) << 4]
            + _CHK[(c[10] in u) | (c[11] in u) << 1 | (c[12] in u) << 2 | (c[13] in u) << 3 | (c[14] in u) << 4])


def to18(id15: str) -> str:
    return id15 if len(id15) == 18 else id15 + checksum(id15)


@functools.lru_cache(maxsize=256)
def _suffix(prefix: str) -> str:
    # Only the prefix can hold capitals: the rest of "<prefix>8c0<9 digits>" never changes the checksum.
    return checksum(f"{prefix}8c0000000000")


def make_id(prefix: str, seq: int) -> str:
    """An 18-character id: prefix, a fixed pod part and a 9-digit sequence."""
    if seq < 1_000_000_000 and len(prefix) == 3:
        return f"{prefix}8c0{seq:09d}{_suffix(prefix)}"
    id15 = f"{prefix}8c0{seq:09d}"
    return id15 + checksum(id15)


@functools.lru_cache(maxsize=65536)
def _well_formed(value: str) -> bool:
    if not _ID_RE.match(value):
        return False
    return len(value) == 15 or checksum(value[:15]) == value[15:]


def well_formed(value: object) -> bool:
    """True for a syntactically valid 15- or 18-character id (checksum checked)."""
    return isinstance(value, str) and _well_formed(value)


def normalize(value: str) -> str:
    """The 18-character form of a well-formed id."""
    return to18(value)
