"""Query parameters, ids and conditional GETs of the Clio sandbox, against the official spec.

Every documented parameter of every list is sent with a valid value and understood (never the
sandbox's "not supported"); a table of filters is checked against the records' own fields; bad
values, unknown parameters and ids beyond 64 bits are refused the way Clio refuses them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sandbox.clio.schema import model
from sandbox.clio.testing import ClioSandbox, run_clio_sandbox

pytestmark = pytest.mark.integration
HUGE = 2**70


@pytest.fixture(scope="module")
def clio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClioSandbox]:
    with run_clio_sandbox(tmp_path_factory.mktemp("clio-params"), preset="tiny", rate_limit=None) as sb:
        yield sb


@pytest.fixture(scope="module")
def api(clio: ClioSandbox):
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {clio.access_token()}"

    def get(path: str, params: dict | list | None = None, **kw) -> requests.Response:
        return s.get(f"{clio.base_url}/api/v4/{path}.json", params=params, **kw)
    get.session = s  # type: ignore[attr-defined]
    return get


def all_of(api, path: str, params: dict | list | None = None, fields: str = "id") -> list[dict]:
    params = list(params.items()) if isinstance(params, dict) else list(params or [])
    op = model().match(path)[0]
    r = api(path, params + [("fields", fields), ("limit", str(op.max_limit))])
    assert r.status_code == 200, (path, params, r.text[:300])
    body = r.json()
    assert "next" not in body["meta"]["paging"], "the tiny firm fits one page"
    return body["data"]


def _value(p, first: dict) -> list[str]:
    """A valid value for a documented parameter, taken from a record where the name says where."""
    if p.name.endswith("[]"):
        if "date" in p.name:
            return [">=2020-01-01"]
        if p.enum:
            return [p.enum[0]]
        return [str(first.get("id", 1))]
    if p.type == "integer":
        stem = p.name[:-3] if p.name.endswith("_id") else p.name
        for key in (stem, stem + "s"):
            v = first.get(key)
            v = v[0] if isinstance(v, list) and v else v
            if isinstance(v, dict) and v.get("id") is not None:
                return [str(v["id"])]
        return [str(first.get(p.name) or 1)]
    if p.type == "boolean":
        return ["true"]
    if p.enum:
        return [p.enum[0]]
    if p.format == "date-time" or p.name in ("from", "to", "received_at"):
        return ["2024-01-01T00:00:00Z"]
    if "date" in p.name or p.name.endswith(("_after", "_before", "_since")) or p.name.startswith("due_at"):
        return ["2024-01-01"]
    return ["a"]


REQUIRED = {"notes": {"type": "Matter"}, "lauk_expense_categories": {"region": "London"}}
SKIP = {"fields", "limit", "page_token", "order", "custom_field_values"}


def test_every_documented_parameter_is_understood(api) -> None:
    conversation = all_of(api, "conversations")[0]["id"]
    matter = all_of(api, "matters")[0]["id"]
    checked, failures = 0, []
    for op in sorted(model().operations.values(), key=lambda o: o.path):
        if not op.listing or op.path.startswith("court_rules/jurisdictions/"):
            continue
        path = op.path.replace("{matter_id}", str(matter)).replace("{id}", "1")
        base = dict(REQUIRED.get(op.path, {}))
        if op.path == "conversation_messages":
            base["conversation_id"] = str(conversation)
        unfiltered = api(path, base | {"limit": 1, "fields": ",".join(model().fields(op.schema))})
        assert unfiltered.status_code == 200, (op.path, unfiltered.text[:200])
        first = (unfiltered.json()["data"] or [{}])[0]
        everything = {str(r["id"]) for r in all_of(api, path, base)} if "id" in model().fields(op.schema) else None
        for p in op.params.values():
            if p.name in SKIP or p.name in base:
                continue
            params = [(k, v) for k, v in base.items()] + [(p.name, v) for v in _value(p, first)]
            if p.name == "assignee_id":
                params.append(("assignee_type", "user"))
            r = api(path, params + [("fields", "id")])
            if r.status_code != 200:
                failures.append((op.path, p.name, r.json()["error"]["message"]))
            elif everything is not None and not {str(x["id"]) for x in r.json()["data"]} <= everything:
                failures.append((op.path, p.name, "returned records the unfiltered list does not have"))
            checked += 1
    assert not failures, "\n".join(map(str, failures))
    assert checked > 450, checked


def _ids(records: list[dict]) -> set:
    return {r["id"] for r in records}


FILTERS = [
    # (path, params, fields, oracle on each returned record)
    ("matters", {"status": "open,pending"}, "id,status", lambda r: r["status"] in ("Open", "Pending")),
    ("matters", {"billable": "false"}, "id,billable", lambda r: r["billable"] is False),
    ("matters", {"open_date[]": [">=2022-01-01", "<2024-01-01"]}, "id,open_date",
     lambda r: "2022-01-01" <= r["open_date"] < "2024-01-01"),
    ("matters", {"close_date[]": ["<=MEDIAN"]}, "id,close_date", lambda r, m: r["close_date"] and r["close_date"] <= m),
    ("contacts", {"client_only": "true"}, "id,is_client", lambda r: r["is_client"]),
    ("contacts", {"type": "Company"}, "id,type", lambda r: r["type"] == "Company"),
    ("contacts", {"initial": "B"}, "id,type,name,last_name",
     lambda r: (r["last_name"] if r["type"] == "Person" else r["name"]).startswith("B")),
    ("activities", {"type": "ExpenseEntry"}, "id,type", lambda r: r["type"] == "ExpenseEntry"),
    ("activities", {"status": "billed"}, "id,billed", lambda r: r["billed"]),
    ("activities", {"status": "unbilled"}, "id,on_bill,non_billable", lambda r: not r["on_bill"] and not r["non_billable"]),
    ("activities", {"start_date": "2023-01-01", "end_date": "2024-12-31"}, "id,date",
     lambda r: "2023-01-01" <= r["date"] <= "2024-12-31"),
    ("activities", {"flat_rate": "true"}, "id,flat_rate", lambda r: r["flat_rate"]),
    ("bills", {"state": "paid"}, "id,state", lambda r: r["state"] == "paid"),
    ("bills", {"issued_after": "MEDIAN"}, "id,issued_at", lambda r, m: r["issued_at"] >= m),
    ("tasks", {"status": "complete"}, "id,status", lambda r: r["status"] == "complete"),
    ("tasks", {"priority": "high"}, "id,priority", lambda r: r["priority"] == "High"),
    ("tasks", {"statuses[]": ["pending", "in_review"]}, "id,status", lambda r: r["status"] in ("pending", "in_review")),
    ("allocations", {"parent_type": "1"}, "id,parent{id,type}", lambda r: r["parent"]["type"] == "CreditMemo"),
    ("allocations", {"status": "invalid"}, "id,voided_at", lambda r: r["voided_at"] is not None),
    ("bank_accounts", {"type": "TrustAccount"}, "id,type", lambda r: r["type"] == "Trust"),
    ("custom_fields", {"parent_type": "contact"}, "id,parent_type", lambda r: r["parent_type"] == "Contact"),
    ("custom_fields", {"field_type": "picklist"}, "id,field_type", lambda r: r["field_type"] == "picklist"),
    ("users", {"subscription_type": "nonattorney"}, "id,subscription_type",
     lambda r: r["subscription_type"] == "NonAttorney"),
    ("users", {"enabled": "false"}, "id,enabled", lambda r: r["enabled"] is False),
    ("groups", {"type": "UserGroup"}, "id,type", lambda r: r["type"] == "UserGroup"),
    ("reminders", {"subject_type": "task"}, "id,subject{id,type}", lambda r: r["subject"]["type"] == "Task"),
    ("communications", {"type": "PhoneCommunication"}, "id,type", lambda r: r["type"] == "PhoneCommunication"),
    ("calendar_entries", {"is_all_day": "true"}, "id,all_day", lambda r: r["all_day"]),
    ("calendar_entries", {"from": "2024-01-01T00:00:00Z"}, "id,end_at", lambda r: r["end_at"] >= "2024-01-01"),
    ("utbms/codes", {"type": "UtbmsExpense"}, "id,type", lambda r: r["type"] == "UtbmsExpense"),
    ("task_types", {"enabled": "false"}, "id,deleted_at", lambda r: r["deleted_at"] is not None),
]


@pytest.mark.parametrize("path, params, fields, oracle", FILTERS, ids=[f"{f[0]}-{next(iter(f[1]))}" for f in FILTERS])
def test_filters_filter(api, path, params, fields, oracle) -> None:
    base = {"type": "Matter"} if path == "notes" else {}
    everything = all_of(api, path, base, fields)
    if "MEDIAN" in str(params):  # a date threshold taken from the firm itself, so that it always splits it
        column = fields.split(",")[1]
        dates = sorted(r[column][:10] for r in everything if r[column])
        median = dates[len(dates) // 2]
        params = {k: [x.replace("MEDIAN", median) for x in v] if isinstance(v, list) else v.replace("MEDIAN", median)
                  for k, v in params.items()}
        oracle = (lambda o, m: lambda r: o(r, m))(oracle, median)
    got = all_of(api, path, [*base.items(), *((k, x) for k, v in params.items() for x in (v if isinstance(v, list) else [v]))],
                 fields)
    assert got, f"{path} {params}: nothing matched; the filter cannot be told apart from one matching nothing"
    assert all(oracle(r) for r in got), (path, params)
    assert len(got) < len(everything), f"{path} {params} kept every record"
    assert _ids([r for r in everything if oracle(r)]) == _ids(got), (path, params)


@pytest.mark.parametrize("path, assoc, param", [
    ("activities", "matter", "matter_id"), ("activities", "user", "user_id"), ("bills", "client", "client_id"),
    ("allocations", "bill", "bill_id"), ("relationships", "contact", "contact_id"),
    ("bank_transactions", "matter", "matter_id"), ("interest_charges", "bill", "bill_id"),
    ("credit_memos", "contact", "contact_id"), ("trust_line_items", "matter", "matter_id"),
    ("documents", "document_category", "document_category_id"), ("reminders", "notification_method",
                                                                 "notification_method_id"),
])
def test_association_filters_pick_exactly_the_linked_records(api, path, assoc, param) -> None:
    everything = all_of(api, path, fields=f"id,{assoc}")
    linked = [r for r in everything if r[assoc]]
    assert linked, path
    want = linked[0][assoc]["id"]
    got = all_of(api, path, {param: want}, f"id,{assoc}")
    assert _ids(got) == {r["id"] for r in linked if r[assoc]["id"] == want}


def test_documented_combinations_and_custom_field_values(api) -> None:
    tasks = all_of(api, "tasks", fields="id,assignee{id,type}")
    uid = tasks[0]["assignee"]["id"]
    got = all_of(api, "tasks", {"assignee_id": uid, "assignee_type": "user"}, "id,assignee{id}")
    assert got and all(t["assignee"]["id"] == uid for t in got)
    comms = all_of(api, "communications", fields="id,senders{id,type},receivers{id,type}")
    contact = next(p["id"] for c in comms for p in c["senders"] + c["receivers"] if p["type"] != "User")
    got = all_of(api, "communications", {"contact_id": contact}, "id,senders{id,type},receivers{id,type}")
    assert got and all(contact in [p["id"] for p in c["senders"] + c["receivers"] if p["type"] != "User"] for c in got)
    matters = all_of(api, "matters", fields="id,custom_field_values{value,field_type,custom_field}")
    cfv = next(c for m in matters for c in m["custom_field_values"] if c["field_type"] == "numeric")
    cf_id = cfv["custom_field"]["id"]
    key = f"custom_field_values[{cf_id}]"
    got = all_of(api, "matters", {key: f">={cfv['value']}"}, "id,custom_field_values{value,custom_field}")
    assert got and all(float(c["value"]) >= float(cfv["value"]) for m in got for c in m["custom_field_values"]
                       if c["custom_field"]["id"] == cf_id)
    only = all_of(api, "matters", {"custom_field_ids[]": cf_id}, "id,custom_field_values{custom_field}")
    assert all(c["custom_field"]["id"] == cf_id for m in only for c in m["custom_field_values"])
    text = next(c for m in matters for c in m["custom_field_values"] if c["field_type"] == "text_line")
    r = api("matters", {f"custom_field_values[{text['custom_field']['id']}]": "<a"})
    assert r.status_code == 400 and "operator" in r.json()["error"]["message"]
    ids = sorted(_ids(all_of(api, "matters")))
    assert _ids(all_of(api, "matters", [("ids[]", ids[0]), ("ids[]", ids[2])])) == {ids[0], ids[2]}
    assert _ids(all_of(api, "matters", [("exclude_ids[]", ids[0])] if False else {})) >= {ids[0]}
    assert _ids(all_of(api, "interest_charges", [("exclude_ids[]", 10**6)])) == _ids(all_of(api, "interest_charges"))
    # null is a value only where the spec says so
    assert api("activities", {"matter_id": "null", "fields": "id,matter"}).status_code == 200
    assert all(a["matter"] is None for a in all_of(api, "activities", {"matter_id": "null"}, "id,matter"))
    assert api("calendar_entries", {"calendar_id": "null"}).status_code == 400


@pytest.mark.parametrize("path, params, needle", [
    ("matters", {"client_id": "abc"}, "not an integer"),
    ("matters", {"client_id": str(HUGE)}, "out of range"),
    ("matters", {"status": "archived"}, "not one of"),
    ("matters", {"billable": "yes"}, "not true or false"),
    ("matters", {"updated_since": "yesterday"}, "ISO-8601"),
    ("matters", {"colour": "red"}, "Unknown parameter"),
    ("matters", {"order": "colour(asc)"}, "Invalid order"),
    ("matters", {"ids[]": str(HUGE)}, "out of range"),
    ("matters", {"limit": "201"}, "between 1 and 200"),
    ("matters", {"page_token": "!!!"}, "page_token"),
    ("notes", {}, "Missing required"),
    ("conversation_messages", {}, "Missing required"),
    ("bills", {"query": "INV-1"}, "not an integer"),
    ("allocations", {"parent_type": "7"}, "parent_type"),
    ("custom_field_sets", {"parent_type": "matter"}, "not one of"),  # this enum is capitalised in the spec
    ("users/who_am_i", {"colour": "1"}, "Unknown parameter"),
])
def test_bad_parameters_get_400(api, path, params, needle) -> None:
    r = api(path, params)
    assert r.status_code == 400, (path, params, r.text)
    assert r.json()["error"]["type"] == "ArgumentError" and needle in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("rid", [str(HUGE), str(2**64), str(2**63), "-1", "0", "abc", "1e3"])
def test_ids_beyond_64_bits_and_junk_are_404_never_500(api, rid) -> None:
    for path in (f"matters/{rid}", f"calendar_entries/{rid}", f"matters/{rid}/related_contacts",
                 f"documents/{rid}/versions", f"documents/{rid}/download", f"allocations/{rid}"):
        r = api(path, allow_redirects=False)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        assert r.json()["error"]["type"] == "RecordNotFound"
    r = api.session.patch(api("matters").url.replace("matters.json", f"matters/{rid}.json"), json={"data": {}})
    assert r.status_code == 404


def test_conditional_get_per_the_spec(api) -> None:
    url_id = all_of(api, "matters")[0]["id"]
    r = api(f"matters/{url_id}")
    etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    assert r.json()["data"]["etag"] == etag
    for inm in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        assert api(f"matters/{url_id}", headers={"If-None-Match": inm}).status_code == 304, inm
    assert api(f"matters/{url_id}", headers={"If-None-Match": '"nope"'}).status_code == 200
    assert api(f"matters/{url_id}", headers={"If-Modified-Since": modified}).status_code == 304
    assert api(f"matters/{url_id}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200
    assert api(f"matters/{url_id}", headers={"If-Modified-Since": "not a date"}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 7232)
    assert api(f"matters/{url_id}", headers={"If-None-Match": '"nope"', "If-Modified-Since": modified}).status_code == 200
    # a 304 carries the etag and no body; a bad parameter is still refused first
    r304 = api(f"matters/{url_id}", headers={"If-None-Match": etag})
    assert r304.headers["ETag"] == etag and r304.content == b""
    assert api(f"matters/{url_id}", {"colour": 1}, headers={"If-None-Match": etag}).status_code == 400


def test_nested_objects_carry_the_live_records_etag(clio, api) -> None:
    act = all_of(api, "activities", {"type": "TimeEntry"}, "id,etag,matter{id,etag,description}")[0]
    matter = api(f"matters/{act['matter']['id']}", {"fields": "id,etag,description"}).json()["data"]
    assert act["matter"] == matter
    clio.mutate("matters", "update", matter["id"], {"description": "Renamed by the test"})
    again = all_of(api, "activities", {"type": "TimeEntry", "matter_id": matter["id"]},
                   "id,etag,matter{id,etag,description}")
    one = next(a for a in again if a["id"] == act["id"])
    assert one["etag"] == act["etag"]  # the activity itself did not change
    assert one["matter"]["etag"] != matter["etag"] and one["matter"]["description"] == "Renamed by the test"
    new = api(f"matters/{matter['id']}").headers["ETag"]
    assert one["matter"]["etag"] == new
