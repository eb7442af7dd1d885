"""scripts.approve refuses what was never discovered (or sampled)."""

from __future__ import annotations

import pytest

from scripts import approve

pytestmark = pytest.mark.unit


def test_refuses_a_migration_with_no_discover_output(tmp_path, capsys):
    code = approve.main(["mapping", "--firm", "harlow_vance", "--migration-id", "never_ran", "--by", "me",
                         "--staging-root", str(tmp_path)])
    assert code == 2 and "run mig_01_discover" in capsys.readouterr().err
    assert not (tmp_path / "harlow_vance" / "never_ran" / "approvals").exists()


def test_approves_once_discover_wrote_the_spec(tmp_path, capsys):
    (tmp_path / "harlow_vance" / "m9" / "discover").mkdir(parents=True)
    (tmp_path / "harlow_vance" / "m9" / "discover" / "mapping_spec.html").write_text("<html></html>")
    assert approve.main(["mapping", "--firm", "harlow_vance", "--migration-id", "m9", "--by", "me",
                         "--staging-root", str(tmp_path)]) == 0
    assert (tmp_path / "harlow_vance" / "m9" / "approvals" / "mapping.yaml").exists()
    # the sample still needs its diff report
    assert approve.main(["sample", "--firm", "harlow_vance", "--migration-id", "m9", "--by", "me",
                         "--staging-root", str(tmp_path)]) == 2
