"""The `tilewise` command end to end (subprocesses, Sail): exit codes, idempotency, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, TILEWISE
from tests.helpers import manifests as _manifests
from tests.helpers import table_content as _content
from tests.helpers import tilewise


def test_check_accepts_the_shipped_definitions() -> None:
    res = tilewise("check")
    assert res.returncode == 0, res.stderr
    assert "feature sets" in res.stdout


@pytest.mark.parametrize(
    ("patch", "expect"),
    [
        (("windows: [1h, 6h, 1d, 7d]", "windows: [1h, 7m]"), ["demo.yaml:", "windows[1]", "7m", "multiple of the finest block 5m"]),
        (("aggregation: count\n        windows: [1h, 6h, 1d, 7d]", "aggregation: median\n        windows: [1h]"), ["demo.yaml:", "aggregation", "median"]),
        (("source: views", "source: nowhere"), ["demo.yaml:", "source", "nowhere"]),
        (("      - user_activity.*", "      - user_activity.views_2h"), ["demo.yaml:", "views_2h"]),
        (("block_sizes: [5m, 1h, 1d]\n    lateness: 1d\n    features:\n      - name: views", "block_sizes: [5m, 7m]\n    lateness: 1d\n    features:\n      - name: views"), ["demo.yaml:", "block_sizes", "7m"]),
    ],
)
def test_bad_definitions_exit_2_naming_file_line_and_value(tmp_path: Path, patch: tuple[str, str], expect: list[str]) -> None:
    defs = tmp_path / "feature_defs"
    defs.mkdir()
    text = (REPO / "feature_defs" / "demo.yaml").read_text()
    assert patch[0] in text
    (defs / "demo.yaml").write_text(text.replace(patch[0], patch[1], 1))
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "views.sql").write_text((REPO / "sql" / "views.sql").read_text())
    res = tilewise("check", "--defs", str(defs), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    for piece in expect:
        assert piece in res.stderr, (piece, res.stderr)
    assert "Traceback" not in res.stderr


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    defs = tmp_path / "feature_defs"
    defs.mkdir()
    (defs / "x.yaml").write_text("sources:\n  a: {path: x, format: parquet\n  b: 1\n")
    res = tilewise("check", "--defs", str(defs), cwd=tmp_path)
    assert res.returncode == 2
    assert "x.yaml:" in res.stderr and "YAML" in res.stderr


def test_backfill_is_idempotent_and_reads_only_its_days(demo_data: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    common = ["--set", f"warehouse={wh}", "--set", f"data_root={demo_data}", "--feature-set", "user_activity", "--quiet"]
    first = tilewise("backfill", "--start", "2026-01-01", "--end", "2026-01-03", *common)
    assert first.returncode == 0, first.stderr
    content = _content(wh, "blocks/user_activity")
    again = tilewise("backfill", "--start", "2026-01-01", "--end", "2026-01-03", *common)
    assert again.returncode == 0, again.stderr
    assert _content(wh, "blocks/user_activity") == content, "a re-run leaves identical content"
    nightly = tilewise("backfill", "--start", "2026-01-02", "--end", "2026-01-03", *common)
    assert nightly.returncode == 0, nightly.stderr
    assert _content(wh, "blocks/user_activity") == content, "a re-run of a sub-range leaves identical content"
    runs = _manifests(wh, "backfill")
    assert [r["outputs"]["blocks/user_activity"]["version"] for r in runs] == [0, 1, 2]
    # The nightly run for 2026-01-02 (lateness 1d) reads the files of 01-01 and 01-02 only.
    files = runs[-1]["inputs"]["_sources"]["events"]
    assert files["files_total"] == 2 and files["files_read"] == 2
    assert runs[0]["dropped"]["user_activity: duplicate (event_id)"] > 0

    # Three versions leave the replaced files behind; a vacuum takes them and the content stays.
    where = ["--set", f"warehouse={wh}", "--quiet"]
    assert tilewise("vacuum", "blocks/nope", *where).returncode == 2
    vacuum = tilewise("vacuum", "blocks/user_activity", "--retain-hours", "0", "--set", f"warehouse={wh}")
    assert vacuum.returncode == 0, vacuum.stderr
    assert "vacuum: OK" in vacuum.stderr
    (first,) = _manifests(wh, "vacuum")
    deleted = first["counts"]["blocks/user_activity"]
    assert deleted["files"] > 0 and deleted["bytes"] > 0, vacuum.stderr
    assert _content(wh, "blocks/user_activity") == content
    assert tilewise("vacuum", "--retain-hours", "0", *where).returncode == 0
    (again,) = [m["counts"] for m in _manifests(wh, "vacuum") if m["run_id"] != first["run_id"]]
    assert again["blocks/user_activity"]["files"] == 0 and again["training/engagement"] == "does not exist"


def test_kill_9_mid_backfill_leaves_the_table_readable_and_a_rerun_converges(demo_data: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    common = ["--set", f"warehouse={wh}", "--set", f"data_root={demo_data}", "--feature-set", "user_activity", "--quiet"]
    assert tilewise("backfill", "--start", "2026-01-01", "--end", "2026-01-02", *common).returncode == 0
    before = _content(wh, "blocks/user_activity")
    env = {**os.environ, "TZ": "UTC"}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    proc = subprocess.Popen(
        [*TILEWISE, "backfill", "--start", "2026-01-01", "--end", "2026-01-03", *common[:-1]],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # kill while blocks are being built, before publishing
        if "blocks 5m" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert _content(wh, "blocks/user_activity") == before, "the table is readable at its last version"
    assert tilewise("backfill", "--start", "2026-01-01", "--end", "2026-01-03", *common).returncode == 0
    clean = tmp_path / "clean"
    clean_common = ["--set", f"warehouse={clean}", "--set", f"data_root={demo_data}", "--feature-set", "user_activity", "--quiet"]
    assert tilewise("backfill", "--start", "2026-01-01", "--end", "2026-01-03", *clean_common).returncode == 0
    assert _content(wh, "blocks/user_activity") == _content(clean, "blocks/user_activity")


def test_failed_validation_exits_1_and_publishes_nothing(demo_data: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    common = ["--set", f"warehouse={wh}", "--set", f"data_root={demo_data}", "--quiet"]
    fsets = ["--feature-set", "user_activity", "--feature-set", "item_popularity"]
    assert tilewise("backfill", "--start", "2026-01-01", "--end", "2026-01-03", *fsets, *common).returncode == 0
    ok = tilewise("training-set", "engagement", "--start", "2026-01-01", "--end", "2026-01-02", *common)
    assert ok.returncode == 0, ok.stderr
    before = _content(wh, "training/engagement")
    defs = tmp_path / "feature_defs"
    defs.mkdir()
    text = (REPO / "feature_defs" / "demo.yaml").read_text().replace("min_rows: 1000", "min_rows: 100000000")
    (defs / "demo.yaml").write_text(text)
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "views.sql").write_text((REPO / "sql" / "views.sql").read_text())
    bad = tilewise("training-set", "engagement", "--start", "2026-01-01", "--end", "2026-01-02", "--defs", str(defs), *common)
    assert bad.returncode == 1, bad.stderr
    assert "expect_table_row_count_to_be_between" in bad.stderr
    assert _content(wh, "training/engagement") == before
    failed = _manifests(wh, "training-set")[-1]
    assert failed["status"] == "failed" and failed["validation"]["training/engagement"]["success"] is False
    run_dir = wh / "_runs" / failed["run_id"]
    assert any((run_dir / "staged").rglob("*.parquet")), "rejected rows stay in the run folder"
    assert any((run_dir / "report").rglob("*.html")), "the HTML report stays in the run folder"
    from deltalake import DeltaTable

    assert DeltaTable(str(wh / "training/engagement")).version() == 0
