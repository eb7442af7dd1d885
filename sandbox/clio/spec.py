"""The official Clio OpenAPI file (from ``clio-cli==1.0.5``), loaded for validation in tests."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import yaml


def spec_path() -> Path:
    spec = find_spec("openapi_server")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("clio-cli==1.0.5 is not installed (it ships openapi_server/openapi/openapi.yaml)")
    return Path(next(iter(spec.submodule_search_locations))) / "openapi" / "openapi.yaml"


class _Loader(yaml.CSafeLoader):
    """The spec uses ``=`` as an enum value, which YAML 1.1 tags as ``value``; read it as a string."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


@lru_cache(maxsize=1)
def load_spec() -> dict:
    """The spec as plain JSON types (dates from YAML become strings)."""
    with spec_path().open() as fh:
        return json.loads(json.dumps(yaml.load(fh, Loader=_Loader), default=str))


def schema_properties(spec: dict, name: str) -> dict:
    """Properties of a component schema, following ``allOf`` references."""
    schema = spec["components"]["schemas"][name]
    out: dict = {}
    for part in schema.get("allOf", [schema]):
        if "$ref" in part:
            out.update(schema_properties(spec, part["$ref"].rsplit("/", 1)[-1]))
        else:
            out.update(part.get("properties", {}))
    return out


def item_schema(spec: dict, endpoint: str) -> str:
    """Name of the record schema that ``GET /<endpoint>.json`` returns a list of."""
    content = spec["paths"][f"/{endpoint}.json"]["get"]["responses"]["200"]["content"]
    ref = next(iter(content.values()))["schema"]["$ref"].rsplit("/", 1)[-1]
    data = schema_properties(spec, ref)["data"]
    return data.get("items", data)["$ref"].rsplit("/", 1)[-1]


def with_nullable(spec: dict) -> dict:
    """A copy where every typed schema accepts null: Clio returns null for empty fields, but the
    generated spec never says ``nullable``."""
    spec = json.loads(json.dumps(spec))

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str):
                node["nullable"] = True
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec["components"])
    return spec
