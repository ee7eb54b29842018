"""The command line as its users' habits expect it, through the installed `tilewise` in a subprocess:
options before or after the command, the environment and project discovery (also from a folder
outside the project), exit codes a scheduler can act on, Spark confs, help, no engine noise,
`tilewise runs`, and the demo's closing preview.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spark_jobs.storage.locks import table_lock
from tests.helpers import REPO, cli_env

BLOCKS = "blocks/user_activity"
SNAPSHOT = "snapshots/user_activity"
_SCRIPT = Path(sys.executable).with_name("tilewise")
TILEWISE = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "spark_jobs.cli"]


def tw(*args: str, cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """`tilewise ARGS` in `cwd`, with no TILEWISE_* variable but those given."""
    environ = cli_env(**env)
    for name in ("TILEWISE_PROFILE", "TILEWISE_DEFS"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run([*TILEWISE, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)


def runs(cwd: Path, *args: str, **env: str) -> list[dict]:
    res = tw("runs", "--json", *args, cwd=cwd, **env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, demo_data: Path) -> Path:
    """A project folder of its own: definitions, sql, and a profile with relative folders."""
    root = tmp_path_factory.mktemp("proj")
    shutil.copytree(REPO / "feature_defs", root / "feature_defs")
    shutil.copytree(REPO / "sql", root / "sql")
    (root / "conf").mkdir()
    (root / "conf" / "local.yaml").write_text("engine: sail\nwarehouse: ./wh\ndata_root: ./data\nsail: {memory_limit: 4g}\n")
    (root / "data").symlink_to(demo_data)
    (root / "deep" / "er").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("elsewhere")


def only_env(project: Path) -> dict[str, str]:
    return {"TILEWISE_PROFILE": str(project / "conf" / "local.yaml"), "TILEWISE_DEFS": str(project / "feature_defs")}


def test_version(outside: Path) -> None:
    res = tw("--version", cwd=outside)
    assert res.returncode == 0, res.stderr
    assert re.match(r"tilewise \d+\.\d+\.\d+ \(Python 3\.\d+", res.stdout), res.stdout


def test_options_go_before_or_after_the_command(project: Path) -> None:
    before = tw("--conf", "conf/local.yaml", "--quiet", "check", cwd=project)
    after = tw("check", "--profile", "conf/local.yaml", "-q", cwd=project)
    both = tw("--defs", "feature_defs", "check", "--conf", "conf/local.yaml", cwd=project)
    for res in (before, after, both):
        assert res.returncode == 0, res.stderr
        assert f"project {project}, profile {project / 'conf' / 'local.yaml'}" in res.stdout
    # --set given on both sides adds up; a later value of a single option wins.
    res = tw("--set", "warehouse=/nonexistent/a", "--profile", "nowhere.yaml", "runs", "--profile", "conf/local.yaml",
             "--set", "data_root=/x", cwd=project)
    assert res.returncode == 0, res.stderr
    assert "no runs under /nonexistent/a/_runs" in res.stdout


def test_every_command_and_option_has_help_and_an_example() -> None:
    from spark_jobs.cli import COMMANDS, SHARED, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(c.name for c in COMMANDS)
    for name, p in sub.choices.items():
        assert "examples:\n  tilewise" in (p.epilog or ""), name
        flags = [a for a in p._actions if a.help != "==SUPPRESS==" and a.dest != "help"]
        for action in flags:
            assert action.help and "e.g." in action.help, (name, action.option_strings or action.dest)
        for opt in SHARED:  # every shared option, defined once, is taken by every command
            assert any(opt.flags[0] in a.option_strings for a in p._actions), (name, opt.flags)
    res = tw("training-set", "--help", cwd=REPO)
    assert res.returncode == 0
    assert "EXCLUSIVE" in res.stdout and "examples:" in res.stdout and "--label-cutoff" in res.stdout
    assert "exit codes: 0 done, 1 validation failed" in tw("--help", cwd=REPO).stdout


def test_bad_arguments_exit_2(project: Path) -> None:
    same_day = tw("backfill", "--start", "2026-01-02", "--end", "2026-01-02", cwd=project)
    assert same_day.returncode == 2
    assert "--end is exclusive" in same_day.stderr and "Traceback" not in same_day.stderr
    assert tw("backfill", "--start", "2026-01-02", cwd=project).returncode == 2
    assert tw("demo", "--days", "0", cwd=project).returncode == 2
    assert tw("check", "--profile", "missing.yaml", cwd=project).returncode == 2


def test_project_is_found_upward_and_its_profile_paths_are_relative_to_it(project: Path, outside: Path) -> None:
    deep = project / "deep" / "er"
    res = tw("backfill", "--start", "2026-01-02", "--end", "2026-01-03", "--feature-set", "user_activity", "--quiet",
             cwd=deep)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr == "", "a clean quiet run prints nothing (no engine noise)"
    assert (project / "wh" / BLOCKS / "_delta_log").is_dir()
    assert not (deep / "wh").exists() and not (deep / "warehouse").exists()

    # Outside any project: nothing to find, and the message says how to point at one.
    lost = tw("check", cwd=outside)
    assert lost.returncode == 2 and "no project here" in lost.stderr and "TILEWISE_DEFS" in lost.stderr

    # From the same folder with only the environment variables set, every command works.
    env = only_env(project)
    check = tw("check", cwd=outside, **env)
    assert check.returncode == 0 and f"project {project}" in check.stdout, check.stderr
    snap = tw("snapshot", "--as-of", "2026-01-03T00:00", "--feature-set", "user_activity", cwd=outside, **env)
    assert snap.returncode == 0, snap.stderr[-3000:]
    assert "WARN" not in snap.stderr and "sail_common" not in snap.stderr, snap.stderr[-2000:]
    assert (project / "wh" / SNAPSHOT / "_delta_log").is_dir()
    assert list(outside.iterdir()) == [], "nothing is written where the command was started"
    assert [r["command"] for r in runs(outside, **env)] == ["snapshot", "backfill"]


def test_busy_table_exits_3_after_lock_timeout_and_spark_confs_on_sail_are_named(project: Path) -> None:
    args = ["--set", "lock_timeout_s=1", "backfill", "--start", "2026-01-02", "--end", "2026-01-03",
            "--feature-set", "user_activity", "--set", "spark.sql.shuffle.partitions=64"]
    with table_lock(project / "wh" / "_locks", BLOCKS, timeout_s=5):
        res = tw(*args, cwd=project)
    assert res.returncode == 3, res.stderr[-3000:]
    assert f"table {BLOCKS} is being written by another run" in res.stderr and "gave up after 1s" in res.stderr
    assert "Traceback" not in res.stderr
    warnings = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Sail ignores Spark confs" in warnings[0], warnings
    assert "spark.sql.shuffle.partitions" in warnings[0]
    [busy] = [r for r in runs(project) if r["status"] == "failed"]
    manifest = json.loads(Path(busy["manifest"]).read_text())
    assert manifest["profile"]["spark"] == {"spark.sql.shuffle.partitions": "64"}
    assert manifest["profile"]["lock_timeout_s"] == 1.0 and manifest["targets"] == [BLOCKS]


def test_unexpected_error_exits_4_with_one_line_and_the_traceback_in_the_manifest(project: Path, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent("""
        import spark_jobs.jobs.snapshot as snapshot

        def broken(*args, **kwargs):
            raise RuntimeError("injected fault\\nsecond line")

        snapshot.run = broken
    """))
    args = ["snapshot", "--as-of", "2026-01-03T00:00", "--feature-set", "user_activity"]
    res = tw(*args, "--quiet", cwd=project, PYTHONPATH=str(hook))
    assert res.returncode == 4, res.stderr[-3000:]
    [line] = res.stderr.strip().splitlines()
    m = re.fullmatch(r"tilewise: unexpected error: RuntimeError: injected fault \(manifest: (\S+\.json); "
                     r"--debug shows the traceback\)", line)
    assert m, line
    manifest = json.loads(Path(m.group(1)).read_text())
    assert manifest["status"] == "error" and "Traceback" in manifest["traceback"]
    assert "injected fault" in manifest["traceback"]
    debug = tw("--debug", *args, "--quiet", cwd=project, PYTHONPATH=str(hook))
    assert debug.returncode == 4 and "Traceback (most recent call last)" in debug.stderr


def test_runs_lists_the_manifests_newest_first(project: Path) -> None:
    listed = runs(project)
    assert [r["command"] for r in listed][:3] == ["snapshot", "snapshot", "backfill"]  # the last one: --debug
    assert [r["status"] for r in listed] == ["error", "error", "failed", "ok", "ok"]
    ok_backfill = listed[-1]
    assert ok_backfill["outputs"][BLOCKS]["version"] == 0
    assert ok_backfill["validation"] == {BLOCKS: True, "timelines/user_activity": True}  # the timeline derived from the blocks
    assert ok_backfill["scope"] == "[2026-01-02, 2026-01-03)"
    assert [r["status"] for r in runs(project, "--table", BLOCKS)] == ["failed", "ok", "ok"]  # the ok snapshot read it
    assert len(runs(project, "--last", "2")) == 2
    text = tw("runs", "--last", "3", "--table", SNAPSHOT, cwd=project)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("started (UTC)") and len(lines) == 4
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  snapshot +ok +\d+\.\ds  as of 2026-01-03 00:00:00 -> "
                    r"snapshots/user_activity v0 \(", lines[-1]), lines[-1]
    assert "validation passed" in lines[-1] and "error: RuntimeError: injected fault" in lines[1]
    typo = tw("runs", "--table", "snapshots/user_activty", cwd=project)
    assert typo.returncode == 0 and typo.stdout.splitlines()[1:] == [f"did you mean {SNAPSHOT}?"], typo.stdout


def test_demo_preview_shows_clicked_impressions_with_history(tmp_path: Path) -> None:
    res = tw("demo", "--days", "2", "--events-per-day", "10000", "--data-root", str(tmp_path / "data"),
             "--set", f"warehouse={tmp_path / 'wh'}", cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "WARN" not in res.stderr and "sail_common" not in res.stderr
    lines = res.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if "clicked impressions of the last day" in line)
    header, rows = lines[at + 1].split(), lines[at + 2:at + 5]
    assert header[:7] == ["impression_id", "ts", "user_id", "item_id", "views_1h", "views_1d", "recent_items_1d"]
    assert header[-2:] == ["clicked", "saved"]
    users = set()
    for row in rows:
        tokens = row.split()  # the timestamp is two tokens: impression_id, date, time, user_id, item_id, ...
        assert int(tokens[6]) > 0, row  # views_1d: the user has a history
        assert "[i" in row and "[]" not in row, row  # recent items
        assert tokens[-2] == "1", row  # clicked
        users.add(tokens[3])
    assert len(users) == 3, "one row per user"
