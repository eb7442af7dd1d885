"""Hostile input and bad configuration (issue 17): each finding, one test, at the function level.

Each test feeds the bundle the hostile value (an id, a config, a record, a connection extra) and
checks the documented outcome: refused with a message, or the record rejected with its reason while
the phase goes on.  docs/faults.md ("Hostile input") lists each class with its outcome.
"""

from __future__ import annotations

import os
import time

import pytest
from upath import UPath

from clio2sf import staging

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- ids that become paths


@pytest.mark.parametrize("bad", [".", "..", "a/b", "a\\b", "raw", "ledger", "", "-x", "x" * 65])
def test_migration_id_that_is_not_one_segment_is_refused_everywhere(tmp_path, bad):
    with pytest.raises(ValueError, match="migration_id"):
        staging.migration_root(tmp_path, "acme", bad)
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamValidationError

    from clio2sf_airflow.dag_defaults import migration_params

    with pytest.raises(ParamValidationError):
        Param(bad, **{k: v for k, v in migration_params()["migration_id"].dump().items()
                      if k in ("schema",)}).resolve()
    from scripts import approve

    with pytest.raises(SystemExit):
        approve.main(["mapping", "--firm", "harlow_vance", "--migration-id", bad, "--by", "x",
                      "--staging-root", str(tmp_path)])
    assert not any(tmp_path.rglob("*.yaml"))


@pytest.mark.parametrize("bad", ["..", "../harlow_vance", "raw", "Acme"])
def test_firm_name_that_is_not_one_segment_is_refused_by_config_and_staging(tmp_path, bad):
    from clio2sf.mapping.spec import SpecError, load_spec

    with pytest.raises(SpecError, match="firm"):
        load_spec(bad)
    with pytest.raises(ValueError, match="firm"):
        staging.migration_root(tmp_path, bad, "m1")


def test_two_firms_never_share_a_staging_folder_and_purge_skips_layout_folders(tmp_path):
    root = UPath(f"file://{tmp_path}")
    a = staging.migration_root(root, "firm_a", "m1")
    b = staging.migration_root(root, "firm_b", "m1")
    assert str(a) != str(b)
    # stray folders that are not <firm>/<migration> (what a '..' id used to create) are never purged
    staging.write_json(root / "raw" / "contacts" / "_progress.json", {})
    staging.write_json(root / "firm_a" / "ledger" / "x.json", {})
    staging.write_json(a / "raw" / "x.json", {})
    old = time.time() - 90 * 86400
    for p in tmp_path.rglob("*.json"):
        os.utime(p, (old, old))
    purged = staging.purge_older_than(root, 7)
    assert [p.rsplit("/", 2)[-2:] for p in purged] == [["firm_a", "m1"]]
    assert (tmp_path / "raw" / "contacts" / "_progress.json").exists()
    assert (tmp_path / "firm_a" / "ledger" / "x.json").exists()
