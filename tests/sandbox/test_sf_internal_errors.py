"""The sandbox's own failures are logged as 500s, so the suite-wide check (tests/conftest.py) can see them."""

from __future__ import annotations

import json
import warnings

import pytest

from sandbox.salesforce import app as app_module
from sandbox.salesforce.org import Org, Settings
from sandbox.salesforce.testing import internal_errors

with warnings.catch_warnings():  # starlette's note that it prefers httpx2: the client works as it is
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.unit


def test_an_unexpected_exception_is_a_logged_500_with_the_real_shape(tmp_path, monkeypatch) -> None:
    org = Org(tmp_path, Settings(seed=1))
    sb = app_module.Sandbox(org, "127.0.0.1", 1)
    token = sb.issue(org.integration_user_id)["access_token"]

    def broken(*_a, **_k):
        raise KeyError("a sandbox bug")

    monkeypatch.setattr(app_module, "_limits", broken)
    client = TestClient(app_module.build_app(sb))
    r = client.get("/services/data/v59.0/limits", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 500 and r.json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    ok = client.get("/services/data/v59.0/sobjects/Account/describe", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert [e["path"] for e in internal_errors(tmp_path)] == ["/services/data/v59.0/limits"]


def test_internal_errors_reads_only_500s(tmp_path) -> None:
    lines = [{"status": 200, "path": "/a"}, {"status": 400, "path": "/b"}, {"status": 500, "path": "/c"},
             {"status": 503, "path": "/d"}]
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "{torn")
    assert [e["path"] for e in internal_errors(tmp_path)] == ["/c"]
    assert internal_errors(tmp_path / "missing") == []
