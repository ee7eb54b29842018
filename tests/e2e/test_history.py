"""`tilewise history` and `tilewise restore` on a table built by real runs (Sail, the default profile)."""

from __future__ import annotations

import json
from pathlib import Path

from deltalake import DeltaTable

from tests.helpers import manifests, table_content, tilewise

TABLE = "blocks/user_activity"


def _files(path: Path, version: int | None = None) -> set[str]:
    return {str(Path(u).resolve()) for u in DeltaTable(str(path), version=version).file_uris()}


def test_history_names_each_versions_run_and_restore_rolls_back_with_a_manifest(demo_data: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    where = ["--set", f"warehouse={wh}", "--set", f"data_root={demo_data}", "--quiet"]
    for start in ("2026-01-01", "2026-01-02"):  # a backfill, then a nightly run: versions 0 and 1
        res = tilewise("backfill", "--start", start, "--end", "2026-01-03", "--feature-set", "user_activity", *where)
        assert res.returncode == 0, res.stderr
    path = wh / TABLE
    v0_content, v0_files = table_content(wh, TABLE), _files(path, 0)
    assert _files(path) != v0_files, "the nightly run replaced day 2's files"

    res = tilewise("history", TABLE, "--json", *where)
    assert res.returncode == 0, res.stderr
    history = json.loads(res.stdout)
    runs = manifests(wh, "backfill")
    assert [(h["version"], h["run_id"], h["command"], h["validation"]) for h in history] == [
        (1, runs[1]["run_id"], "backfill", "passed"), (0, runs[0]["run_id"], "backfill", "passed")
    ]
    assert [h["rows_written"] for h in history] == [r["outputs"][TABLE]["rows"] for r in reversed(runs)]
    text = tilewise("history", TABLE, "--last", "1", *where)
    assert text.returncode == 0 and runs[1]["run_id"] in text.stdout and runs[0]["run_id"] not in text.stdout

    res = tilewise("restore", TABLE, "--version", "0", *where)
    assert res.returncode == 0, res.stderr
    (restore,) = manifests(wh, "restore")
    assert restore["status"] == "ok" and restore["outputs"][TABLE] == {"version": 2, "rows": len(v0_content), "restored_from": 0}
    assert _files(path) == v0_files and table_content(wh, TABLE) == v0_content
    newest = DeltaTable(str(path)).history(1)[0]
    assert (newest["version"], newest["operation"], newest["userMetadata"]) == (2, "RESTORE", restore["run_id"])

    # Every output version a manifest records was committed by that manifest's run.
    commits = {h["version"]: h.get("userMetadata") for h in DeltaTable(str(path)).history()}
    for m in [*runs, restore]:
        assert commits[m["outputs"][TABLE]["version"]] == m["run_id"]

    # Version 1's own files were replaced by the restore; a vacuum deletes them: no longer restorable.
    assert tilewise("vacuum", TABLE, "--retain-hours", "0", *where).returncode == 0
    gone = tilewise("restore", TABLE, "--version", "1", *where)
    assert gone.returncode == 2 and "vacuum deleted" in gone.stderr and "nothing was restored" in gone.stderr
    missing = tilewise("restore", TABLE, "--version", "99", *where)
    assert missing.returncode == 2 and "no version 99" in missing.stderr
    assert tilewise("history", "blocks/nope", *where).returncode == 2
    assert table_content(wh, TABLE) == v0_content, "refused restores change nothing"
    vacuumed = DeltaTable(str(path)).history(2)
    assert {h["userMetadata"] for h in vacuumed} == {manifests(wh, "vacuum")[0]["run_id"]}
