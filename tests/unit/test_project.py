"""Where a command finds its project, definitions and profile, and what `--set` means (no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_jobs.cli import parse_args
from spark_jobs.engine.profile import load_profile
from spark_jobs.engine.project import find_project, locate
from spark_jobs.errors import EXIT_RETRY, DefinitionError, TableBusy
from spark_jobs.storage.tables import WriteConflict


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    (tmp_path / "p" / "feature_defs").mkdir(parents=True)
    (tmp_path / "p" / "conf").mkdir()
    (tmp_path / "p" / "conf" / "local.yaml").write_text("warehouse: ./wh\ndata_root: data\n")
    (tmp_path / "p" / "a" / "b").mkdir(parents=True)
    return tmp_path / "p"


def test_the_nearest_folder_upward_holding_feature_defs_is_the_project(proj: Path, tmp_path: Path) -> None:
    assert find_project(proj / "a" / "b") == proj
    assert find_project(proj / "feature_defs") == proj
    assert find_project(tmp_path) is None
    found = locate(cwd=proj / "a" / "b", environ={})
    assert (found.root, found.defs, found.profile, found.found) == (
        proj, proj / "feature_defs", proj / "conf" / "local.yaml", True)


def test_flags_win_over_the_environment_which_wins_over_discovery(proj: Path, tmp_path: Path) -> None:
    env = {"TILEWISE_DEFS": str(proj / "feature_defs"), "TILEWISE_PROFILE": str(proj / "conf" / "local.yaml")}
    outside = locate(cwd=tmp_path, environ=env)
    assert (outside.root, outside.profile, outside.profile_required) == (proj, proj / "conf" / "local.yaml", True)
    flagged = locate("other/defs", "x.yaml", cwd=proj, environ=env)
    assert (flagged.defs, flagged.root, flagged.profile) == (proj / "other" / "defs", proj / "other", proj / "x.yaml")
    lost = locate(cwd=tmp_path, environ={})
    assert not lost.found and lost.profile is None and "no project here" in lost.describe_missing_defs()


def test_profile_folders_are_relative_to_the_project_and_set_ones_to_the_current_folder(
    proj: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(proj / "a")
    profile = load_profile(proj / "conf" / "local.yaml", ["data_root=here"], base=proj)
    assert profile.warehouse == str(proj / "wh") and profile.data_root == str(proj / "a" / "here")
    defaults = load_profile(None, base=proj)
    assert (defaults.engine, defaults.warehouse, defaults.data_root) == ("sail", str(proj / "warehouse"), str(proj / "data"))
    assert load_profile(None, ["data_root=s3://bucket/d"], base=proj).data_root == "s3://bucket/d"


def test_set_spark_conf_names_the_conf_as_spark_spells_it() -> None:
    profile = load_profile(None, ["spark.sql.shuffle.partitions=64", "spark.spark.sql.ansi.enabled=true",
                                  "sail.memory_limit=2g", "lock_timeout_s=5"])
    assert profile.spark == {"spark.sql.shuffle.partitions": "64", "spark.sql.ansi.enabled": "true"}
    assert profile.sail_memory_limit == 2 << 30 and profile.lock_timeout_s == 5.0
    with pytest.raises(DefinitionError, match="KEY=VALUE"):
        load_profile(None, ["warehouse"])


def test_shared_options_before_and_after_the_command_merge() -> None:
    args = parse_args(["--set", "a=1", "--conf", "x.yaml", "-q", "check", "--set", "b=2", "--profile", "y.yaml"])
    assert (args.set, args.profile, args.quiet, args.debug) == (["a=1", "b=2"], "y.yaml", True, False)
    args = parse_args(["backfill", "--start", "2026-01-01", "--end", "2026-01-02", "--debug"])
    assert (args.set, args.profile, args.defs, args.quiet, args.debug) == ([], None, None, False, True)


def test_busy_tables_and_commit_conflicts_are_retryable() -> None:
    assert TableBusy.exit_code == WriteConflict.exit_code == EXIT_RETRY == 3


def test_point_in_time_method_is_a_profile_key(tmp_path: Path) -> None:
    assert load_profile(tmp_path / "none.yaml", missing_ok=True).point_in_time == "auto"
    assert load_profile(tmp_path / "none.yaml", ["point_in_time=sql"], missing_ok=True).point_in_time == "sql"
    with pytest.raises(DefinitionError, match="point_in_time: 'fast' is not a lookup method"):
        load_profile(tmp_path / "none.yaml", ["point_in_time=fast"], missing_ok=True)
