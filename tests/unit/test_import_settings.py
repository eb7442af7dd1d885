"""airflow_settings.yaml converts to what `airflow ... import` reads, secrets from the env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clio2sf.migrations import parse
from scripts.import_settings import add_firm_pools, convert, expand, firm_configs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit

ENV = {
    "CLIO_BASE_URL": "http://127.0.0.1:8701",
    "CLIO_CLIENT_ID": "cid",
    "CLIO_CLIENT_SECRET": "csecret",
    "CLIO_REFRESH_TOKEN": "rtok",
    "SF_CONSUMER_KEY": "ck",
    "SF_CONSUMER_SECRET": "cs",
    "SF_DOMAIN": "127.0.0.1:8702/services/oauth2/token?",
    "CLIO2SF_STAGING_ROOT": "file:///tmp/staging",
}


def test_settings_declare_connections_pools_and_variables():
    conns, pools, variables = convert(expand(yaml.safe_load((ROOT / "airflow_settings.yaml").read_text()), ENV))
    assert set(conns) == {"clio_default", "salesforce_default"}
    assert conns["clio_default"]["password"] == "csecret"
    assert json.loads(conns["clio_default"]["extra"])["refresh_token"] == "rtok"
    assert json.loads(conns["salesforce_default"]["extra"])["domain"].startswith("127.0.0.1:8702")
    assert set(pools) == {"clio_api", "salesforce_api"}
    assert variables["clio2sf_staging_root"] == "file:///tmp/staging"


def test_missing_secret_is_named():
    env = dict(ENV)
    del env["CLIO_CLIENT_SECRET"]
    with pytest.raises(KeyError, match="CLIO_CLIENT_SECRET"):
        expand(yaml.safe_load((ROOT / "airflow_settings.yaml").read_text()), env)


def test_settings_file_holds_no_secret_literals():
    text = (ROOT / "airflow_settings.yaml").read_text()
    for key in ("conn_password", "consumer_secret", "refresh_token"):
        for line in text.splitlines():
            value = line.split(":", 1)[1].split("#")[0].strip() if line.strip().startswith(f"{key}:") else ""
            if value:
                assert value.startswith("${"), line


def test_each_firm_gets_its_own_pools_and_declared_pools_are_created():
    _conns, pools, _vars = convert(expand(yaml.safe_load((ROOT / "airflow_settings.yaml").read_text()), ENV))
    decls = [parse({"firm": "acme", "migration_id": "m1", "clio_pool": "clio_api_acme_hourly"}, "acme-m1.yaml"),
             parse({"firm": "harlow_vance", "migration_id": "m1"}, "hv-m1.yaml")]
    out = add_firm_pools(pools, decls, ["harlow_vance", "brook"])
    assert set(out) - set(pools) == {
        "clio_api_acme_hourly", "salesforce_api_acme",  # acme declares its Clio pool, not its Salesforce one
        "clio_api_harlow_vance", "salesforce_api_harlow_vance", "clio_api_brook", "salesforce_api_brook"}
    assert out["clio_api_acme_hourly"]["slots"] == pools["clio_api"]["slots"] and "acme-m1.yaml" in out[
        "clio_api_acme_hourly"]["description"]
    assert out["salesforce_api_brook"]["slots"] == pools["salesforce_api"]["slots"]
    assert "firms/brook.yaml" in out["clio_api_brook"]["description"]
    assert out["clio_api"] == pools["clio_api"]  # the shared pools stay for firms without their own


def test_firm_configs_are_the_mappings_firms(tmp_path, monkeypatch):
    assert "harlow_vance" in firm_configs()
    (tmp_path / "firms").mkdir()
    (tmp_path / "firms" / "zeta.yaml").write_text("firm: Zeta\n")
    monkeypatch.setenv("CLIO2SF_MAPPINGS_DIR", str(tmp_path))
    assert firm_configs() == ["zeta"]
