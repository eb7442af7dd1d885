"""An unmodified public Clio client (PyPI ``clio-manage-api-client`` 0.1.5) against the sandbox.

The client is installed as published (``--no-deps``: it pins numpy<2, which this venv cannot
have; the code it runs here does not need numpy).  Only its base URL table is pointed at the
sandbox, from outside (``configs.BASE_URL`` is the dict its constructor reads): its code, its
field selections (``all``, ``all`` inside braces), its paging and its rate limiting are its own.

Its models come from a newer Clio spec than clio-cli 1.0.5: ``account_balances{all}`` expands to
``currency_id``, which 1.0.5 does not document, and the sandbox (strict to 1.0.5) refuses it with
400 like any unknown field, so that association is selected by name here.
"""

from __future__ import annotations

from collections.abc import Iterator

import clio_manage_python_client as clio_client  # installed by the Makefile with --no-deps
import pytest
from clio_manage_python_client import configs

from sandbox.clio.testing import ClioSandbox, run_clio_sandbox

pytestmark = pytest.mark.integration

SELECTIONS = {
    "contacts": "all,company{all},email_addresses{all},phone_numbers{all},custom_field_values{all}",
    "matters": "all,client{name},practice_area{name,category},responsible_attorney{name},account_balances{id,balance,type,name}",
    "activities": "all,matter{display_number},user{name},bill{number,state}",
}


@pytest.fixture(scope="module")
def clio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClioSandbox]:
    with run_clio_sandbox(tmp_path_factory.mktemp("clio-public"), preset="tiny", rate_limit=50, window=60) as sb:
        yield sb


def test_public_client_pages_contacts_matters_and_activities_to_the_end(clio, monkeypatch, capsys) -> None:
    monkeypatch.setitem(configs.BASE_URL, "us", clio.base_url)
    client = clio_client.Manage(access_token=clio.access_token())
    counts = clio.counts()
    start = len(clio.request_log())
    for name, fields in SELECTIONS.items():
        got = getattr(client.all, name)(fields=fields, limit=7)["data"]
        ids = [r["id"] for r in got]
        assert len(ids) == len(set(ids)) == counts[name], name
        # "all" is every non-nested field of the client's own models (built from Clio's spec)
        assert {"id", "etag", "created_at", "updated_at"} <= set(got[0]), name
        assert len(got[0]) > 20, (name, sorted(got[0]))
    capsys.readouterr()  # the client prints its rate-limit bookkeeping
    log = clio.request_log(start)
    pages = {name: sum(1 for e in log if e["path"] == f"/api/v4/{name}.json") for name in SELECTIONS}
    assert all(e["status"] == 200 for e in log), log
    assert all(pages[name] >= 2 for name in SELECTIONS), pages  # it followed meta.paging.next
    matters = client.all.matters(fields="id,client{name}", limit=5)["data"]
    assert all(m["client"] is None or set(m["client"]) == {"name"} for m in matters)
    with pytest.raises(RuntimeError, match="currency_id"):  # newer than clio-cli 1.0.5: refused, as unknown
        client.get.matters(fields="id,account_balances{all}", limit=1)
