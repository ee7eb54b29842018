"""`tilewise validate TABLE` on published tables, and its HTML report opened in a real browser.

The tables are built once in-process on Sail; the command runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.engines.test_point_in_time import DEFS, publish_tables
from tests.helpers import manifests, table_content, tilewise, write_defs

STRICT = DEFS + """
    validation:
      expectations:
        - {type: expect_column_values_to_be_between, kwargs: {column: n_1h, max_value: 0}}
"""


@pytest.fixture(scope="module")
def tables(sail_engine, tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("validate")
    wh, _, defs_dir, data = publish_tables(sail_engine, root)
    common = ["--defs", str(defs_dir), "--set", f"warehouse={wh.root}", "--set", f"data_root={data}"]
    return root, wh.root, common


def _report(stderr: str) -> Path:
    line = next(x for x in stderr.splitlines() if "report:" in x)
    return Path(line.rsplit("report:", 1)[1].strip())


def test_validate_passes_on_every_kind_of_table(tables) -> None:  # type: ignore[no-untyped-def]
    _, wh, common = tables
    for table in ("training/ts", "blocks/acts", "snapshots/acts"):
        res = tilewise("validate", table, *common)
        assert res.returncode == 0, res.stderr
        assert f"{table} v0: passed" in res.stderr
        assert _report(res.stderr).is_file()
    runs = manifests(wh, "validate")
    assert [m["status"] for m in runs] == ["ok"] * 3
    assert {t for m in runs for t in m["validation"]} == {"training/ts", "blocks/acts", "snapshots/acts"}
    assert all(0 < m["validation_share"] <= 1 for m in runs)
    assert runs[0]["inputs"]["training/ts"] == {"version": 0}
    assert runs[0]["validation"]["training/ts"]["expectations"] >= 7  # built-in training checks


def test_validate_fails_with_exit_1_and_changes_nothing(tables) -> None:  # type: ignore[no-untyped-def]
    root, wh, common = tables
    before = table_content(wh, "training/ts")
    strict = write_defs(root / "strict", STRICT)
    res = tilewise("validate", "training/ts", *common, "--defs", str(strict))
    assert res.returncode == 1, res.stderr
    assert "training/ts v0 failed validation" in res.stderr
    assert "FAILED expect_column_values_to_be_between(column=n_1h, max_value=0)" in res.stderr
    assert _report(res.stderr).is_file()
    assert table_content(wh, "training/ts") == before
    assert manifests(wh, "validate")[-1]["status"] == "failed"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("training/nope", "is not a table of these definitions"),
        ("blocks/acts/../../x", "is not a table"),
        ("acts", "is not a table"),
    ],
)
def test_validate_unknown_table_is_exit_2(tables, table: str, message: str) -> None:  # type: ignore[no-untyped-def]
    _, _, common = tables
    res = tilewise("validate", table, *common)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr


def test_validate_a_table_not_written_yet_is_exit_2(tables) -> None:  # type: ignore[no-untyped-def]
    root, _, common = tables
    res = tilewise("validate", "training/ts", *common, "--set", f"warehouse={root / 'empty'}")
    assert res.returncode == 2, res.stderr
    assert "table training/ts does not exist" in res.stderr


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium: .ci/run installs Debian's chromium package")
def test_failed_report_opens_in_a_headless_browser(tables, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The Data Docs page of a failed validation renders in Chromium and shows what failed."""
    root, wh, common = tables
    res = tilewise("validate", "training/ts", *common, "--defs", str(write_defs(root / "strict2", STRICT)))
    assert res.returncode == 1
    page = _report(res.stderr)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))
    assert "Status: Failed" in text
    assert "Unsuccessful Expectations 1 " in text
    assert "values must be less than or equal to 0.0 . 252 unexpected values found. 63% of 400 total rows" in text
    shot = tmp_path / "report.png"
    subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    assert shot.stat().st_size > 20_000, "a rendered page, not a blank one"
