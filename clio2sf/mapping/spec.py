"""Load, merge, validate and hash the mapping spec (``include/mappings``)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from clio2sf import catalog, staging
from clio2sf.mapping import money

DEFAULT_MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "include" / "mappings"
#: Environment variable naming another mappings directory (``spec.yaml``, ``spec.schema.json``, ``firms/``).
MAPPINGS_DIR_ENV = "CLIO2SF_MAPPINGS_DIR"

#: Salesforce objects in the order they must be loaded (parents before children).
BASE_LOAD_ORDER: tuple[str, ...] = (
    "Account",
    "Contact",
    "Case",
    "Opportunity",
    "CaseContactRole",
    "OpportunityContactRole",
    "AccountContactRelation",  # after Account and Contact
    "CaseTeamMember",  # after Case; members are users (resolved by mig_03), roles are CaseTeamRoles
    "OpportunityTeamMember",
    "Clio_Billing__c",
    "Ledger__c",
    "Time_Entry__c",
    "Expense__c",
    "Rate_Structure__c",
    *money.LOAD_ORDER,  # after the bills and ledger they belong to
    "Event",
    "EventRelation",
    "Task",
    "ContentVersion",
    "ContentNote",
    "ContentDocumentLink",  # after both: links documents (ContentVersion) and notes (ContentNote)
)

#: Objects that cannot carry custom fields: idempotent through a natural key instead.
NATURAL_KEY_OBJECTS = frozenset(
    {"CaseContactRole", "OpportunityContactRole", "EventRelation", "ContentDocumentLink", "ContentNote",
     "AccountContactRelation", "CaseTeamMember", "OpportunityTeamMember"}
)


class SpecError(ValueError):
    """The mapping spec is malformed; the message names the key to fix."""


def _deep_merge(base: Any, override: Any) -> Any:
    """Merge ``override`` over ``base``: dicts key by key, lists replaced, None removes a key."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None and key in out and isinstance(out[key], dict):
            del out[key]
        elif key in out:
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def canonical_json(data: Any) -> str:
    """Canonical JSON (sorted keys, no spaces, UTF-8 kept) used for the content hash."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class ValueMap:
    """A value-mapping table for one picklist (e.g. Matter.status -> Case.Status)."""

    name: str
    values: Mapping[str, str]
    default: str | None = None
    on_unknown: str = "default"

    def target_values(self) -> list[str]:
        """Distinct target values, in declaration order, default included."""
        out = list(dict.fromkeys(self.values.values()))
        if self.default and self.default not in out:
            out.append(self.default)
        return out


@dataclass(frozen=True)
class MappingSpec:
    """The merged spec of one firm.  ``data`` is the validated plain dict."""

    data: dict[str, Any]
    firm: str | None = None
    sources: tuple[str, ...] = field(default=())

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the merged spec: the identity that gets confirmed."""
        return hashlib.sha256(canonical_json(self.data).encode("utf-8")).hexdigest()

    @property
    def options(self) -> dict[str, Any]:
        return self.data["options"]

    @property
    def objects(self) -> dict[str, Any]:
        return self.data["objects"]

    @cached_property
    def value_maps(self) -> dict[str, ValueMap]:
        return {
            name: ValueMap(name, vm.get("values") or {}, vm.get("default"), vm.get("on_unknown", "default"))
            for name, vm in self.data["value_maps"].items()
        }

    def value_map(self, name: str) -> ValueMap:
        try:
            return self.value_maps[name]
        except KeyError:
            raise SpecError(f"value map {name!r} is not defined under value_maps") from None

    def matter_target(self, matter: Mapping[str, Any]) -> str:
        """Return "Case" or "Opportunity" for a Clio matter record (``data`` of the envelope).

        Precedence: the matter custom field named by ``options.matter_object_field`` (value
        "Case"/"Opportunity"), then ``options.matter_object_by_practice_area``, then
        ``options.matter_object``.
        """
        opts = self.options
        cf_name = opts.get("matter_object_field")
        if cf_name:
            for cfv in matter.get("custom_field_values") or ():
                if cfv.get("field_name") == cf_name:
                    value = (cfv.get("picklist_option") or {}).get("option") or cfv.get("value")
                    if value in ("Case", "Opportunity"):
                        return value
        by_area = opts.get("matter_object_by_practice_area") or {}
        if by_area:
            area = (matter.get("practice_area") or {}).get("name")
            if area in by_area:
                return by_area[area]
        return opts["matter_object"]

    @cached_property
    def matter_objects(self) -> tuple[str, ...]:
        """Salesforce objects matters can land in under this spec."""
        opts = self.options
        targets = {opts["matter_object"], *(opts.get("matter_object_by_practice_area") or {}).values()}
        if opts.get("matter_object_field"):
            targets |= {"Case", "Opportunity"}
        return tuple(o for o in ("Case", "Opportunity") if o in targets)

    @cached_property
    def load_order(self) -> list[str]:
        """Salesforce objects in dependency order, limited to those this spec can produce."""
        matter_objs = set(self.matter_objects)
        skip: set[str] = set()
        if "Case" not in matter_objs:
            skip |= {"Case", "CaseContactRole", "CaseTeamMember"}
        if "Opportunity" not in matter_objs:
            skip |= {"Opportunity", "OpportunityContactRole", "OpportunityTeamMember"}
        return [o for o in BASE_LOAD_ORDER if o in self.objects and o not in skip]

    def object_spec(self, sobject: str) -> dict[str, Any]:
        try:
            return self.objects[sobject]
        except KeyError:
            raise SpecError(f"no mapping for Salesforce object {sobject!r} under objects") from None


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """``yaml.SafeLoader`` (libyaml's, several times faster, when PyYAML has it: every transform and
    load task reads the spec) that refuses a key repeated in one mapping (PyYAML keeps the last one
    silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
            if first != line:
                raise SpecError(f"{key_node.start_mark.name}:{line}: duplicate key {key!r} (first at line {first}); YAML would "
                                "keep only the last one: remove one")
        return super().construct_mapping(node, deep=deep)


def _key_line(path: Path, keys: Sequence[str]) -> int | None:
    """1-based line of the mapping key at ``keys`` (e.g. objects, Contact, fields, title) in a YAML file."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        for key_node, value_node in node.value:
            if key_node.value == key:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            return None
    return line


def _duplicate_targets(data: dict[str, Any], sources: Sequence[str] = ()) -> list[str]:
    """Target fields named twice in one object, differing only in case (Salesforce names are case-insensitive)."""
    problems = []
    groups = [(("objects", key, "fields"), (ospec or {}).get("fields") or {}) for key, ospec in data["objects"].items()]
    groups += [(("schema", "fields", obj), fields or {}) for obj, fields in (data["schema"].get("fields") or {}).items()]
    for keys, fields in groups:
        by_fold: dict[str, list[str]] = defaultdict(list)
        for name in fields:
            by_fold[str(name).casefold()].append(str(name))
        for names in by_fold.values():
            if len(names) < 2:
                continue
            where = []
            for name in names:
                for src in reversed(sources):
                    line = _key_line(Path(src), (*keys, name))
                    if line:
                        where.append(f"{name!r} at {src}:{line}")
                        break
                else:
                    where.append(repr(name))
            problems.append(f"{'.'.join(keys)}: {' and '.join(where)} name the same Salesforce field (names are "
                            "case-insensitive); keep one")
    return problems


#: External ids the transform makes (``contact-123``): a constant id of this form names a real record.
_SOURCE_ID_RE = re.compile(r"^[a-z_]+-\d+$")
EXTERNAL_ID_FIELD = "Clio_Id__c"


def _firm_overrides(data: dict[str, Any]) -> list[str]:
    """What a firm config may not change: the external id, owners outside the user map, shared ids."""
    problems = []
    for key, ospec in data["objects"].items():
        for target, fspec in ((ospec or {}).get("fields") or {}).items():
            where = f"objects.{key}.fields.{target}"
            if str(target).casefold() == EXTERNAL_ID_FIELD.casefold():
                problems.append(f"{where}: {EXTERNAL_ID_FIELD} is the external id the migration sets itself "
                                "(<clio object>-<Clio id>); mapping it would give records one another's id. Remove it")
            elif str(target).casefold() == "ownerid" and (set(fspec or {}) - {"owner", "owner_of"}):
                problems.append(f"{where}: owners come only from the user map ({{owner: <path to a Clio user id>}}), "
                                "with options.fallback_owner (resolved and checked by mig_03_resolve_users) for the "
                                f"unmatched; {sorted(set(fspec) - {'owner', 'owner_of'})} would set owners unchecked")
    individual = (data["options"].get("individual_account") or {}).get("clio_id")
    if isinstance(individual, str) and _SOURCE_ID_RE.match(individual):
        problems.append(f"options.individual_account.clio_id: {individual!r} has the form of a Clio record's external "
                        "id (<object>-<id>): the shared individual-client account would overwrite that record; use a "
                        "name such as individual-client-account")
    return problems


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping")
    return data


def _schema(mappings_dir: Path) -> dict[str, Any]:
    with (mappings_dir / "spec.schema.json").open(encoding="utf-8") as fh:
        return json.load(fh)


def validate_spec_data(data: dict[str, Any], mappings_dir: Path = DEFAULT_MAPPINGS_DIR,
                       sources: Sequence[str] = ()) -> None:
    """Validate a merged spec dict against the JSON Schema; raise SpecError naming the bad key.

    Then the checks a schema cannot express (:func:`_check_references`), what a firm config may not
    change (the external id, owners outside the user map, an individual-client account id that names
    a real record) and target fields named twice in different case (with file and line from ``sources``).
    """
    validator = jsonschema.Draft202012Validator(_schema(mappings_dir))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors[:10]:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"{where}: {err.message}")
        raise SpecError("mapping spec is invalid:\n  " + "\n  ".join(lines))
    _check_references(data)
    problems = _firm_overrides(data) + _duplicate_targets(data, sources)
    if problems:
        raise SpecError("mapping spec is invalid:\n  " + "\n  ".join(problems))


def _top_level_fields(fields: str) -> set[str]:
    """Top-level names of a Clio ``fields`` selection (``a,b{c,d},e`` → ``{a, b, e}``)."""
    names, depth, cur = set(), 0, ""
    for ch in fields + ",":
        if ch in "{}":
            depth += 1 if ch == "{" else -1
        elif ch == "," and depth == 0:
            names.add(cur.strip())
            cur = ""
        elif depth == 0:
            cur += ch
    return names - {""}


def _unknown_sources(data: dict[str, Any]) -> list[str]:
    """``from`` paths naming no field the extraction reads: they would load as null, silently."""
    problems = []
    for sobject, ospec in data["objects"].items():
        sources = ospec.get("source")
        sources = [sources] if isinstance(sources, str) else list(sources or [])
        unknown = [s for s in sources if s not in catalog.BY_NAME]
        if unknown:
            problems.append(f"objects.{sobject}.source: unknown Clio object(s) {unknown}")
            continue
        known = set().union(*(_top_level_fields(catalog.get(s).fields) for s in sources)) if sources else set()
        for target, fspec in (ospec.get("fields") or {}).items():
            names = fspec.get("from")
            names = [names] if isinstance(names, str) else list(names or [])
            heads = [n.replace("[", ".").split(".")[0] for n in names]
            if known and names and not any(h in known for h in heads):  # a list is a fallback chain
                problems.append(f"objects.{sobject}.fields.{target}.from: {names} names no field of Clio "
                                f"{'/'.join(sources)}; fix the name (fields read: clio2sf/catalog.py)")
    return problems


def _check_references(data: dict[str, Any]) -> None:
    """Checks the JSON Schema cannot express: value maps named by fields exist, etc."""
    maps = data["value_maps"]
    problems = _unknown_sources(data)
    for sobject, ospec in data["objects"].items():
        for target, fspec in (ospec.get("fields") or {}).items():
            name = fspec.get("map")
            if name and name not in maps:
                problems.append(f"objects.{sobject}.fields.{target}.map: unknown value map {name!r}")
    for sobject, fields in (data["schema"].get("fields") or {}).items():
        for fname, fdef in fields.items():
            name = fdef.get("values_from_map")
            if name and name not in maps:
                problems.append(f"schema.fields.{sobject}.{fname}.values_from_map: unknown value map {name!r}")
            if fdef["type"] == "Lookup" and not fdef.get("reference_to"):
                problems.append(f"schema.fields.{sobject}.{fname}: a Lookup needs reference_to")
    for area, target in (data["options"].get("matter_object_by_practice_area") or {}).items():
        if target == "Opportunity" and "Opportunity" not in data["objects"]:
            problems.append(f"options.matter_object_by_practice_area.{area}: no objects.Opportunity mapping")
    if problems:
        raise SpecError("mapping spec is invalid:\n  " + "\n  ".join(problems))


def load_spec(firm: str | None, mappings_dir: Path | str = DEFAULT_MAPPINGS_DIR) -> MappingSpec:
    """Load ``spec.yaml`` merged with ``firms/<firm>.yaml`` (if ``firm``) and validate it.

    :raises SpecError: unknown firm, bad YAML, or a schema violation (the message names the key).
    """
    if mappings_dir == DEFAULT_MAPPINGS_DIR and os.environ.get(MAPPINGS_DIR_ENV):
        mappings_dir = os.environ[MAPPINGS_DIR_ENV]  # a deployment's own firm configs
    mappings_dir = Path(mappings_dir)
    base_path = mappings_dir / "spec.yaml"
    data = _read_yaml(base_path)
    sources = [str(base_path)]
    if firm:
        try:
            staging.check_firm(firm)  # the firm name becomes a file name here and a folder in staging
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        firm_path = mappings_dir / "firms" / f"{firm}.yaml"
        if not firm_path.is_file():
            known = sorted(
                p.stem for p in (mappings_dir / "firms").glob("*.yaml") if not p.stem.endswith(".confirmations")
            )
            raise SpecError(f"no firm config {firm_path.name!r} in {firm_path.parent}; known firms: {known}")
        data = _deep_merge(data, _read_yaml(firm_path))
        sources.append(str(firm_path))
    validate_spec_data(data, mappings_dir, sources)
    return MappingSpec(data=data, firm=firm, sources=tuple(sources))


def spec_from_dict(data: dict[str, Any], firm: str | None = None) -> MappingSpec:
    """Build a validated spec from an in-memory dict (tests, previews)."""
    validate_spec_data(data)
    return MappingSpec(data=copy.deepcopy(data), firm=firm)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Public deep merge with the firm-override semantics (dicts merge, lists replace, None removes)."""
    return _deep_merge(base, override)
