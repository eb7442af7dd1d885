"""Every list and show operation the Clio sandbox serves, walked with selections it did not choose.

For each operation of the official spec (clio-cli 1.0.5): (a) every documented field, nested
objects with every documented sub-field, paged to the end; (b) seeded random subsets, nested
ones bare or braced.  Every page is validated against the spec with openapi-core, and the keys of
every record are checked against the selection.  Negative controls prove the validation and the
key check can fail.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from sandbox.clio.fields import default_fields
from sandbox.clio.schema import Operation, model
from sandbox.clio.testing import ClioSandbox, run_clio_sandbox

pytestmark = pytest.mark.integration

#: Parameters the spec marks required on some lists.
REQUIRED = {"notes": {"type": "Matter"}, "lauk_expense_categories": {"region": "London"}}
#: Operations whose records come from nowhere in a US firm (UK legal aid, court rules, reports...):
#: served, validated, and expected empty.
EMPTY = {"lauk_civil_certificated_rates", "lauk_civil_controlled_rates", "lauk_criminal_controlled_rates",
         "lauk_expense_categories", "court_rules/jurisdictions", "court_rules/matter_dockets",
         "court_rules/service_types", "grants", "grant_funding_sources", "report_presets", "report_schedules",
         "reports", "document_automations", "clio_payments/links", "clio_payments/payments",
         "internal_notifications/my_events"}


@pytest.fixture(scope="module")
def clio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClioSandbox]:
    with run_clio_sandbox(tmp_path_factory.mktemp("clio-walk"), preset="tiny", rate_limit=None) as sb:
        yield sb


def validate(openapi: OpenAPI, resp: requests.Response) -> None:
    """Validate a sandbox response as if app.clio.com had sent it."""
    url = urlsplit(resp.url)
    req = requests.Request("GET", "https://app.clio.com" + url.path.replace(".json", "") + ".json",
                           params=parse_qsl(url.query, keep_blank_values=True)).prepare()
    try:
        openapi.validate_response(RequestsOpenAPIRequest(req), RequestsOpenAPIResponse(resp))
    except Exception as exc:  # the full message repeats the body: keep the schema errors only
        errors = getattr(exc.__cause__, "schema_errors", None)
        if errors is None:
            raise
        raise AssertionError(f"{url.path}: not valid against the spec: "
                             f"{[f'{list(e.absolute_path)}: {e.message[:150]}' for e in errors][:8]}") from None


def all_fields(schema: str) -> str:
    """Every property; nested ones with every property of the nested schema (one level deep)."""
    parts = []
    for name, f in model().fields(schema).items():
        if f.nested and model().fields(f.target):
            parts.append(f"{name}{{{','.join(model().fields(f.target))}}}")
        else:
            parts.append(name)
    return ",".join(parts)


def random_fields(schema: str, rng: random.Random) -> str:
    props = model().fields(schema)
    names = rng.sample(sorted(props), rng.randint(1, len(props)))
    parts = []
    for name in names:
        f = props[name]
        sub = sorted(model().fields(f.target)) if f.nested else []
        if sub and rng.random() < 0.6:
            parts.append(f"{name}{{{','.join(rng.sample(sub, rng.randint(1, len(sub))))}}}")
        else:
            parts.append(name)
    return ",".join(parts)


def expected_keys(schema: str, fields: str) -> dict[str, object]:
    """name -> None (plain) or the set of keys each nested object must carry."""
    out: dict[str, object] = {}
    props = model().fields(schema)
    for part in fields.split(",") if "{" not in fields else _split(fields):
        name, _, sub = part.partition("{")
        f = props[name]
        if not f.nested:
            out[name] = None
        else:
            out[name] = set(sub.rstrip("}").split(",")) if sub else set(default_fields(f.target))
    return out


def _split(fields: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in fields:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += (ch == "{") - (ch == "}")
        cur += ch
    return out + [cur]


def check_keys(record: dict, keys: dict[str, object], where: str) -> None:
    assert set(record) == set(keys), f"{where}: keys {sorted(record)} != {sorted(keys)}"
    for name, sub in keys.items():
        value = record[name]
        if sub is None or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            assert set(item) == sub, f"{where}: {name} has {sorted(item)}, selected {sorted(sub)}"


def path_for(op: Operation, ids: dict[str, object]) -> str | None:
    path = op.path
    for p in op.path_params:
        value = ids.get(f"{op.path}:{p}") or ids.get(p)
        if value is None:
            return None
        path = path.replace("{" + p + "}", str(value))
    return path


def page_all(http: requests.Session, clio: ClioSandbox, path: str, params: dict, openapi: OpenAPI,
             keys: dict | None, schema: str) -> list[dict]:
    url, query, out = f"{clio.base_url}/api/v4/{path}.json", dict(params), []
    while url:
        r = http.get(url, params=query)
        assert r.status_code == 200, (path, params, r.text[:500])
        validate(openapi, r)
        body = r.json()
        for rec in body["data"]:
            if keys is not None:
                check_keys(rec, keys, f"{path} {params.get('fields')}")
        out += body["data"]
        url, query = body["meta"]["paging"].get("next"), None
    return out


def _ids(http: requests.Session, clio: ClioSandbox) -> dict[str, object]:
    def first(path: str, params: dict | None = None) -> object:
        r = http.get(f"{clio.base_url}/api/v4/{path}.json", params={"limit": 1, **(params or {})})
        data = r.json()["data"]
        return data[0]["id"] if data else None

    return {"matter_id": first("matters"), "id": first("documents"), "jurisdiction_id": None,
            "conversation_id": first("conversations")}


def list_ops() -> list[Operation]:
    return sorted((op for op in model().operations.values() if op.listing), key=lambda o: o.path)


def test_every_list_with_every_field_and_random_selections(clio, http, openapi) -> None:
    ids = _ids(http, clio)
    rng = random.Random(19)
    served, empty, filled = [], [], Counter()
    nonnull: dict[str, set[str]] = {}
    for op in list_ops():
        path = path_for(op, ids)
        if path is None:  # court rule triggers: no jurisdiction in this firm, the parent 404s
            r = http.get(f"{clio.base_url}/api/v4/{op.path.replace('{jurisdiction_id}', '1')}.json")
            assert r.status_code == 404, op.path
            continue
        base = dict(REQUIRED.get(op.path, {}))
        if op.path == "conversation_messages":
            base["conversation_id"] = ids["conversation_id"]
        fields = all_fields(op.schema)
        recs = page_all(http, clio, path, base | {"fields": fields, "limit": 5}, openapi,
                        expected_keys(op.schema, fields), op.schema)
        served.append(op.path)
        if not recs:
            empty.append(op.path)
        for rec in recs:
            nonnull.setdefault(op.path, set()).update(k for k, v in rec.items() if v not in (None, [], ""))
        filled[op.path] = len(recs)
        for _ in range(3):
            sel = random_fields(op.schema, rng)
            page_all(http, clio, path, base | {"fields": sel, "limit": min(rng.choice((3, 50, 200)), op.max_limit)}, openapi,
                     expected_keys(op.schema, sel), op.schema)
        page_all(http, clio, path, base | {"limit": 7}, openapi, None, op.schema)  # default selection
    assert set(empty) <= EMPTY, f"lists with no records: {sorted(set(empty) - EMPTY)}"
    assert len(served) == len(list_ops()) - 1 >= 72, len(served)  # all but the triggers of a jurisdiction
    # What a firm's books need is there: every field of these lists is filled on some record.
    for path in ("allocations", "credit_memos", "interest_charges", "outstanding_client_balances", "groups",
                 "document_categories", "custom_field_sets", "reminders", "damages", "calendar_entry_event_types"):
        assert filled[path] > 0, path
    must = {"allocations": {"amount", "date", "bill", "parent", "source_bank_account", "destination_bank_account",
                            "voided_at", "contact", "matter"},
            "bills": {"paid", "credits_issued", "balance", "total", "interest", "balances", "matter_totals"},
            "matters": {"account_balances", "evergreen_retainer", "custom_field_set_associations", "group"},
            "medical_records_details": {"medical_provider", "medical_bills", "medical_records", "treatment_start_date"}}
    for path, names in must.items():
        assert names <= nonnull[path], (path, sorted(names - nonnull[path]))


def test_every_show_with_every_field(clio, http, openapi) -> None:
    ids = _ids(http, clio)
    checked = 0
    for op in sorted((o for o in model().operations.values() if o.is_show), key=lambda o: o.path):
        parent = op.path.rsplit("/{", 1)[0]
        if parent in model().operations and model().operations[parent].listing and op.path_params == ("id",):
            params = REQUIRED.get(parent, {})
            r = http.get(f"{clio.base_url}/api/v4/{parent}.json", params={**params, "limit": 1})
            data = r.json()["data"] if r.status_code == 200 else []
            if not data:
                continue
            path = f"{parent}/{data[0]['id']}"
        elif op.path_params == ("id",):  # bank_transfers, document_archives: no list, none in this firm
            r = http.get(f"{clio.base_url}/api/v4/{parent}/1.json")
            assert r.status_code == 404, (op.path, r.text)
            continue
        else:
            path = path_for(op, ids)
            if path is None:
                continue
        fields = all_fields(op.schema)
        r = http.get(f"{clio.base_url}/api/v4/{path}.json", params={"fields": fields})
        assert r.status_code == 200, (path, r.text[:300])
        validate(openapi, r)
        check_keys(r.json()["data"], expected_keys(op.schema, fields), path)
        assert r.headers["ETag"] == r.json()["data"].get("etag", r.headers["ETag"])
        checked += 1
    for singleton in ("users/who_am_i", "settings/billing"):
        r = http.get(f"{clio.base_url}/api/v4/{singleton}.json", params={"fields": all_fields(
            model().operations[singleton].schema)})
        assert r.status_code == 200, r.text
        validate(openapi, r)
        checked += 1
    assert checked >= 40, checked


def test_validation_and_key_checks_can_fail(clio, http, openapi) -> None:
    """Negative controls: a wrong type, an unknown enum value and a missing key are all caught."""
    r = http.get(f"{clio.base_url}/api/v4/allocations.json", params={"fields": all_fields("Allocation"), "limit": 2})
    validate(openapi, r)
    for old, new in ((b'"amount":', b'"amount":"x",'), (b'"type":"Payment"', b'"type":"Cheque"'),
                     (b'"date":"', b'"date":"not-a-date')):
        bad = requests.Response()
        bad.status_code, bad.headers, bad.url = 200, r.headers, r.url
        bad._content = r.content.replace(old, new, 1)
        assert bad._content != r.content, old
        with pytest.raises(Exception, match="(?i)valid"):
            validate(openapi, bad)
    fields = "id,bill{id,total}"
    rec = http.get(f"{clio.base_url}/api/v4/allocations.json", params={"fields": fields, "limit": 1}).json()["data"][0]
    check_keys(rec, expected_keys("Allocation", fields), "control")
    with pytest.raises(AssertionError):
        check_keys({"id": rec["id"], "bill": {"id": 1}}, expected_keys("Allocation", fields), "control")
    with pytest.raises(AssertionError):
        check_keys(rec | {"etag": "x"}, expected_keys("Allocation", fields), "control")


@pytest.mark.parametrize("fields, needle", [
    ("id,colour", "colour"), ("matter{colour}", "colour"), ("matter{client{name}}", "deeper"),
    ("amount{id}", "not a nested"), ("bill{id", "unbalanced"), ("id,,date", "empty"),
])
def test_bad_selections_are_refused(clio, http, fields: str, needle: str) -> None:
    r = http.get(f"{clio.base_url}/api/v4/allocations.json", params={"fields": fields})
    assert r.status_code == 400 and r.json()["error"]["type"] == "ArgumentError"
    assert needle in r.json()["error"]["message"]
