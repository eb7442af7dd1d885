"""The official Clio OpenAPI file (from ``clio-cli==1.0.5``): the sandbox's ground truth.

The YAML takes over a second to parse, so the parsed document is cached as JSON in the temp
directory, keyed by the file's size and modification time (every sandbox start reads it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
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


def _cache_file(path: Path) -> Path:
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"clio2sf-clio-spec-{key}.json"


@lru_cache(maxsize=1)
def load_spec() -> dict:
    """The spec as plain JSON types (dates from YAML become strings)."""
    path = spec_path()
    cache = _cache_file(path)
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    with path.open() as fh:
        text = json.dumps(yaml.load(fh, Loader=_Loader), default=str)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, cache)
    except OSError:
        tmp.unlink(missing_ok=True)
    return json.loads(text)


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
    data = schema_properties(spec, ref).get("data")
    if data is None:  # calendar_entry_event_types: the spec gives the bare record schema
        return ref
    return data.get("items", data)["$ref"].rsplit("/", 1)[-1]


def with_nullable(spec: dict) -> dict:
    """A copy where every typed schema accepts null: Clio returns null for empty fields, but the
    generated spec never says ``nullable`` (an enum gets null among its values, as OpenAPI 3.0
    requires for a nullable enum)."""
    spec = json.loads(json.dumps(spec))

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str):
                node["nullable"] = True
                if isinstance(node.get("enum"), list) and None not in node["enum"]:
                    node["enum"] = [*node["enum"], None]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec["components"])
    return spec
