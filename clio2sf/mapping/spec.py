"""Load, merge, validate and hash the mapping spec (``include/mappings``)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping")
    return data


def _schema(mappings_dir: Path) -> dict[str, Any]:
    with (mappings_dir / "spec.schema.json").open(encoding="utf-8") as fh:
        return json.load(fh)


def validate_spec_data(data: dict[str, Any], mappings_dir: Path = DEFAULT_MAPPINGS_DIR) -> None:
    """Validate a merged spec dict against the JSON Schema; raise SpecError naming the bad key."""
    validator = jsonschema.Draft202012Validator(_schema(mappings_dir))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for err in errors[:10]:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"{where}: {err.message}")
        raise SpecError("mapping spec is invalid:\n  " + "\n  ".join(lines))
    _check_references(data)


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
    validate_spec_data(data, mappings_dir)
    return MappingSpec(data=data, firm=firm, sources=tuple(sources))


def spec_from_dict(data: dict[str, Any], firm: str | None = None) -> MappingSpec:
    """Build a validated spec from an in-memory dict (tests, previews)."""
    validate_spec_data(data)
    return MappingSpec(data=copy.deepcopy(data), firm=firm)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Public deep merge with the firm-override semantics (dicts merge, lists replace, None removes)."""
    return _deep_merge(base, override)
